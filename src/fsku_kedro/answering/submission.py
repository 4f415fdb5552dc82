"""Answering a competition test set and writing its submission: what the inference pipeline serves
and the competition package replays offline."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from fsku_kedro.answering.batch_runner import answer_questions
from fsku_kedro.answering.fallback_policy import check_fallback_share
from fsku_kedro.answering.prompts import PreparedQuestion
from fsku_kedro.contracts import CompetitionQuestion, Passage, SubmissionRow
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.inference import InferenceSettings
from fsku_kedro.prompt_templates import read_templates

SUBMISSION_COLUMNS = ["ID", "Answer"]


def answer_test_questions(
    questions: list[CompetitionQuestion],
    passages: dict[str, tuple[Passage, ...]],
    inference_model: ModelBundle,
    prompt_templates: dict[str, Callable[[], str]],
    answer_progress: ResponseStore,
    settings: InferenceSettings,
) -> list[SubmissionRow]:
    """One answer per question (how it was made included), resumable; fails when more of them fell
    back than ``inference.max_fallback_share`` allows."""
    items = [PreparedQuestion(q, tuple(passages.get(q.ID, ()))) for q in questions]
    rows = answer_questions(items, inference_model, read_templates(prompt_templates), settings, answer_progress)
    check_fallback_share(rows, settings.max_fallback_share)
    return rows


def write_submission(questions: list[CompetitionQuestion],
                     answers: list[SubmissionRow]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``ID,Answer`` in test.csv order (multiple-choice answers are bare digits), and the detailed rows."""
    by_id = {row.ID: row for row in answers}
    missing = [q.ID for q in questions if q.ID not in by_id]
    if missing:
        raise ValueError(f"no answer for {len(missing)} question(s): {missing[:10]}")
    ordered = [by_id[q.ID] for q in questions]
    for question, row in zip(questions, ordered):
        if question.question_type == "multiple_choice" and row.answer not in (question.choices or {}):
            raise ValueError(f"{question.ID}: answer {row.answer!r} is not one of the options {list(question.choices or {})}")
    submission = pd.DataFrame({"ID": [row.ID for row in ordered], "Answer": [row.answer for row in ordered]},
                              columns=SUBMISSION_COLUMNS)
    rows = pd.DataFrame([row.model_dump() for row in ordered], columns=list(SubmissionRow.model_fields))
    return submission, rows
