"""The FSKU score of a model without retrieval (closed book) through the served answering path, as
distillation validation and the compression report measure it after each round or quantization:
the inference settings' prompts, choice scoring with their debiasing, generation and fallbacks
(answering/batch_runner.py), the same code that answers the test set and that the package replays."""

from __future__ import annotations

import math
from typing import Any

from fsku_kedro.answering.batch_runner import answer_questions
from fsku_kedro.answering.prompts import PreparedQuestion
from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer
from fsku_kedro.evaluation.answer_report import answer_report, report_metrics, score_items
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.inference import InferenceSettings


def fsku_validation(
    model: ModelBundle,
    questions: list[CompetitionQuestion],
    labels: dict[str, LabelledAnswer],
    templates: dict[str, str],
    embedder: Embedder,
    inference: InferenceSettings,
    store: ResponseStore | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The FSKU score parts of ``model`` on labelled questions, answered closed book as inference
    serves them, and one row per answer (with its confidence, method and fallback)."""
    served = inference.model_copy(update={"use_context": False})
    rows = answer_questions([PreparedQuestion(q) for q in questions], model, templates, served, store,
                            show_progress=False)
    items = score_items(rows, questions, [labels[q.ID] for q in questions if q.ID in labels], embedder)
    # the evaluation report's own parts (fsku_score, mc_accuracy, fallbacks, ...) of the overall row
    scores = {name: metric["value"] for name, metric in report_metrics(answer_report(items)).items()}
    by_id = {row.ID: row for row in rows}
    answers = []
    for item in items.to_dict("records"):
        row = by_id[item["ID"]]
        scored = {key: item[key] for key in ("correct", "cosine_similarity", "keyword_recall")
                  if not (isinstance(item[key], float) and math.isnan(item[key]))}
        answers.append({"ID": item["ID"], "answer": row.answer, "expected": item["expected"], **scored,
                        "confidence": row.confidence, "method": row.method, "used_fallback": row.used_fallback,
                        "fallback_reason": row.fallback_reason})
    return scores, answers
