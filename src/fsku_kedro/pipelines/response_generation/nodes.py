"""Nodes of response_generation: synthetic QA -> prompt set -> teacher/student responses -> pairs."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from string import Template
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fsku_kedro.contracts import SyntheticQAPair, validate_records
from fsku_kedro.generation.backends import GenerationBackend, GenerationParams, make_backend
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
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.prompt_templates import read_templates
from fsku_kedro.questions import parse_question
from fsku_kedro.splits import in_sample_train, unit_hash

logger = logging.getLogger(__name__)

PROMPT_SET_COLUMNS = ["prompt_id", "prompt", "source", "question_type", "reference", "split"]


def prompt_id(prompt: str) -> str:
    return hashlib.sha256(" ".join(prompt.split()).encode()).hexdigest()[:16]


def write_synthetic_qa(
    chunks: pd.DataFrame,
    teacher_model: ModelBundle,
    prompt_templates: dict[str, Callable[[], str]],
    parameters: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The teacher writes FSKU-style items from a seeded choice of chunks, through the quality gate."""
    rng = np.random.default_rng(parameters["seed"])
    eligible = chunks[chunks["chunk_type"] != "title"].sort_values("chunk_id")
    picked = eligible.iloc[rng.permutation(len(eligible))[: parameters["max_chunks"]]]
    plans = [
        {
            "chunk_id": row.chunk_id,
            "context": row.content,
            "type": "multiple_choice" if rng.random() < parameters["multiple_choice_share"] else "descriptive",
            "options": 4 + int(rng.random() < 0.5),
        }
        for row in picked.itertuples(index=False)
    ]
    backend = make_backend(teacher_model, parameters["backend"])
    return quality_gate(plans, backend, read_templates(prompt_templates), parameters)


def quality_gate(
    plans: list[dict[str, Any]], backend: GenerationBackend, templates: dict[str, str], parameters: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write one item per plan; keep it if it passes the structural checks and the judge scores it
    at least ``min_judge_score``; retry up to ``max_regenerations`` times, then drop and count it.
    Near-duplicate questions are removed last. Returns (items, report of outcomes)."""
    writing = GenerationParams.from_parameters(parameters["writer"])
    judging = GenerationParams.from_parameters(parameters["judge"])
    accepted: list[dict[str, Any]] = []
    last_reason: dict[int, str] = {}
    pending = list(range(len(plans)))
    for attempt in range(1 + parameters["max_regenerations"]):
        if not pending:
            break
        chats = [
            writer_chat(templates[f"qa_writer_{plans[i]['type']}"], plans[i]["context"], plans[i]["options"])
            for i in pending
        ]
        outputs = backend.generate(chats, GenerationParams(**{**writing.as_dict(), "seed": writing.seed + attempt}))
        candidates, retry = [], []
        for index, output in zip(pending, outputs):
            plan = plans[index]
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
            if score is not None and score >= parameters["min_judge_score"]:
                accepted.append(item.model_copy(update={"overall_quality_score": score}).model_dump())
            else:
                last_reason[index] = "judge: no score" if score is None else "judge: score below threshold"
                retry.append(index)
        pending = sorted(retry)
        logger.info("Synthetic QA attempt %d: %d accepted so far, %d to retry", attempt + 1, len(accepted), len(pending))
    outcomes: Counter[str] = Counter()
    for index in pending:
        outcomes[f"dropped ({last_reason[index]})"] += 1
    duplicates = near_duplicates([item["question"] for item in accepted], parameters["near_duplicate_threshold"])
    outcomes["dropped (near-duplicate question)"] += len(duplicates)
    kept = [item for i, item in enumerate(accepted) if i not in duplicates]
    outcomes["accepted"] = len(kept)
    report = pd.DataFrame(sorted(outcomes.items()), columns=["outcome", "items"])
    logger.info("Synthetic QA: %d accepted of %d planned items", len(kept), len(plans))
    return pd.DataFrame(kept, columns=list(SyntheticQAPair.model_fields)), report


def build_prompt_set(
    synthetic_qa: pd.DataFrame,
    sample_questions: pd.DataFrame,
    user_instructions: pd.DataFrame,
    prompt_templates: dict[str, Callable[[], str]],
    parameters: dict[str, Any],
) -> pd.DataFrame:
    """Synthetic items, the sample questions' train split and any user instructions, de-duplicated
    and split into train / validation by a seeded hash of the prompt (never in both)."""
    templates = read_templates(prompt_templates)
    seed = parameters["seed"]
    rows = []

    def add(question_text: str, question_type: str, source: str, reference: str) -> None:
        template = templates["answer_multiple_choice" if question_type == "multiple_choice" else "answer_descriptive"]
        prompt = Template(template).substitute(question=question_text)
        rows.append({"prompt": prompt, "source": source, "question_type": question_type, "reference": reference})

    records = synthetic_qa.astype(object).where(synthetic_qa.notna(), None).to_dict("records")
    for item in validate_records(records, SyntheticQAPair, source="synthetic_qa"):
        add(competition_text(item), item.question_type, "synthetic", item.answer)
    for row in sample_questions.itertuples(index=False):
        if in_sample_train(row.ID, seed, parameters["sample_train_share"]):
            question = parse_question(row.ID, row.Question)
            add(row.Question, question.question_type, "sample", "")
    for row in user_instructions.itertuples(index=False):
        rows.append({"prompt": row.prompt, "source": "user", "question_type": "instruction",
                     "reference": row.reference})
    frame = pd.DataFrame(rows, columns=PROMPT_SET_COLUMNS[1:-1])
    frame.insert(0, "prompt_id", frame["prompt"].map(prompt_id))
    before = len(frame)
    frame = frame.drop_duplicates("prompt_id").reset_index(drop=True)
    frame["split"] = [
        "validation" if unit_hash(seed, "split", pid) < parameters["validation_share"] else "train"
        for pid in frame["prompt_id"]
    ]
    logger.info(
        "Prompt set: %d prompts (%d duplicates removed): %s",
        len(frame), before - len(frame), frame.groupby(["source", "split"]).size().to_dict(),
    )
    if frame.empty:
        raise ValueError("the prompt set is empty: no synthetic item, sample question or user instruction")
    return frame[PROMPT_SET_COLUMNS]


def _in_shard(pid: str, index: int, count: int) -> bool:
    return int(unit_hash("shard", pid) * count) == index


def generate_responses(
    prompt_set: pd.DataFrame, model: ModelBundle, response_store: ResponseStore, parameters: dict[str, Any]
) -> pd.DataFrame:
    """Answer every prompt of this shard, appending each finished batch to ``response_store``;
    prompts already answered there with the same model and settings are not generated again."""
    params = GenerationParams.from_parameters(parameters)
    shard, shards = parameters.get("shard_index", 0), parameters.get("num_shards", 1)
    if not 0 <= shard < shards:
        raise ValueError(f"shard_index {shard} is outside 0..{shards - 1}")
    # A retrained model must be saved under a new name or path, or its old answers would be reused.
    run = fingerprint(
        model.name, {**params.as_dict(), "system_prompt": parameters.get("system_prompt"), "path": model.path}
    )
    mine = prompt_set[[_in_shard(pid, shard, shards) for pid in prompt_set["prompt_id"]]]
    done = response_store.finished(run)
    todo = mine[~mine["prompt_id"].isin(done)]
    todo = todo.iloc[np.argsort(-todo["prompt"].str.len().to_numpy(), kind="stable")]
    logger.info(
        "%s: %d prompts in shard %d/%d, %d already answered", model.name, len(mine), shard, shards, len(mine) - len(todo)
    )
    if len(todo):
        backend = make_backend(model, parameters, show_progress=False)  # progress is shown per flush below
        step = parameters.get("batch_size", 8) * parameters.get("batches_per_flush", 1)
        for start in tqdm(range(0, len(todo), step), desc=f"responses ({model.name})"):
            part = todo.iloc[start : start + step]
            chats = [_chat(prompt, parameters.get("system_prompt")) for prompt in part["prompt"]]
            completions = backend.generate(chats, params)
            response_store.append(
                [
                    {
                        "prompt_id": pid,
                        "prompt": prompt,
                        "model": model.name,
                        "generation": params.as_dict(),
                        "response": completion.text,
                        "finish_reason": completion.finish_reason,
                        "prompt_tokens": completion.prompt_tokens,
                        "completion_tokens": completion.completion_tokens,
                        "fingerprint": run,
                        "shard": shard,
                    }
                    for pid, prompt, completion in zip(part["prompt_id"], part["prompt"], completions)
                ]
            )
        done = response_store.finished(run)
    records = [done[pid] for pid in mine["prompt_id"] if pid in done]
    return pd.DataFrame(records)


def _chat(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    chat = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return chat + [{"role": "user", "content": prompt}]


def build_pairs(
    prompt_set: pd.DataFrame,
    teacher_responses: pd.DataFrame,
    student_responses: pd.DataFrame,
    parameters: dict[str, Any],
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
        if longest > parameters["max_total_tokens"]:
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
