"""Descriptive answers that are not text: a generation that loops on one short piece, an answer to a
Korean question with no Hangul at all, or one made of a handful of distinct characters. Each is
answered by the fallback like an empty answer, with its reason."""

from __future__ import annotations

import re

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def repeated_unit(text: str, max_unit: int, share: float = 0.9) -> int | None:
    """The length of a unit of at most ``max_unit`` characters that ``text`` (spaces removed) mostly
    repeats ("ercercerc" repeats "erc": 3), or None."""
    squashed = re.sub(r"\s+", "", text)
    for unit in range(1, max_unit + 1):
        if len(squashed) < 4 * unit:
            break
        same = sum(squashed[i] == squashed[i + unit] for i in range(len(squashed) - unit))
        if same >= share * (len(squashed) - unit):
            return unit
    return None


def degenerate_reason(question: str, answer: str, min_distinct_characters: int, max_repeated_unit: int) -> str:
    """Why ``answer`` is not a usable answer to ``question`` ("" when it is)."""
    if not answer.strip():
        return "empty_answer"
    if repeated_unit(answer, max_repeated_unit) is not None:
        return "repetitive_answer"
    if HANGUL.search(question) and not HANGUL.search(answer):
        return "no_hangul"
    if len(set(re.sub(r"\s+", "", answer))) < min_distinct_characters:
        return "too_few_characters"
    return ""
