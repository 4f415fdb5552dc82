"""Nodes of the inference pipeline: retrieval (cached), the served model, answers, the submission
and the FSKU evaluation. Questions arrive parsed and checked (``QuestionsDataset``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from fsku_kedro.answering.orchestrator import (
    Passage,
    PreparedQuestion,
    answer_questions,
    check_fallback_share,
    fallback_counts,
)
from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer, SubmissionRow
from fsku_kedro.evaluation.answer_report import (
    REPORT_COLUMNS,
    answer_distribution_figure,
    answer_report,
    report_figure,
    report_metrics,
    score_items,
)
from fsku_kedro.evaluation.fsku_benchmark import benchmark_set
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.hashing import json_hash
from fsku_kedro.knowledge.content_cache import compute_with_cache
from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.knowledge.retrieval import HybridRetriever, Reranker
from fsku_kedro.knowledge.sparse import SparseIndex
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.models.loading import load_any_model
from fsku_kedro.parameters.inference import InferenceSettings
from fsku_kedro.parameters.retrieval import RetrievalSettings
from fsku_kedro.prompt_templates import read_templates
from fsku_kedro.questions import retrieval_query

logger = logging.getLogger(__name__)

SUBMISSION_COLUMNS = ["ID", "Answer"]


def retrieve_passages(
    questions: list[CompetitionQuestion],
    chunks: pd.DataFrame,
    bm25_index: SparseIndex,
    faiss_index: DenseIndex,
    embedder: Embedder,
    reranker: Reranker | None,
    retrieval_cache: dict[str, Any],
    settings: RetrievalSettings,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Top-k passages per question ID through the knowledge-base retriever. Results are cached by a
    hash of the query under a fingerprint of the chunks and retrieval settings (cache-aside), so a
    re-run or a resumed run retrieves only new questions."""
    kinds = pd.Series([q.question_type for q in questions]).value_counts().to_dict() if questions else {}
    logger.info("%d test questions: %s", len(questions), kinds)
    if not questions:
        return {}, retrieval_cache
    retriever = HybridRetriever.from_settings(chunks, bm25_index, faiss_index, embedder, reranker, settings)
    namespace = json_hash([sorted(chunks["content_hash"].astype(str)), settings.model_dump(), embedder.name,
                           type(reranker).__name__])

    def search(queries: list[str]) -> list[list[list[Any]]]:
        hits = retriever.retrieve(queries, k=settings.k, mode=settings.mode)
        return [[[hit.chunk_id, round(hit.score, 6)] for hit in row] for row in hits]

    queries = [retrieval_query(q) for q in questions]
    results, cache, computed = compute_with_cache(queries, f"retrieval:{namespace}", retrieval_cache, search)
    logger.info("Retrieval: %d of %d questions searched, %d from the cache", computed, len(queries),
                len(queries) - computed)
    texts = dict(zip(chunks["chunk_id"], chunks["content"]))
    passages = {
        q.ID: [{"chunk_id": cid, "score": float(score), "text": texts[cid]} for cid, score in hits if cid in texts]
        for q, hits in zip(questions, results)
    }
    return passages, cache


def load_inference_model(model_path: str | None, settings: InferenceSettings) -> ModelBundle:
    """The model that answers: the latest compressed student, or the directory ``model_dirs.inference``
    names."""
    if not model_path:
        raise FileNotFoundError(
            "no model to answer with: run `kedro run --pipelines compression` first, or name a model directory "
            "with `--params model_dirs.inference=/path/to/model`"
        )
    bundle = load_any_model(Path(model_path), settings.dtype, settings.trust_remote_code)
    logger.info("Answering with %s from %s", bundle.name, model_path)
    return bundle


def answer_test_questions(
    questions: list[CompetitionQuestion],
    passages: dict[str, list[dict[str, Any]]],
    inference_model: ModelBundle,
    prompt_templates: dict[str, Callable[[], str]],
    answer_progress: ResponseStore,
    settings: InferenceSettings,
) -> list[SubmissionRow]:
    """One answer per question (how it was made included), resumable; fails when more of them fell
    back than ``inference.max_fallback_share`` allows."""
    items = [
        PreparedQuestion(q, tuple(Passage(p["chunk_id"], p["score"], p["text"]) for p in passages.get(q.ID, [])))
        for q in questions
    ]
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


def evaluate_answers(
    answers: list[SubmissionRow],
    questions: list[CompetitionQuestion],
    labels: list[LabelledAnswer],
    score_embedder: Embedder,
) -> tuple[pd.DataFrame, dict[str, Any], plt.Figure]:
    """FSKU score overall and per domain for the labelled questions (none labelled: an empty report);
    the metrics also count every answer's fallbacks by reason (``fallbacks.<reason>``)."""
    if not labels:
        logger.info("No labels for these questions; the evaluation report is empty")
    items = score_items(answers, questions, labels, score_embedder)
    report = answer_report(items) if len(items) else pd.DataFrame(columns=REPORT_COLUMNS)
    counts = fallback_counts(answers)
    fallbacks = {f"fallbacks.{reason}": {"value": float(n), "step": 0} for reason, n in counts.items()}
    fallbacks["fallbacks.total"] = {"value": float(sum(counts.values())), "step": 0}
    if len(items):
        overall = report.iloc[0]
        logger.info("FSKU score %.4f over %d labelled questions (MC accuracy %s, descriptive score %s)",
                    overall["fsku_score"], len(items), overall["mc_accuracy"], overall["descriptive_score"])
    return report, report_metrics(report) | fallbacks, report_figure(report, f"FSKU score by domain ({len(items)} labelled)")


def plot_answer_distribution(answers: list[SubmissionRow], questions: list[CompetitionQuestion],
                             labels: list[LabelledAnswer]) -> plt.Figure:
    """Which option numbers the model chose, per domain, beside the answer key."""
    return answer_distribution_figure(answers, questions, labels)


def prepare_fsku_benchmark(
    mc: pd.DataFrame, mc_answers: pd.DataFrame, descriptive: pd.DataFrame, settings: InferenceSettings
) -> tuple[list[CompetitionQuestion], list[LabelledAnswer]]:
    """The benchmark's questions (parsed) and labels; none when its files are absent."""
    if mc.attrs.get("missing") and descriptive.attrs.get("missing"):
        logger.warning("FSKU benchmark files not found (%s); its evaluation is skipped", mc.attrs.get("source"))
    return benchmark_set(mc, mc_answers, descriptive, settings.fsku_benchmark)
