"""The multiple-choice strategy: choice scoring with the option-position bias removed.

Each option number's probability is read at the answer position in one forward pass
(choice_scoring.py); ``inference.debias`` then removes the model's preference for positions, by
the PriDe prior estimated once per run or by averaging over cyclic rotations (debias.py). The
confidence of an answer is the probability its option ends with.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from fsku_kedro.answering.choice_scoring import NextTokenReader, score_choices
from fsku_kedro.answering.debias import Scorer, cyclic_scores, debiased, estimate_prior
from fsku_kedro.answering.prompts import PreparedQuestion, build_chat
from fsku_kedro.contracts import CompetitionQuestion
from fsku_kedro.generation.backends import vllm_backend
from fsku_kedro.generation.store import ResponseStore
from fsku_kedro.hashing import unit_hash
from fsku_kedro.models.bundle import ModelBundle
from fsku_kedro.parameters.inference import InferenceSettings


def option_scorer(bundle: ModelBundle, items: list[PreparedQuestion], templates: dict[str, str],
                  settings: InferenceSettings, with_context: bool | None = None, batch_size: int | None = None,
                  engine: NextTokenReader | None = None) -> Scorer:
    """Scores (possibly rotated) versions of ``items``' questions: each gets the passages of the item
    with its ID, and back the probability of each option position; ``engine`` (vLLM) reads the option
    tokens instead of the bundle's model where given."""
    passages = {item.question.ID: item.passages for item in items}

    def score(questions: list[CompetitionQuestion]) -> list[dict[int, float]]:
        chats = [build_chat(PreparedQuestion(q, passages[q.ID]), templates, settings, with_context) for q in questions]
        choices = score_choices(bundle, chats, [len(q.choices or {}) for q in questions],
                                batch_size=batch_size or max(len(items), 1), engine=engine)
        return [choice.probabilities for choice in choices]

    return score


def _softmax(scores: dict[int, float]) -> dict[int, float]:
    top = max(scores.values())
    weights = {n: math.exp(v - top) for n, v in scores.items()}
    total = sum(weights.values())
    return {n: w / total for n, w in weights.items()}


class Chosen(NamedTuple):
    """The chosen option, its probability and every option's, after debiasing."""

    number: int
    confidence: float
    probabilities: dict[int, float]


def _best(probabilities: dict[int, float]) -> Chosen:
    number = max(probabilities, key=lambda n: (probabilities[n], -n))
    return Chosen(number, probabilities[number], probabilities)


class ChoiceStrategy:
    """Answers multiple choice by choice scoring, debiased as ``settings.debias`` says."""

    def __init__(self, bundle: ModelBundle, templates: dict[str, str], settings: InferenceSettings,
                 prior: dict[int, list[float]] | None = None):
        self.bundle, self.templates, self.settings = bundle, templates, settings
        self.prior = prior or {}
        # The engine of inference.generation reads the options (vLLM where it is chosen and runs).
        self.engine = vllm_backend(bundle, settings.generation, show_progress=False)

    def choose(self, group: list[PreparedQuestion], with_context: bool | None = None,
               cyclic: bool | None = None) -> list[Chosen]:
        """The chosen option per question: averaged over rotations when ``cyclic`` (default: when
        ``debias.method`` is cyclic), else divided by the prior (empty unless PriDe estimated one)."""
        cyclic = self.settings.debias.method == "cyclic" if cyclic is None else cyclic
        score = option_scorer(self.bundle, group, self.templates, self.settings, with_context, engine=self.engine)
        questions = [item.question for item in group]
        if cyclic:
            return [_best(_softmax(scores)) for scores in cyclic_scores(questions, score)]
        return [_best(debiased(p, self.prior)) for p in score(questions)]


def estimate_position_prior(items: list[PreparedQuestion], bundle: ModelBundle, templates: dict[str, str],
                            settings: InferenceSettings) -> dict[int, list[float]]:
    """PriDe's prior over option positions, from a seeded choice of the set's multiple-choice questions."""
    mc = [item for item in items if item.question.question_type == "multiple_choice"]
    chosen = sorted(mc, key=lambda item: unit_hash(settings.debias.seed, "pride", item.question.ID))
    chosen = chosen[: settings.debias.estimation_questions]
    score = option_scorer(bundle, chosen, templates, settings, batch_size=settings.batch_size,
                          engine=vllm_backend(bundle, settings.generation, show_progress=False))
    return estimate_prior([item.question for item in chosen], score)


def prior_store(store: ResponseStore | None) -> ResponseStore | None:
    """Where a run's PriDe prior is kept between runs: its own file beside the answers' progress file
    (``<progress>.prior.jsonl``), one record per run fingerprint."""
    return None if store is None else ResponseStore(store.path.with_name(f"{store.path.stem}.prior.jsonl"))


def kept_prior(store: ResponseStore | None, run: str) -> dict[int, list[float]] | None:
    """The prior ``store`` holds for run fingerprint ``run``, if any."""
    record: dict[str, Any] | None = store.finished(run).get("prior") if store is not None else None
    return {int(count): shares for count, shares in record["prior"].items()} if record else None
