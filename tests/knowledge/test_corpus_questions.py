"""Questions made from the knowledge base: multiple choice (asking for the correct or the incorrect statement)
and descriptive ones on law articles and guide headings."""

from __future__ import annotations

import pandas as pd

from fsku_kedro.knowledge.corpus_questions import (
    descriptive_question,
    descriptive_questions,
    falsified,
    multiple_choice_questions,
)
from fsku_kedro.parameters.distillation import ChoiceTargetSettings


def _questions(chunks, count, **changes):
    """``multiple_choice_questions`` at seed 0, of the choice-target settings' defaults with ``changes``."""
    defaults = ChoiceTargetSettings()
    options = {"negative_share": defaults.negative_share, "distractors": defaults.distractors, **changes}
    return multiple_choice_questions(chunks, count, 0, **options)


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


def _documents():
    laws = {"전자금융거래법": ["금융회사는 전자금융거래의 안전성을 확보하여야 한다.", "이용자는 접근매체를 다른 사람에게 양도하여서는 아니 된다.",
                          "금융회사는 오류를 안 날부터 두 주 안에 정정하여야 한다.", "전자금융거래 기록은 오 년간 보존한다."],
            "개인정보 보호법": ["개인정보처리자는 개인정보를 안전하게 관리하는 조직이다.", "정보주체는 자신의 개인정보 열람을 요구하는 사람이다.",
                          "민감정보는 별도의 동의가 있을 때 처리하는 정보이다.", "유출 사실은 72시간 이내에 정보주체에게 알린다."],
            "전자서명법": ["전자서명은 서명자의 신원을 확인하는 데 쓰인다.", "인증사업자는 인증업무준칙을 게시하여야 한다.",
                      "인증서는 유효기간이 지나면 효력을 잃는다."]}
    return pd.DataFrame({"doc_id": list(laws), "title": list(laws), "content": [" ".join(s) for s in laws.values()]}), laws


def test_each_edit_makes_a_statement_false_and_leaves_years_alone():
    assert falsified("금융회사는 오류를 정정하여야 한다.") == "금융회사는 오류를 정정하지 않아도 된다."
    assert falsified("사전 동의를 받아야 한다.") == "사전 동의를 받지 않아도 된다."
    assert falsified("장비의 시간을 NTP로 맞추어 두어야 한다.") == "장비의 시간을 NTP로 맞추어 두지 않아도 된다."
    assert falsified("자료를 한곳에 모아야 한다.") == "자료를 한곳에 모아야 하는 것은 아니다.", "a stem not known"
    assert falsified("접근매체를 양도하여서는 아니 된다.") == "접근매체를 양도하여도 된다."
    assert falsified("정보주체는 열람을 요구할 수 있다.") == "정보주체는 열람을 요구할 수 없다."
    assert falsified("유출 사실은 72시간 이내에 알린다.") == "유출 사실은 144시간 이내에 알린다."
    assert falsified("2023년 가이드라인을 발간했다.") is None, "a year is not a period"
    assert falsified("전자서명은 신원을 확인하는 데 쓰인다.") is None


def test_multiple_choice_asks_for_the_correct_or_the_incorrect_statement():
    chunks, laws = _documents()
    positive = _questions(chunks, 12)
    assert not any(q.negative for q in positive), "none asks for the incorrect statement by default"
    mixed = _questions(chunks, 12, negative_share=0.5)
    assert [q for q, m in zip(positive, mixed) if not m.negative] == [m for m in mixed if not m.negative], \
        "the share changes only the questions it turns, so their stored teacher targets stay valid"
    everything = _questions(chunks, 12, negative_share=1.0)
    for question in everything:
        stem, *lines = question.text.split("\n")
        options = [line.split(" ", 1)[1] for line in lines]
        topic = next(title for title in laws if stem.startswith(title) or f" {title}" in stem)
        own = [option for option in options if option in laws[topic]]
        assert (options[question.answer - 1] in laws[topic]) is not question.negative, "the known answer"
        if question.negative:
            assert "않은" in stem or "않는" in stem
            assert len(own) == 3 and len(set(options)) == 4
            assert options[question.answer - 1] in {falsified(s) for s in laws[topic]} - set(laws[topic]), \
                "three of the chunk's sentences and another of them made false"
        else:
            assert topic == "전자서명법" and len(own) == 1, "a chunk of fewer than four sentences asks positively"
    assert sum(q.negative for q in everything) == 8, "the two chunks of four sentences, each asked 4 times"
    assert 0 < sum(q.negative for q in mixed) < 8


def test_options_are_whole_statements_without_the_heading_line(caplog):
    # Shaped like the knowledge base's chunks: a heading line, then sentences with words ending in 다 or 음
    # ("2년마다", "다음") that do not end a sentence.
    contents = [
        ("정보통신망법 제50조(영리목적의 광고성 정보 전송 제한)\n광고를 보내려면 수신자의 사전 동의를 받아야 한다. "
         "오후 9시부터 다음 날 오전 8시까지는 별도의 동의를 받아야 한다. 동의를 받은 자는 2년마다 동의 여부를 확인해야 한다."),
        ("접근통제와 인증 실무 안내서 > 4. 사용자 인증과 다중 인증\n인증 요소는 지식, 소유, 존재의 세 범주로 나눈다. "
         "MFA는 서로 다른 범주의 인증 요소를 결합하는 방식이다."),
    ]
    statements = {s for content in contents for s in content.split("\n")[1].split(". ")}
    statements = {s if s.endswith(".") else f"{s}." for s in statements}
    # A chunk of headings alone gives no option, and is counted in the log.
    chunks = pd.DataFrame({"doc_id": ["a", "b", "c"], "title": ["정보통신망법", "안내서", "목차"],
                           "content": [*contents, "전자금융감독규정 > 제3장 전자금융업무\n제1절 통칙"]})
    seen = set()
    with caplog.at_level("INFO", logger="fsku_kedro.knowledge.corpus_questions"):
        questions = _questions(chunks, 10)
    for question in questions:
        seen.update(line.split(" ", 1)[1] for line in question.text.split("\n")[1:])
    assert seen == statements, seen ^ statements
    assert "1 of 3 chunks hold no statement" in caplog.text


def _split_documents(size: int):
    """The laws of ``_documents`` cut into chunks of ``size`` sentences."""
    _, laws = _documents()
    rows = [(law, " ".join(sentences[i:i + size])) for law, sentences in laws.items()
            for i in range(0, len(sentences), size)]
    return pd.DataFrame({"doc_id": [law for law, _ in rows], "title": [law for law, _ in rows],
                         "content": [content for _, content in rows]}), laws


def _options(question):
    return [line.split(" ", 1)[1] for line in question.text.split("\n")[1:]]


def test_falsified_distractors_leave_one_true_statement_about_the_document():
    chunks, laws = _split_documents(2)
    true = {sentence for sentences in laws.values() for sentence in sentences}
    made = {falsified(sentence): law for law, sentences in laws.items() for sentence in sentences if falsified(sentence)}
    questions = _questions(chunks, 12, distractors="falsified")
    assert questions == _questions(chunks, 12, distractors="falsified"), "seeded"
    for question in questions:
        options = _options(question)
        topic = next(law for law in laws if law in question.text.split("\n")[0])
        assert not question.negative and len(set(options)) == 4
        assert [o for o in options if o in true] == [options[question.answer - 1]], "only the answer is true"
        assert options[question.answer - 1] in laws[topic]
        distractors = [o for o in options if o not in true]
        assert all(o in made for o in distractors), "the other options are false statements of the corpus"
        own = sum(made[o] == topic for o in distractors)
        assert own == min(3, sum(1 for s in laws[topic] if falsified(s) and s != options[question.answer - 1])), \
            "made from the question's own document first, from others where it has too few"


def test_falsified_distractors_differ_in_their_edit():
    # Five obligations, a period and a permission: three waived obligations would give the answer away.
    sentences = ["금융회사는 접근 기록을 남겨야 한다.", "금융회사는 권한을 검토하여야 한다.", "금융회사는 계정을 잠가야 한다.",
                 "금융회사는 변경 내역을 보고하여야 한다.", "금융회사는 비밀번호를 바꾸어야 한다.",
                 "접속 기록은 3년간 보관한다.", "이용자는 열람을 요구할 수 있다."]
    chunks = pd.DataFrame({"doc_id": ["a", "b"], "title": ["안내서", "다른 법"],
                           "content": [" ".join(sentences), "다른 법은 다른 내용을 정하는 법이다."]})
    for question in _questions(chunks, 14, distractors="falsified"):
        options = _options(question)
        answer = options[question.answer - 1]
        if answer not in sentences[:5]:
            continue
        distractors = [o for o in options if o != answer]
        assert sum("않아도 된다" in o or "것은 아니다" in o for o in distractors) == 1, options


def test_falsified_distractors_let_more_chunks_ask_for_the_incorrect_statement():
    chunks, laws = _split_documents(2)
    assert not any(q.negative for q in _questions(chunks, 10, negative_share=1.0)), \
        "no chunk of two sentences can ask it with the chunk's own sentences"
    negated = _questions(chunks, 10, negative_share=1.0, distractors="falsified")
    asked = [q for q in negated if q.negative]
    assert asked and len(asked) < len(negated), "the documents of four sentences with an editable one"
    for question in asked:
        options = _options(question)
        topic = next(law for law in laws if law in question.text.split("\n")[0])
        answer = options[question.answer - 1]
        assert [o for o in options if o not in laws[topic]] == [answer]
        assert answer in {falsified(s) for s in laws[topic]}
