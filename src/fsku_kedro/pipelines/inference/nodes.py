"""Nodes of the inference pipeline: retrieval (cached), the served model, answers, the submission
and the FSKU evaluation. Questions arrive parsed and checked (``QuestionsDataset``)."""

from __future__ import annotations

import logging
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from fsku_kedro.answering.fallback_policy import fallback_counts
from fsku_kedro.answering.submission import answer_test_questions, write_submission
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
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.knowledge.passages import retrieve_passages
from fsku_kedro.models.loading import load_inference_model
from fsku_kedro.parameters.inference import InferenceSettings

# The nodes that are core functions, used as they are (the package replays them offline).
__all__ = ["answer_test_questions", "load_inference_model", "retrieve_passages", "write_submission"]

logger = logging.getLogger(__name__)


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
