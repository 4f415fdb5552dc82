"""The labelled sample questions held out of the prompt set (response_generation's sample split)."""

from __future__ import annotations

import pandas as pd

from fsku_kedro.contracts import CompetitionQuestion, DataContractError, LabelledAnswer


def held_out_questions(
    sample_questions: list[CompetitionQuestion], sample_labels: list[LabelledAnswer], sample_split: pd.DataFrame
) -> tuple[list[CompetitionQuestion], dict[str, LabelledAnswer]]:
    """The labelled sample questions the split marks ``held_out``, and every label by ID."""
    missing = {"ID", "split"} - set(sample_split.columns)
    if missing:
        raise DataContractError(f"sample_split: missing column(s) {sorted(missing)}; found {list(sample_split.columns)}")
    held = set(sample_split.loc[sample_split["split"] == "held_out", "ID"].astype(str))
    labels = {label.ID: label for label in sample_labels}
    return [q for q in sample_questions if q.ID in held and q.ID in labels], labels
