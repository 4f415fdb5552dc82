import pytest

from fsku_kedro.answering.extraction import extract_choice, first_number


@pytest.mark.parametrize(
    ("text", "count", "expected"),
    [
        ("정답은 2번입니다. 1번은 틀렸다.", 4, 2),
        ("답: ③", 4, 3),
        ("Answer: 3", 5, 3),
        ("정답 : (4) 접근매체가 아니다", 4, 4),
        ("3번이 옳습니다", 4, 3),
        ("(3) 2주 이내", 4, 3),
        ("4. 거래 상대방의 계좌번호", 5, 4),
        ("2", 4, 2),
        ("정답은 10번", 10, 10),
        ("10", 10, 10),
        ("이유: 2주 이내에 알려야 하므로 3", 4, 2),  # no explicit marker: the first valid number
    ],
)
def test_the_stated_option_is_extracted(text, count, expected):
    assert extract_choice(text, count) == expected


@pytest.mark.parametrize(
    ("text", "count"),
    [("설명만 있고 번호가 없다", 4), ("정답: 7", 5), ("10", 4), ("제 0 항", 4), ("", 4)],
)
def test_no_valid_option_gives_none(text, count):
    assert extract_choice(text, count) is None


def test_ten_is_not_read_as_one():
    assert extract_choice("정답은 10", 10) == 10
    assert extract_choice("정답은 10", 9) is None


@pytest.mark.parametrize(
    ("text", "count", "expected"),
    [
        ("3", 4, 3),
        ("정답: 2번입니다", 4, 2),
        ("문제를 보면 정답: 1 이유는... 정답: 4", 4, 4),  # the text after the last "정답:"
        ("①번", 4, None),  # circled digits are not numbers to the benchmark
        ("정답은 2번입니다. 1번은 틀렸다.", 4, 2),
        ("이유: 2주 이내에 알려야 하므로 3", 4, 2),  # the first number, whatever it means
        ("10번", 4, None),  # a number that names no option scores wrong
        ("모르겠습니다", 4, None),
    ],
)
def test_first_number_is_the_fsku_benchmarks_own_reading(text, count, expected):
    """baseline.py of the FSKU benchmark: split at the last "정답:", then re.match(r"\\D*([1-9][0-9]?)")."""
    assert first_number(text, count) == expected
