"""The labelled sample questions held out of the prompt set (its validation half)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer, validate_records
from fsku_kedro.questions import parse_question
from fsku_kedro.splits import in_sample_train


def held_out_questions(
    sample_questions: pd.DataFrame, sample_labels: pd.DataFrame, prompt_set_parameters: dict[str, Any]
) -> tuple[list[CompetitionQuestion], dict[str, LabelledAnswer]]:
    """The labelled sample questions that the prompt set left out, and every label by ID."""
    labels = {
        label.ID: label
        for label in validate_records(sample_labels.to_dict("records"), LabelledAnswer, source="sample_labels")
    }
    seed, share = prompt_set_parameters["seed"], prompt_set_parameters["sample_train_share"]
    questions = [
        parse_question(row.ID, row.Question)
        for row in sample_questions.itertuples(index=False)
        if not in_sample_train(row.ID, seed, share) and row.ID in labels
    ]
    return questions, labels
