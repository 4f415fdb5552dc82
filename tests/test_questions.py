import pytest

from fsku_kedro.questions import asks_for_incorrect, parse_question, retrieval_query, split_options


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


def test_two_and_ten_options_and_blank_lines():
    two = parse_question("T", "옳은가?\n\n1 예\n2 아니오")
    assert two.choices == {"1": "예", "2": "아니오"} and two.parsed_question == "옳은가?"
    ten = parse_question("T", "고르시오.\n" + "\n".join(f"{n} 보기{n}" for n in range(1, 11)))
    assert list(ten.choices) == [str(n) for n in range(1, 11)] and ten.choices["10"] == "보기10"
    spaced = parse_question("T", "질문 첫 줄\n\n둘째 줄\n- 조건 가\n1 가\n\n2 나\n3 다")
    assert spaced.parsed_question == "질문 첫 줄\n\n둘째 줄\n- 조건 가" and list(spaced.choices) == ["1", "2", "3"]


def test_a_single_numbered_line_or_a_gap_in_the_run_is_not_options():
    assert split_options("다음을 설명하세요.\n1 개요만 쓰시오")[1] is None, "one option is not a question"
    options = split_options("질문?\n1 가\n3 다\n4 라")[1]
    assert options is None, "a run must be consecutive from 1"


def test_test_table_problems_are_listed_by_row():
    import pandas as pd

    from fsku_kedro.contracts import DataContractError
    from fsku_kedro.questions import check_test_table, parse_test_table

    good = pd.DataFrame({"ID": ["A", "B"], "Question": ["질문?\n1 가\n2 나", "설명하세요."]})
    assert [q.question_type for q in parse_test_table(good, "test.csv")] == ["multiple_choice", "descriptive"]
    bad = pd.DataFrame({"ID": ["A", "B", "A", ""], "Question": ["질문?", "  ", "또?", "x"]})
    with pytest.raises(DataContractError) as error:
        check_test_table(bad, "test.csv")
    message = str(error.value)
    assert "test.csv: row 3 (ID B): empty question" in message
    assert "test.csv: duplicate ID A in rows 2, 4" in message
    assert "test.csv: row 5: empty ID" in message
    with pytest.raises(DataContractError, match=r"missing column\(s\) \['Question'\]"):
        check_test_table(pd.DataFrame({"ID": ["A"], "Text": ["x"]}), "test.csv")


def test_trailing_marks_after_the_options_are_ignored():
    q = parse_question("T", "적용되는 이유는?\n\n1 가\n2 나\n3 다\n4 라\n\n###")
    assert q.choices == {"1": "가", "2": "나", "3": "다", "4": "라"} and q.parsed_question == "적용되는 이유는?"


@pytest.mark.parametrize("stem, negative", [
    ("다음 중 전자금융거래법상 접근매체에 관한 설명으로 옳지 않은 것은?", True),
    ("침해사고 대응절차에 포함되지 않는 단계는 무엇인가?", True),
    ("개인정보처리자의 의무가 아닌 것은", True),
    ("다음 중 정보보호 목적과 거리가 먼 것은?", True),
    ("다음 중 접근통제에 관한 설명으로 옳은 것은?", False),
    ("데이터베이스 보안에서 인가되지 않은 접근을 방지하기 위한 주요 방법은 무엇인가?", False),
    ("이용자가 이의를 제기하지 않을 경우, 이는 무엇을 의미하는가?", False),
])
def test_a_stem_that_asks_for_the_option_that_does_not_hold(stem, negative):
    assert asks_for_incorrect(parse_question("q", f"{stem}\n1 가\n2 나\n3 다\n4 라")) is negative
    assert not asks_for_incorrect(parse_question("q", stem)), "a descriptive question has no option to pick"
