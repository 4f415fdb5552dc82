import pytest

from fsku_kedro.knowledge.cleaning import clean_text, normalize_amounts, normalize_for_search


@pytest.mark.parametrize(
    "written",
    ["3억 원", "3억원", "300,000,000원", "300000000원", "3 억 원"],
)
def test_amount_forms_share_one_canonical_form(written):
    assert normalize_amounts(f"자본금 {written} 이상") == "자본금 300000000원 이상"


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("1억 5천만 원", "150000000원"),
        ("2,000만 원", "20000000원"),
        ("5천만원", "50000000원"),
        ("3.5억 원", "350000000원"),
        ("10만 원", "100000원"),
        ("3천 원", "3000원"),
        ("20억", "2000000000"),
        ("1,000명", "1000명"),
    ],
)
def test_amounts(written, canonical):
    assert normalize_amounts(written) == canonical


@pytest.mark.parametrize("text", ["제3조(정의)", "제3조의2에 따라", "제28조 제2항", "5년간 보존", "18세 미만", "7% 이상"])
def test_articles_and_other_numbers_are_left_alone(text):
    assert normalize_amounts(text) == text


def test_clean_text_repairs_mojibake_and_whitespace():
    broken = "전자금융".encode().decode("latin-1")  # UTF-8 bytes read as Latin-1
    assert clean_text(broken) == "전자금융"
    assert clean_text("a\u00a0\u00a0b \u200bc\r\n\n\n\nd  ") == "a b c\n\nd"


def test_search_form_is_lower_case_and_canonical():
    assert normalize_for_search("MFA 비용 3억 원") == "mfa 비용 300000000원"
