"""Nodes of the inference pipeline: questions, retrieval (cached), the served model, answers,
the submission and the FSKU evaluation."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from fsku_kedro.answering.orchestrator import AnswerSettings, Passage, PreparedQuestion, answer_questions
from fsku_kedro.contracts import CompetitionQuestion
from fsku_kedro.datasets.models import load_any_model
from fsku_kedro.evaluation.answer_report import (
    REPORT_COLUMNS,
    answer_distribution_figure,
    answer_report,
    report_figure,
    report_metrics,
    score_items,
)
from fsku_kedro.evaluation.fsku_benchmark import benchmark_tables
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.knowledge.content_cache import compute_with_cache
from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.knowledge.retrieval import HybridRetriever, Reranker
from fsku_kedro.knowledge.sparse import SparseIndex
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.prompt_templates import read_templates
from fsku_kedro.questions import parse_test_table, retrieval_query

logger = logging.getLogger(__name__)

SUBMISSION_COLUMNS = ["ID", "Answer"]


def parse_test_questions(test_questions: pd.DataFrame) -> list[CompetitionQuestion]:
    """Check and parse a test table (``ID``, ``Question``); the error lists every bad row."""
    questions = parse_test_table(test_questions, test_questions.attrs.get("source", "test questions"))
    kinds = pd.Series([q.question_type for q in questions]).value_counts().to_dict() if questions else {}
    logger.info("%d test questions: %s", len(questions), kinds)
    return questions


def retrieve_passages(
    questions: list[CompetitionQuestion],
    chunks: pd.DataFrame,
    bm25_index: SparseIndex,
    faiss_index: DenseIndex,
    embedder: Embedder,
    reranker: Reranker | None,
    retrieval_cache: dict[str, Any],
    retrieval_parameters: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Top-k passages per question ID through the knowledge-base retriever. Results are cached by a
    hash of the query under a fingerprint of the chunks and retrieval settings (cache-aside), so a
    re-run or a resumed run retrieves only new questions."""
    settings = parameters["retrieval"]
    if not questions:
        return {}, retrieval_cache
    retriever = HybridRetriever.from_parameters(chunks, bm25_index, faiss_index, embedder, reranker,
                                                retrieval_parameters)
    namespace = hashlib.sha256(json.dumps([
        sorted(chunks["content_hash"].astype(str)), retrieval_parameters, settings, embedder.name,
        type(reranker).__name__,
    ], sort_keys=True, default=str).encode()).hexdigest()[:16]

    def search(queries: list[str]) -> list[list[list[Any]]]:
        hits = retriever.retrieve(queries, k=settings["k"], mode=settings["mode"])
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


def load_inference_model(served_model_path: str | None, parameters: dict[str, Any]) -> ModelBundle:
    """The model that answers: ``inference.model_dir`` when set, else the latest compressed student."""
    location = parameters.get("model_dir") or served_model_path
    if not location:
        raise FileNotFoundError(
            "no model to answer with: run `kedro run --pipeline compression` first, or set inference.model_dir "
            "to a model directory (for example `--params inference.model_dir=data/06_models/distilled_student/...`)"
        )
    bundle = load_any_model(Path(location), parameters.get("dtype", "float32"),
                            parameters.get("trust_remote_code", False))
    logger.info("Answering with %s from %s", bundle.name, location)
    return bundle


def answer_test_questions(
    questions: list[CompetitionQuestion],
    passages: dict[str, list[dict[str, Any]]],
    inference_model: ModelBundle,
    prompt_templates: dict[str, Callable[[], str]],
    answer_progress: ResponseStore,
    parameters: dict[str, Any],
) -> pd.DataFrame:
    """One answer row per question (SubmissionRow fields plus how it was answered), resumable."""
    items = [
        PreparedQuestion(q, tuple(Passage(p["chunk_id"], p["score"], p["text"]) for p in passages.get(q.ID, [])))
        for q in questions
    ]
    rows = answer_questions(items, inference_model, read_templates(prompt_templates),
                            AnswerSettings.from_parameters(parameters), answer_progress)
    return pd.DataFrame(rows, columns=["ID", "answer", "confidence", "inference_time", "used_fallback",
                                       "question_type", "method", "fallback_reason"])


def write_submission(questions: list[CompetitionQuestion], answers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``ID,Answer`` in test.csv order (multiple-choice answers are bare digits), and the detailed rows."""
    by_id = answers.set_index("ID")
    missing = [q.ID for q in questions if q.ID not in by_id.index]
    if missing:
        raise ValueError(f"no answer for {len(missing)} question(s): {missing[:10]}")
    submission = pd.DataFrame({"ID": [q.ID for q in questions],
                               "Answer": [str(by_id.at[q.ID, "answer"]) for q in questions]})
    for q, answer in zip(questions, submission["Answer"]):
        if q.question_type == "multiple_choice" and answer not in (q.choices or {}):
            raise ValueError(f"{q.ID}: answer {answer!r} is not one of the options {list(q.choices or {})}")
    return submission, answers.set_index("ID").loc[[q.ID for q in questions]].reset_index()


def evaluate_answers(
    answers: pd.DataFrame,
    questions: list[CompetitionQuestion],
    labels: pd.DataFrame,
    score_embedder: Embedder,
) -> tuple[pd.DataFrame, dict[str, Any], plt.Figure]:
    """FSKU score overall and per domain for the labelled questions (none labelled: an empty report)."""
    if labels.empty:
        logger.info("No labels for these questions; the evaluation report is empty")
    items = score_items(answers, questions, labels, score_embedder)
    report = answer_report(items) if len(items) else pd.DataFrame(columns=REPORT_COLUMNS)
    if len(items):
        overall = report.iloc[0]
        logger.info("FSKU score %.4f over %d labelled questions (MC accuracy %s, descriptive score %s)",
                    overall["fsku_score"], len(items), overall["mc_accuracy"], overall["descriptive_score"])
    return report, report_metrics(report), report_figure(report, f"FSKU score by domain ({len(items)} labelled)")


def plot_answer_distribution(answers: pd.DataFrame, questions: list[CompetitionQuestion],
                             labels: pd.DataFrame) -> plt.Figure:
    """Which option numbers the model chose, per domain, beside the answer key."""
    return answer_distribution_figure(answers, questions, labels)


def prepare_fsku_benchmark(
    mc: pd.DataFrame, mc_answers: pd.DataFrame, descriptive: pd.DataFrame, parameters: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The benchmark as a test table and its labels (empty when its files are absent)."""
    if mc.attrs.get("missing") and descriptive.attrs.get("missing"):
        logger.warning("FSKU benchmark files not found (%s); its evaluation is skipped", mc.attrs.get("source"))
    questions, labels = benchmark_tables(mc, mc_answers, descriptive, parameters)
    questions.attrs["source"] = "FSKU benchmark"
    return questions, labels
