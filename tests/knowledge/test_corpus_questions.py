"""Questions made from the knowledge base: descriptive ones on law articles and guide headings."""

from __future__ import annotations

import pandas as pd

from fsku_kedro.knowledge.corpus_questions import descriptive_question, descriptive_questions


def test_each_kind_of_section_gives_its_question():
    assert descriptive_question("전자금융거래법 제8조(오류의 정정 등)", 0) == "전자금융거래법 제8조(오류의 정정 등)의 주요 내용을 설명하세요."
    assert descriptive_question("개인정보 보호법 제23조의2(민감정보의 처리 제한)", 1) == (
        "개인정보 보호법에서 정하는 민감정보의 처리 제한에 관하여 설명하세요.")
    assert descriptive_question("접근통제와 인증 실무 안내서 > 4. 사용자 인증과 다중 인증", 0) == (
        "접근통제와 인증 실무 안내서에서 다루는 '사용자 인증과 다중 인증'의 주요 내용을 설명하세요.")
    assert descriptive_question("안내서 > 2. 통제 > 나. 접근 권한 검토", 1) == (
        "접근 권한 검토에 관하여 안내서의 내용을 바탕으로 설명하세요."), "the innermost heading, unnumbered"
    assert descriptive_question("전자서명법", 0) is None, "a document title alone asks nothing particular"
    assert descriptive_question("안내서 > 3.", 0) is None


def _chunks():
    return pd.DataFrame({
        "chunk_id": [f"c{i}" for i in range(6)],
        "section": ["전자금융거래법", "전자금융거래법 제8조(오류의 정정 등)", "전자금융거래법 제8조(오류의 정정 등)",
                    "안내서 > 1. 암호키 관리", "전자서명법", "개인정보 보호법 제2조(정의)"],
        "chunk_type": ["title", "article", "article", "body", "body", "article"],
        "content": ["제목", "오류 정정 첫 부분", "오류 정정 둘째 부분", "암호키는 분리 보관한다.", "서명 본문", "정의 조항"],
    })


def test_one_question_per_section_with_its_whole_text_seeded():
    questions = descriptive_questions(_chunks(), 10, seed=0)
    assert len(questions) == 3, "title chunks and sections without an article or heading give none"
    by_question = {question: text for text, question in questions}
    article = next(text for q, text in by_question.items() if "오류의 정정" in q)
    assert article == "오류 정정 첫 부분\n오류 정정 둘째 부분", "a section's chunks together answer it"
    assert questions == descriptive_questions(_chunks(), 10, seed=0)
    assert descriptive_questions(_chunks(), 2, seed=0) == questions[:2]
    assert descriptive_questions(_chunks(), 0, seed=0) == []
    orders = {tuple(q for _, q in descriptive_questions(_chunks(), 10, seed=s)) for s in range(8)}
    assert len(orders) > 1, "the seed chooses the order (and so which sections a smaller count takes)"
