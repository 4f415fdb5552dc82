"""Text cleaning for mixed Korean/English documents, and canonical number and amount forms."""

from __future__ import annotations

import re
import unicodedata

import ftfy

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")

# A number as written in Korean documents: "300,000,000", "3.5", "2000".
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_BIG_UNITS = {"조": 10**12, "억": 10**8, "만": 10**4}
_SMALL_UNITS = {"천": 1000, "백": 100, "십": 10}
# One "<number><small unit>?<big unit>" group; 조 followed by 의/( is an article ("제3조의2").
_GROUP = rf"(?:{_NUMBER})\s?[천백십]?\s?(?:[억만]|조(?![의(]))"
_AMOUNT = re.compile(
    rf"(?<![\w.,])(?P<expr>(?:{_GROUP}\s?)+(?:(?:{_NUMBER})\s?[천백십]?(?=\s?원))?"
    rf"|(?:{_NUMBER})\s?[천백십]?(?=\s?원))(?P<won>\s?원)?"
)
_GROUP_PARTS = re.compile(rf"(?P<num>{_NUMBER})\s?(?P<small>[천백십])?\s?(?P<big>[조억만])?")
_COMMA_NUMBER = re.compile(r"(?<![\d,])\d{1,3}(?:,\d{3})+(?![\d,])")


def clean_text(text: str) -> str:
    """Repair mojibake, normalise Unicode (NFC) and whitespace; keep line structure."""
    text = ftfy.fix_text(text, normalization="NFC")
    text = unicodedata.normalize("NFC", text)
    text = _ZERO_WIDTH.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _amount_value(expression: str) -> float:
    total = 0.0
    for part in _GROUP_PARTS.finditer(expression):
        value = float(part["num"].replace(",", ""))
        value *= _SMALL_UNITS.get(part["small"] or "", 1)
        value *= _BIG_UNITS.get(part["big"] or "", 1)
        total += value
    return total


def _format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.4f}".rstrip("0").rstrip(".")


def normalize_amounts(text: str) -> str:
    """Rewrite amounts and numbers to one canonical form.

    "3억 원", "3억원" and "300,000,000원" all become "300000000원"; "1억 5천만 원" becomes
    "150000000원"; comma-grouped numbers lose their commas. Article references such as
    "제3조" and "제3조의2" are left alone.
    """

    def replace(match: re.Match[str]) -> str:
        expression = match["expr"]
        value = _amount_value(expression)
        suffix = "원" if match["won"] else ""
        trailing = " " if expression.endswith(" ") and not suffix else ""
        return f"{_format_number(value)}{suffix}{trailing}"

    text = _AMOUNT.sub(replace, text)
    return _COMMA_NUMBER.sub(lambda m: m.group(0).replace(",", ""), text)


def normalize_for_search(text: str) -> str:
    """The form a text is indexed and queried in: cleaned, amounts canonical, lower case."""
    return normalize_amounts(clean_text(text)).lower()
