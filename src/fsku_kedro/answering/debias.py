"""Removing a model's preference for option positions from multiple-choice scores.

A model may favour an option number whatever the options say (the teacher of the real-teacher
environment picks "4" for half of the FSKU questions). Two corrections over choice scoring:

- ``cyclic``: score the question under every cyclic rotation of its options and average each
  option's log-probability over the rotations (n forward passes per question of n options).
- ``pride`` (Zheng et al., ICLR 2024, "Large Language Models Are Not Robust Multiple Choice
  Selectors"): estimate the model's prior over option positions once, from a few questions scored
  under every rotation (averaging log-probabilities over rotations cancels the content and leaves
  the positions' share), then divide it out of every other question's probabilities: one forward
  pass per question after the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from fsku_kedro.contracts import CompetitionQuestion

# Scores a list of questions: per question, the probability of each option position 1..n.
Scorer = Callable[[list[CompetitionQuestion]], list[dict[int, float]]]


def rotated(question: CompetitionQuestion, shift: int) -> tuple[CompetitionQuestion, list[int]]:
    """The question with its options rotated by ``shift``, and the original option shown at each
    position (``order[j]`` is the original number at position j + 1)."""
    options = list((question.choices or {}).values())
    count = len(options)
    order = [(j + shift) % count + 1 for j in range(count)]
    choices = {str(j + 1): options[number - 1] for j, number in enumerate(order)}
    text = "\n".join([question.parsed_question, *(f"{n} {t}" for n, t in choices.items())])
    return question.model_copy(update={"Question": text, "choices": choices}), order


def _log(probability: float) -> float:
    return math.log(max(probability, 1e-12))


def cyclic_scores(questions: Sequence[CompetitionQuestion], score: Scorer) -> list[dict[int, float]]:
    """Each original option's log-probability averaged over all cyclic rotations of the options."""
    jobs = [(i, *rotated(q, shift)) for i, q in enumerate(questions) for shift in range(len(q.choices or {}))]
    scored = score([question for _, question, _ in jobs])
    totals: list[dict[int, float]] = [dict.fromkeys(range(1, len(q.choices or {}) + 1), 0.0) for q in questions]
    for (i, _, order), probabilities in zip(jobs, scored):
        for position, original in enumerate(order, start=1):
            totals[i][original] += _log(probabilities[position]) / len(order)
    return totals


def estimate_prior(questions: Sequence[CompetitionQuestion], score: Scorer) -> dict[int, list[float]]:
    """The model's prior over option positions per number of options, from ``questions`` scored under
    every rotation: per question, softmax over positions of the log-probability averaged over the
    rotations; then the mean over the questions."""
    jobs = [(i, shift, rotated(q, shift)[0]) for i, q in enumerate(questions) for shift in range(len(q.choices or {}))]
    scored = score([question for *_, question in jobs])
    per_question: dict[int, dict[int, float]] = {}
    for (i, _, question), probabilities in zip(jobs, scored):
        count = len(question.choices or {})
        sums = per_question.setdefault(i, dict.fromkeys(range(1, count + 1), 0.0))
        for position in sums:
            sums[position] += _log(probabilities[position]) / count
    priors: dict[int, list[list[float]]] = {}
    for sums in per_question.values():
        top = max(sums.values())
        weights = [math.exp(sums[p] - top) for p in sorted(sums)]
        priors.setdefault(len(weights), []).append([w / sum(weights) for w in weights])
    return {count: [sum(column) / len(rows) for column in zip(*rows)] for count, rows in priors.items()}


def debiased(probabilities: dict[int, float], prior: dict[int, list[float]]) -> dict[int, float]:
    """Observed option probabilities with the position prior divided out, renormalised; unchanged
    when no prior was estimated for this number of options."""
    positions = prior.get(len(probabilities))
    if positions is None:
        return dict(probabilities)
    scores = {p: _log(probabilities[p]) - _log(positions[p - 1]) for p in probabilities}
    top = max(scores.values())
    weights = {p: math.exp(s - top) for p, s in scores.items()}
    total = sum(weights.values())
    return {p: w / total for p, w in weights.items()}
