import pytest

from fsku_kedro.questions import parse_question, retrieval_query, split_options


def test_four_option_question():
    q = parse_question("TEST_000", "다음 중 옳은 것은?\n1 가\n2 나\n3 다\n4 라")
    assert q.question_type == "multiple_choice"
    assert q.parsed_question == "다음 중 옳은 것은?"
    assert q.choices == {"1": "가", "2": "나", "3": "다", "4": "라"}


@pytest.mark.parametrize("style", ["{n} {t}", "{n}. {t}", "{n}) {t}", "{c} {t}"])
def test_option_styles(style):
    circled = "①②③④⑤"
    body = "\n".join(style.format(n=i, c=circled[i - 1], t=f"선택지{i}") for i in range(1, 6))
    stem, options = split_options("질문?\n" + body)
    assert stem == "질문?"
    assert options == {str(i): f"선택지{i}" for i in range(1, 6)}


def test_stem_lines_with_dash_and_leading_numbers_stay_in_the_stem():
    text = (
        "다음 조건에서 옳은 것은?\n- 자본금 요건을 갖춘 경우\n3억 원 이상의 자본금\n제3조에 따른 등록\n"
        "1단계와 2단계를 거친 경우\n1 등록 불가\n2 등록 가능\n3 신고 대상\n4 인가 대상"
    )
    q = parse_question("T", text)
    assert list(q.choices) == ["1", "2", "3", "4"]
    assert "3억 원 이상의 자본금" in q.parsed_question and "1단계와 2단계" in q.parsed_question


def test_numbers_that_are_not_a_run_from_one_are_descriptive():
    assert split_options("설명하세요.\n3억 원 이상\n4 단계")[1] is None
    assert parse_question("T", "제3조의 취지를 설명하세요.").question_type == "descriptive"


def test_retrieval_query_joins_stem_and_options():
    q = parse_question("T", "무엇인가?\n1 망분리\n2 암호화")
    assert retrieval_query(q) == "무엇인가?\n망분리\n암호화"
