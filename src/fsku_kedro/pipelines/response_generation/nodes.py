"""Nodes of response_generation: the student derived from its source; synthetic QA -> prompt set (and the
sample questions' split).

Teacher and student responses come from the generation template and pairs from the pairs
template (``fsku_kedro.pipelines.templates``), which distillation reuses for later rounds.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from string import Template
from typing import Any

import numpy as np
import pandas as pd

from fsku_kedro.contracts import CompetitionQuestion, SyntheticQAPair, validate_records
from fsku_kedro.evaluation.fsku_benchmark import descriptive_id, mc_id
from fsku_kedro.generation.backends import GenerationBackend, make_backend
from fsku_kedro.generation.decontamination import ContaminationIndex, EvaluationItem, StemRule
from fsku_kedro.generation.store import ResponseStore, fingerprint
from fsku_kedro.generation.synthetic_qa import (
    ItemRejected,
    build_item,
    competition_text,
    judge_chat,
    near_duplicates,
    parse_item,
    parse_score,
    writer_chat,
)
from fsku_kedro.hashing import json_hash, stable_hash, unit_hash
from fsku_kedro.knowledge.corpus_questions import descriptive_questions
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.derivation import derive
from fsku_kedro.parameters.response_generation import (
    DecontaminationSettings,
    PromptSetSettings,
    SyntheticQASettings,
)
from fsku_kedro.parameters.student_shape import StudentShapeSettings
from fsku_kedro.prompt_templates import read_templates

logger = logging.getLogger(__name__)

PROMPT_SET_COLUMNS = ["prompt_id", "prompt", "source", "question_type", "reference", "split"]


SPLIT_COLUMNS = ["ID", "split"]
REPORT_COLUMNS = ["source", "prompt_id", "prompt", "evaluation_set", "evaluation_id", "evaluation_text", "rule",
                  "containment", "stem_edits"]


def calibration_passages(chunks: pd.DataFrame, count: int) -> list[str]:
    """``count`` chunk texts evenly spaced over the knowledge base in chunk order (titles left out)."""
    texts = chunks[chunks["chunk_type"] != "title"].sort_values("chunk_id")["content"].astype(str).str.strip()
    texts = [text for text in texts if text]
    step = max(1, len(texts) // count)
    return texts[::step][:count]


def derive_student(source: ModelBundle, chunks: pd.DataFrame, shape: StudentShapeSettings) -> ModelBundle:
    """The student: ``source`` cut to ``shape`` (depth, then width), measured on the knowledge base's chunks."""
    passages = calibration_passages(chunks, shape.calibration_passages)
    student = derive(source, passages, shape.layers, shape.layer_selection, shape.mlp_channels,
                     shape.mlp_compensation_damping)
    logger.info("Derived %s (%d parameters) from %s", student.name, student.num_parameters, source.name)
    return student


def prompt_id(prompt: str) -> str:
    return stable_hash(" ".join(prompt.split()))


def write_synthetic_qa(
    chunks: pd.DataFrame,
    teacher_model: ModelBundle,
    prompt_templates: dict[str, Callable[[], str]],
    progress: ResponseStore,
    settings: SyntheticQASettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The teacher writes FSKU-style items from a seeded choice of chunks, through the quality gate.
    The choice is a prefix of one seeded order, so a larger ``max_chunks`` extends the earlier plans
    and ``progress`` (each plan's outcome, appended as it is decided) spares the ones already done."""
    rng = np.random.default_rng(settings.seed)
    eligible = chunks[chunks["chunk_type"] != "title"].sort_values("chunk_id")
    order = rng.permutation(len(eligible))
    plans = []
    for row in eligible.iloc[order[: settings.max_chunks]].itertuples(index=False):
        kind = "multiple_choice" if rng.random() < settings.multiple_choice_share else "descriptive"
        plans.append({"chunk_id": row.chunk_id, "context": row.content, "type": kind,
                      "options": 4 + int(rng.random() < 0.5)})
    backend = make_backend(teacher_model, settings.backend, show_progress=False)
    return quality_gate(plans, backend, read_templates(prompt_templates), settings, progress)


def _plan_key(plan: dict[str, Any]) -> str:
    return json_hash([plan["chunk_id"], plan["type"], plan["options"], plan["context"]])


def quality_gate(
    plans: list[dict[str, Any]],
    backend: GenerationBackend,
    templates: dict[str, str],
    settings: SyntheticQASettings,
    progress: ResponseStore,
    plans_per_save: int = 8,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write one item per plan; keep it if it passes the structural checks and the judge scores it
    at least ``min_judge_score``; retry up to ``max_regenerations`` times, then drop and count it.
    Near-duplicate questions are removed last. Returns (items, report of outcomes).

    Plans go through the gate ``plans_per_save`` at a time; each one's outcome is appended to
    ``progress``, and a restarted run with the same teacher, settings and templates skips every plan
    already decided there."""
    names = ["qa_writer_multiple_choice", "qa_writer_descriptive", "qa_judge"]
    run = fingerprint(backend.model_name, {
        "gate": settings.model_dump(include={"writer", "judge", "min_judge_score", "max_regenerations"}, mode="json"),
        "templates": json_hash([templates[name] for name in names])})
    by_key = {_plan_key(plan): plan for plan in plans}
    decided = progress.complete(
        run, list(by_key), lambda keys: _through_gate([by_key[key] for key in keys], backend, templates, settings),
        plans_per_save, f"synthetic QA ({backend.model_name})", unit="item")
    outcomes: Counter[str] = Counter()
    accepted = []
    for plan in plans:
        record = decided[_plan_key(plan)]
        if record["item"] is None:
            outcomes[record["outcome"]] += 1
        else:
            accepted.append(record["item"])
    duplicates = near_duplicates([item["question"] for item in accepted], settings.near_duplicate_threshold)
    outcomes["dropped (near-duplicate question)"] += len(duplicates)
    kept = [item for i, item in enumerate(accepted) if i not in duplicates]
    outcomes["accepted"] = len(kept)
    report = pd.DataFrame(sorted(outcomes.items()), columns=["outcome", "items"])
    logger.info("Synthetic QA: %d accepted of %d planned items", len(kept), len(plans))
    return pd.DataFrame(kept, columns=list(SyntheticQAPair.model_fields)), report


def _through_gate(
    plans: list[dict[str, Any]], backend: GenerationBackend, templates: dict[str, str], settings: SyntheticQASettings
) -> list[dict[str, Any]]:
    """Per plan, ``{"outcome": "accepted", "item": <item>}`` or ``{"outcome": "dropped (<reason>)",
    "item": None, "last_output": <the writer's last text>}`` after the writer, the checks, the judge
    and the retries (the last output shows, in the progress file, why items fail)."""
    writing, judging = settings.writer, settings.judge
    accepted: dict[int, dict[str, Any]] = {}
    last_reason: dict[int, str] = {}
    last_output: dict[int, str] = {}
    pending = list(range(len(plans)))
    for attempt in range(1 + settings.max_regenerations):
        if not pending:
            break
        chats = [
            writer_chat(templates[f"qa_writer_{plans[i]['type']}"], plans[i]["context"], plans[i]["options"])
            for i in pending
        ]
        outputs = backend.generate(chats, writing.model_copy(update={"seed": writing.seed + attempt}))
        candidates, retry = [], []
        for index, output in zip(pending, outputs):
            plan = plans[index]
            last_output[index] = output.text
            try:
                item = build_item(
                    parse_item(output.text), plan["type"], f"qa-{plan['chunk_id']}-{attempt}", [plan["chunk_id"]],
                    backend.model_name,
                )
                candidates.append((index, item))
            except ItemRejected as reason:
                last_reason[index] = f"structure: {reason}"
                retry.append(index)
        judged = backend.generate(
            [judge_chat(templates["qa_judge"], plans[i]["context"], item) for i, item in candidates], judging
        ) if candidates else []
        for (index, item), verdict in zip(candidates, judged):
            score = parse_score(verdict.text)
            if score is not None and score >= settings.min_judge_score:
                accepted[index] = item.model_copy(update={"overall_quality_score": score}).model_dump(mode="json")
            else:
                last_reason[index] = "judge: no score" if score is None else "judge: score below threshold"
                retry.append(index)
        pending = sorted(retry)
        logger.debug("Synthetic QA attempt %d: %d accepted so far, %d to retry", attempt + 1, len(accepted),
                     len(pending))
    return [{"outcome": "accepted", "item": accepted[i]} if i in accepted
            else {"outcome": f"dropped ({last_reason[i]})", "item": None, "last_output": last_output[i]}
            for i in range(len(plans))]


def build_prompt_set(
    synthetic_qa: pd.DataFrame,
    chunks: pd.DataFrame,
    sample_questions: list[CompetitionQuestion],
    user_instructions: pd.DataFrame,
    prompt_templates: dict[str, Callable[[], str]],
    settings: PromptSetSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic items, descriptive questions made from the knowledge base's sections
    (``corpus_descriptive``), the sample questions' train split and any user instructions, de-duplicated
    and split into train / validation by a seeded hash of the prompt (never in both); and the
    sample questions' split (``ID``, ``split``: train or held_out), which the validation of later
    stages reads."""
    templates = read_templates(prompt_templates)
    rows = []

    def add(question_text: str, question_type: str, source: str, reference: str) -> None:
        template = templates["answer_multiple_choice" if question_type == "multiple_choice" else "answer_descriptive"]
        prompt = Template(template).substitute(question=question_text)
        rows.append({"prompt": prompt, "source": source, "question_type": question_type, "reference": reference})

    records = synthetic_qa.astype(object).where(synthetic_qa.notna(), None).to_dict("records")
    for item in validate_records(records, SyntheticQAPair, source="synthetic_qa"):
        add(competition_text(item), item.question_type, "synthetic", item.answer)
    for text, question in descriptive_questions(chunks, settings.corpus_descriptive, settings.seed):
        add(question, "descriptive", "corpus", text)
    split = pd.DataFrame(
        [{"ID": q.ID, "split": "train" if unit_hash(settings.seed, "sample", q.ID) < settings.sample_train_share
          else "held_out"} for q in sample_questions],
        columns=SPLIT_COLUMNS,
    )
    for question, part in zip(sample_questions, split["split"]):
        if part == "train":
            add(question.Question, question.question_type, "sample", "")
    for row in user_instructions.itertuples(index=False):
        rows.append({"prompt": row.prompt, "source": "user", "question_type": "instruction",
                     "reference": row.reference})
    frame = pd.DataFrame(rows, columns=PROMPT_SET_COLUMNS[1:-1])
    frame.insert(0, "prompt_id", frame["prompt"].map(prompt_id))
    before = len(frame)
    frame = frame.drop_duplicates("prompt_id").reset_index(drop=True)
    frame["split"] = [
        "validation" if unit_hash(settings.seed, "split", pid) < settings.validation_share else "train"
        for pid in frame["prompt_id"]
    ]
    logger.info(
        "Prompt set: %d prompts (%d duplicates removed): %s; sample questions: %s",
        len(frame), before - len(frame), frame.groupby(["source", "split"]).size().to_dict(),
        split["split"].value_counts().to_dict(),
    )
    if frame.empty:
        raise ValueError("the prompt set is empty: no synthetic item, corpus question, sample question or user "
                         "instruction")
    return frame[PROMPT_SET_COLUMNS], split


def decontaminate(
    prompt_set: pd.DataFrame,
    sample_questions: list[CompetitionQuestion],
    sample_split: pd.DataFrame,
    test_questions: list[CompetitionQuestion],
    fsku_benchmark_mc: pd.DataFrame,
    fsku_benchmark_descriptive: pd.DataFrame,
    settings: DecontaminationSettings,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The prompt set without the prompts (synthetic items, sample questions, user instructions) that
    repeat an evaluation question: the held-out sample questions, the competition's test questions
    (but for the sample questions the prompt set trains on, when test.csv is the sample file itself)
    and the FSKU benchmark when present. Each dropped prompt is reported with the question it repeats."""
    held_out = set(sample_split.loc[sample_split["split"] == "held_out", "ID"].astype(str))
    trained = {(q.ID, q.Question) for q in sample_questions if q.ID not in held_out}
    items = [EvaluationItem("sample_held_out", q.ID, q.Question) for q in sample_questions if q.ID in held_out]
    items += [EvaluationItem("test_questions", q.ID, q.Question) for q in test_questions
              if (q.ID, q.Question) not in trained]
    items += [EvaluationItem("fsku_benchmark", mc_id(i), text)
              for i, text in enumerate(fsku_benchmark_mc.get("Question", pd.Series(dtype=str)).astype(str))]
    items += [EvaluationItem("fsku_benchmark", descriptive_id(i), text)
              for i, text in enumerate(fsku_benchmark_descriptive.get("Question", pd.Series(dtype=str)).astype(str))]
    index = ContaminationIndex(items, settings.ngram, settings.min_containment, settings.min_shared,
                               StemRule(settings.stem_max_edit_share, settings.stem_min_chars))
    records = prompt_set.to_dict("records")
    rows, keep = [], []
    for record, found in zip(records, index.match_all([record["prompt"] for record in records])):
        keep.append(found is None)
        if found is not None:
            rows.append({"source": record["source"], "prompt_id": record["prompt_id"], "prompt": record["prompt"][:200],
                         "evaluation_set": found.item.evaluation_set, "evaluation_id": found.item.item_id,
                         "evaluation_text": found.item.text[:200], "rule": found.rule,
                         "containment": round(found.containment, 4), "stem_edits": found.stem_edits})
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    clean = prompt_set[keep].reset_index(drop=True)
    counts: Counter[str] = Counter({"checked": len(prompt_set), "dropped": len(report),
                                    "evaluation_items": len(items)})
    counts.update(f"dropped.{source}" for source in report["source"])
    counts.update(f"matched.{name}" for name in report["evaluation_set"])
    counts.update(f"rule.{name}" for name in report["rule"])
    logger.info("Decontamination: %d of %d prompts dropped against %d evaluation questions: %s", len(report),
                len(prompt_set), len(items), dict(counts))
    if clean.empty:
        raise ValueError("every prompt repeats an evaluation question; see the decontamination report")
    metrics = {f"decontamination.{name}": {"value": float(value), "step": 0} for name, value in counts.items()}
    return clean, report, metrics
