"""The option number in a generated multiple-choice answer.

Patterns are tried from the most explicit to the least: "정답은 3", "답: ③", "Answer: 3", then
"3번", then a number opening the answer ("3", "(3)", "3. 설명"), then the first free-standing number.
Only numbers of options the question has count; the first valid one of the first pattern that
finds one wins, so "정답은 2번입니다. 1번은 틀렸다" gives 2, and "10" is never read as "1".
"""

from __future__ import annotations

import re

CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩"
_NUMBER = rf"(?P<n>(?<!\d)\d{{1,2}}(?!\d)|[{CIRCLED}])"
PATTERNS = (
    re.compile(rf"(?:정답|답|answer)\s*(?:은|는|:|：|=|is)?\s*(?:[:：]\s*)?[(\[]?\s*{_NUMBER}", re.IGNORECASE),
    re.compile(rf"{_NUMBER}\s*번"),
    re.compile(rf"^\s*[(\[]?\s*{_NUMBER}(?=[)\].:,\s]|$)"),
    re.compile(_NUMBER),
)


_BENCHMARK_DELIMITER = "정답:"
_BENCHMARK_NUMBER = re.compile(r"\D*([1-9][0-9]?)")


def first_number(text: str, option_count: int) -> int | None:
    """The FSKU benchmark's own reading of a generated answer: the text after the last "정답:" (or the
    whole text), then its first number of one or two digits; None when there is none or it names no
    option (the benchmark scores such an answer wrong)."""
    tail = text.split(_BENCHMARK_DELIMITER)[-1].strip()
    match = _BENCHMARK_NUMBER.match(tail)
    number = int(match.group(1)) if match else 0
    return number if 1 <= number <= option_count else None


def _number(token: str) -> int:
    return CIRCLED.index(token) + 1 if token in CIRCLED else int(token)


def extract_choice(text: str, option_count: int) -> int | None:
    """The option number ``text`` gives (1..option_count), or None when it names none."""
    for pattern in PATTERNS:
        for match in pattern.finditer(text):
            number = _number(match["n"])
            if 1 <= number <= option_count:
                return number
    return None
