"""Competition questions: from a ``test.csv`` cell to a ``CompetitionQuestion``.

Options are the trailing run of lines numbered consecutively from 1 ("1 text", "1. text",
"1) text" or "① text"). Lines that merely begin with a number ("3억 원 이상", "제3조",
"1단계와 2단계") are part of the stem; lines of marks only ("###") after the last option are ignored.
"""

from __future__ import annotations

import random
import re

import pandas as pd

from fsku_kedro.contracts import CompetitionQuestion, DataContractError

CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩"
OPTION_LINE = re.compile(rf"^\s*(?:(?P<num>\d{{1,2}})(?:[.)]\s*|\s+)|(?P<circled>[{CIRCLED}])\s*)(?P<text>\S.*)$")
MIN_OPTIONS, MAX_OPTIONS = 2, 10
# A stem that asks for the option that does not hold ("...옳지 않은 것은?", "...해당하지 않는 요소는
# 무엇인가?"): the negation right before the noun the question ends on, not one inside a clause.
INCORRECT_STEM = re.compile(r"(?:않은|않는|아닌|틀린|거리가 먼|무관한)\s*(?:것|항목|사례|내용|설명|사항|요소|사람"
                            r"|단계|행위|기관|조치)[은는이가]?(?:\s*(?:무엇|누구)\S*)?\s*[?？]?$")


def _option(line: str) -> tuple[int, str] | None:
    match = OPTION_LINE.match(line)
    if not match:
        return None
    number = int(match["num"]) if match["num"] else CIRCLED.index(match["circled"]) + 1
    return number, match["text"].strip()


def split_options(text: str) -> tuple[str, dict[str, str] | None]:
    """Return (stem, options) where options is None for a descriptive question."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    options: list[tuple[int, str]] = []
    first_option_line = len(lines)
    expected = None
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if not line.strip() or (not options and not any(ch.isalnum() for ch in line)):
            continue  # blank lines, and trailing marks such as "###" after the last option
        parsed = _option(line)
        if parsed is None or (expected is not None and parsed[0] != expected):
            break
        options.insert(0, parsed)
        first_option_line = index
        expected = parsed[0] - 1
        if expected == 0:
            break
    if not options or options[0][0] != 1 or not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
        return text.strip(), None
    stem = "\n".join(lines[:first_option_line]).strip()
    if not stem:
        return text.strip(), None
    return stem, {str(number): option for number, option in options}


def parse_question(question_id: str, text: str) -> CompetitionQuestion:
    stem, options = split_options(text)
    return CompetitionQuestion(
        ID=question_id,
        Question=text,
        question_type="multiple_choice" if options else "descriptive",
        parsed_question=stem,
        choices=options,
    )


def asks_for_incorrect(question: CompetitionQuestion) -> bool:
    """Whether a multiple-choice stem asks which option is not correct."""
    return bool(question.choices) and bool(INCORRECT_STEM.search(question.parsed_question.strip()))


def shuffled_order(question: CompetitionQuestion, seed: int) -> list[int]:
    """The original option numbers in an order seeded by ``seed`` and the question's id."""
    order = list(range(1, len(question.choices or {}) + 1))
    random.Random(f"{seed}:{question.ID}").shuffle(order)
    return order


def shuffled(question: CompetitionQuestion, seed: int) -> CompetitionQuestion:
    """The question with its options in ``shuffled_order``, renumbered from 1."""
    options = question.choices or {}
    lines = (f"{n} {options[str(original)]}" for n, original in enumerate(shuffled_order(question, seed), start=1))
    return parse_question(question.ID, "\n".join([question.parsed_question, *lines]))


def retrieval_query(question: CompetitionQuestion) -> str:
    """The text a question is searched with: its stem followed by its options' texts."""
    parts = [question.parsed_question]
    if question.choices:
        parts.extend(question.choices.values())
    return "\n".join(parts)


def check_test_table(frame: pd.DataFrame, source: str) -> None:
    """Refuse a test table without ``ID``/``Question`` columns, with duplicate IDs or empty questions;
    the error lists every offending row (row 1 is the header; a quoted multi-line cell is one row)."""
    missing = [column for column in ("ID", "Question") if column not in frame.columns]
    if missing:
        raise DataContractError(f"{source}: missing column(s) {missing}; found {list(frame.columns)}")
    problems = []
    ids = frame["ID"].astype(str).str.strip()
    questions = frame["Question"].astype(str)
    for position, (question_id, text) in enumerate(zip(ids, questions)):
        row = position + 2
        if not question_id:
            problems.append(f"{source}: row {row}: empty ID")
        if not text.strip():
            problems.append(f"{source}: row {row} (ID {question_id}): empty question")
    duplicated = ids[ids.duplicated(keep=False) & (ids != "")]
    for question_id, positions in duplicated.groupby(duplicated).groups.items():
        rows = ", ".join(str(frame.index.get_loc(p) + 2) for p in positions)
        problems.append(f"{source}: duplicate ID {question_id} in rows {rows}")
    if problems:
        shown = "\n".join(problems[:30])
        more = f"\n... and {len(problems) - 30} more" if len(problems) > 30 else ""
        raise DataContractError(f"{len(problems)} problem(s) in the test questions:\n{shown}{more}")


def parse_test_table(frame: pd.DataFrame, source: str) -> list[CompetitionQuestion]:
    """Every row of a checked test table as a ``CompetitionQuestion``, in file order."""
    check_test_table(frame, source)
    return [parse_question(str(row.ID).strip(), str(row.Question)) for row in frame.itertuples(index=False)]
