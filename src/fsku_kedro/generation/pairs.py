"""Preference pairs: the teacher's response (chosen) and the student's (rejected) to the same prompt."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pandas as pd

from fsku_kedro.parameters.response_generation import PairSettings

logger = logging.getLogger(__name__)


def build_pairs(
    prompt_set: pd.DataFrame,
    teacher_responses: pd.DataFrame,
    student_responses: pd.DataFrame,
    settings: PairSettings,
) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """Join teacher (chosen) and student (rejected) responses on prompt_id into TRL's
    conversational preference format; mismatches, empty and over-length pairs are dropped and counted."""
    from datasets import Dataset, DatasetDict

    counts: Counter[str] = Counter()
    teacher = {r["prompt_id"]: r for r in teacher_responses.to_dict("records")} if len(teacher_responses) else {}
    student = {r["prompt_id"]: r for r in student_responses.to_dict("records")} if len(student_responses) else {}
    counts["teacher only"] = len(set(teacher) - set(student))
    counts["student only"] = len(set(student) - set(teacher))
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    for prompt in prompt_set.to_dict("records"):
        pid = prompt["prompt_id"]
        if pid not in teacher or pid not in student:
            continue
        chosen, rejected = teacher[pid], student[pid]
        if chosen["prompt"] != prompt["prompt"] or rejected["prompt"] != prompt["prompt"]:
            counts["prompt text mismatch"] += 1
            continue
        if not str(chosen["response"]).strip() or not str(rejected["response"]).strip():
            counts["empty generation"] += 1
            continue
        longest = max(
            int(chosen["prompt_tokens"]) + int(chosen["completion_tokens"]),
            int(rejected["prompt_tokens"]) + int(rejected["completion_tokens"]),
        )
        if longest > settings.max_total_tokens:
            counts["over length"] += 1
            continue
        rows[prompt["split"]].append(
            {
                "prompt_id": pid,
                "prompt": [{"role": "user", "content": prompt["prompt"]}],
                "chosen": [{"role": "assistant", "content": chosen["response"]}],
                "rejected": [{"role": "assistant", "content": rejected["response"]}],
            }
        )
    counts["pairs train"] = len(rows["train"])
    counts["pairs validation"] = len(rows["validation"])
    if not rows["train"]:
        raise ValueError(f"no usable training pair; counts: {dict(counts)}")
    dataset = DatasetDict({split: Dataset.from_list(items) for split, items in rows.items() if items})
    report = pd.DataFrame(sorted(counts.items()), columns=["outcome", "pairs"])
    metrics = {f"pairs.{name.replace(' ', '_')}": {"value": float(value), "step": 0} for name, value in counts.items()}
    logger.info("Pairs: %s", dict(counts))
    return dataset, report, metrics
