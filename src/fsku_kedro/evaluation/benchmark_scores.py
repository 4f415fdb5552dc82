"""A student judged on held-out FSKU benchmark questions by the served answering path: the inference
settings' prompts and choice scoring, closed book, one pass (no debiasing), with its fallbacks."""

from __future__ import annotations

import math
from typing import Any

from fsku_kedro.answering.batch_runner import answer_questions
from fsku_kedro.answering.prompts import PreparedQuestion
from fsku_kedro.contracts import CompetitionQuestion, LabelledAnswer
from fsku_kedro.evaluation.answer_report import answer_report, score_items
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.models.bundle import ModelBundle, weights_key
from fsku_kedro.parameters.inference import DebiasSettings, InferenceSettings
from fsku_kedro.questions import asks_for_incorrect


def served_settings(inference: InferenceSettings, cyclic: bool = False,
                    use_context: bool = False) -> InferenceSettings:
    """The inference settings as held-out questions are judged: closed book, one pass, no debiasing
    (``cyclic``: averaged over the options' cyclic rotations instead, one pass per option;
    ``use_context``: with the retrieved passages)."""
    debias = DebiasSettings(method="cyclic" if cyclic else "none")
    return inference.model_copy(update={"use_context": use_context, "debias": debias})


def benchmark_scores(
    student: ModelBundle,
    sets: dict[str, tuple[list[CompetitionQuestion], list[LabelledAnswer]]],
    templates: dict[str, str],
    embedder: Embedder,
    inference: InferenceSettings,
    store: ResponseStore,
    cyclic: bool = False,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Per option order in ``sets``: MC accuracy (``benchmark_<order>_mc_accuracy``; on the questions
    whose stem asks which option is not correct, ``benchmark_<order>_negative_mc_accuracy``), the
    descriptive score where the set has descriptive questions, and the fallback count; and the
    answers. Answers resume from ``store``, keyed by the student's weights, so a killed validation
    redoes only its unfinished batches and another student never reuses them. ``cyclic``: the
    answers averaged over cyclic rotations (a figure to compare with, not the served one pass)."""
    if not any(questions for questions, _ in sets.values()):
        return {}, []
    served = served_settings(inference, cyclic)
    # Known by its weights, not its folder: a retrained student under the same name is another model,
    # the same weights saved again under a new version are not. Cyclic answers are kept apart by the
    # settings, which the store's key holds too.
    identity = f"{student.name}#{weights_key(student.name, student.model)}"
    scores: dict[str, float] = {}
    answers: list[dict[str, Any]] = []
    for order, (questions, labels) in sets.items():
        rows = answer_questions([PreparedQuestion(q) for q in questions], student, templates, served, store,
                                identity=identity)
        items = score_items(rows, questions, labels, embedder)
        overall = answer_report(items).iloc[0]
        scores[f"benchmark_{order}_mc_accuracy"] = float(overall["mc_accuracy"])
        negative = items["ID"].isin({q.ID for q in questions if asks_for_incorrect(q)})
        if negative.any():
            scores[f"benchmark_{order}_negative_mc_accuracy"] = float(items.loc[negative, "correct"].mean())
        if not math.isnan(float(overall["descriptive_score"])):
            scores[f"benchmark_{order}_descriptive_score"] = float(overall["descriptive_score"])
        scores[f"benchmark_{order}_fallbacks"] = float(sum(row.used_fallback for row in rows))
        answers += [{"order": order, **row.model_dump()} for row in rows]
    return scores, answers
