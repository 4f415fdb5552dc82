"""Synthetic FSKU-style items written by the teacher from chunks, and the checks they must pass.

Structural validation is deterministic code (an answer that is not an option, duplicate options,
missing fields never survive); the judge's 0-10 score is the quality gate on top of it.
"""

from __future__ import annotations

import json
import re
from string import Template
from typing import Any

from fsku_kedro.contracts import SyntheticQAPair

_JSON_OBJECT = re.compile(r"\{.*\}", re.S)
_SCORE = re.compile(r"(?<![\d.])(10(?:\.0+)?|\d(?:\.\d+)?)(?![\d.])")


class ItemRejected(ValueError):
    """A generated item that fails a structural check; the message is the reason, for the report."""


def writer_chat(template: str, context: str, num_options: int = 4) -> list[dict[str, str]]:
    return [{"role": "user", "content": Template(template).substitute(context=context, num_options=num_options)}]


def parse_item(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (models often wrap it in prose); never evaluated as code."""
    match = _JSON_OBJECT.search(text)
    if not match:
        raise ItemRejected("no JSON object in the output")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as error:
        raise ItemRejected(f"invalid JSON ({error.msg})") from error
    if not isinstance(data, dict):
        raise ItemRejected("the JSON value is not an object")
    return data


_NUMBERING = re.compile(r"^\s*(\d{1,2})\s*(?:[.):]\s*|\s+)(?=\S)")


def _without_numbering(option: str, position: int) -> str:
    """Drop a leading "2." / "2)" / "2 " that repeats the option's own number ("2억 원" stays)."""
    match = _NUMBERING.match(option)
    if match and int(match.group(1)) == position:
        return option[match.end() :].strip()
    return option.strip()


def build_item(
    data: dict[str, Any], question_type: str, qa_id: str, chunk_ids: list[str], teacher: str
) -> SyntheticQAPair:
    """Validate parsed output into a ``SyntheticQAPair``; raise ``ItemRejected`` with the reason."""
    question = str(data.get("question", "")).strip()
    if not question:
        raise ItemRejected("empty question")
    if question_type == "multiple_choice":
        options = data.get("options")
        if not isinstance(options, list) or not 4 <= len(options) <= 5:
            raise ItemRejected("a multiple-choice item needs 4 or 5 options")
        texts = [_without_numbering(str(option), position) for position, option in enumerate(options, start=1)]
        if any(not option for option in texts):
            raise ItemRejected("empty option")
        if len({" ".join(option.split()) for option in texts}) != len(texts):
            raise ItemRejected("duplicate options")
        answer = str(data.get("answer", "")).strip()
        choices = {str(number): option for number, option in enumerate(texts, start=1)}
        if answer not in choices:
            raise ItemRejected(f"answer {answer!r} is not one of the options 1..{len(choices)}")
        fields = {"choices": choices, "answer": answer, "keywords": []}
    else:
        answer = str(data.get("answer", "")).strip()
        keywords = data.get("keywords") or []
        if not answer:
            raise ItemRejected("empty reference answer")
        if not isinstance(keywords, list) or not all(isinstance(k, str) and k.strip() for k in keywords):
            raise ItemRejected("keywords must be a list of terms")
        fields = {"choices": None, "answer": answer, "keywords": [k.strip() for k in keywords]}
    try:
        return SyntheticQAPair(
            qa_id=qa_id,
            question_type=question_type,
            question=question,
            context_chunk_ids=chunk_ids,
            teacher_model=teacher,
            overall_quality_score=0.0,
            **fields,
        )
    except ValueError as error:
        raise ItemRejected(str(error).splitlines()[0]) from error


def competition_text(item: SyntheticQAPair) -> str:
    """The item written as a competition question cell: stem, then "<n> <text>" option lines."""
    if not item.choices:
        return item.question
    return "\n".join([item.question, *(f"{number} {text}" for number, text in item.choices.items())])


def judge_chat(template: str, context: str, item: SyntheticQAPair) -> list[dict[str, str]]:
    shown = competition_text(item) + f"\n정답: {item.answer}"
    return [{"role": "user", "content": Template(template).substitute(context=context, item=shown)}]


def parse_score(text: str) -> float | None:
    """The first number from 0 to 10 in the judge's output, or None."""
    match = _SCORE.search(text)
    return float(match.group(1)) if match else None


def _shingles(text: str, size: int = 2) -> set[str]:
    squashed = re.sub(r"\s+", "", text.lower())
    return {squashed[i : i + size] for i in range(max(1, len(squashed) - size + 1))}


def near_duplicates(questions: list[str], threshold: float) -> set[int]:
    """Indices of questions whose character-bigram Jaccard similarity to an earlier one reaches
    ``threshold`` (the earlier one is kept)."""
    kept: list[set[str]] = []
    dropped: set[int] = set()
    for index, question in enumerate(questions):
        grams = _shingles(question)
        if any(len(grams & other) / max(1, len(grams | other)) >= threshold for other in kept):
            dropped.add(index)
        else:
            kept.append(grams)
    return dropped
