"""The debiased multiple-choice target: the teacher's option distribution averaged over the cyclic
rotations of the options, for the student to learn in one pass.

The teacher answers multiple choice better when its option probabilities are averaged over every
cyclic rotation (answering/debias.py), at n forward passes per question of n options. Here that
averaged distribution is computed once per training question and kept, so a ``choice_target``
round can distil it into the student at the answer position (the first token the assistant would
write) of a single pass. Each question's options are shuffled first (seeded by its id), so the
targets do not teach the benchmark's own option order; the served closed-book prompt template
frames it.
"""

from __future__ import annotations

import logging
import math
from string import Template
from typing import Any

import pandas as pd

from fsku_kedro.answering.choice_scoring import NextTokenReader, option_token_sequences, score_choices
from fsku_kedro.answering.debias import cyclic_scores
from fsku_kedro.contracts import CompetitionQuestion
from fsku_kedro.generation.store import ResponseStore, fingerprint
from fsku_kedro.hashing import json_hash
from fsku_kedro.models.bundle import ModelBundle

logger = logging.getLogger(__name__)

# ``answer``: the number of the option known to be right where the question was made with one (questions
# made from the knowledge base), else 0.
TARGET_COLUMNS = ["question_id", "source", "split", "question", "prompt", "option_count", "target", "one_pass",
                  "answer"]


def question_of(prompt: str, template: str) -> str | None:
    """The question a prompt-set prompt carries: the text after the part of ``template`` that
    precedes ``$question``; None when the prompt is not in that template."""
    head = template.split("$question", 1)[0]
    return prompt[len(head):].strip() if head and prompt.startswith(head) else None


def served_chat(question: CompetitionQuestion, template: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": Template(template).substitute(question=question.Question)}]


def _softmax(log_probs: dict[int, float]) -> list[float]:
    top = max(log_probs.values())
    weights = [math.exp(log_probs[n] - top) for n in sorted(log_probs)]
    return [w / sum(weights) for w in weights]


def teacher_targets(
    questions: list[CompetitionQuestion],
    teacher: ModelBundle,
    template: str,
    store: ResponseStore,
    settings: dict[str, Any],
    batch_size: int,
    engine: NextTokenReader | None = None,
    questions_per_save: int = 8,
) -> dict[str, dict[str, list[float]]]:
    """Per question id, the teacher's cyclic-averaged option distribution (``target``) and its one-pass
    distribution (``one_pass``), both in the question's own option order, scored by the teacher's model
    (or by ``engine``, vLLM, where given). Finished questions are appended to ``store`` as they complete,
    so a restarted run computes only the rest."""
    run = fingerprint(teacher.name, {"template": template, **settings})
    by_id = {q.ID: q for q in questions}

    def compute(ids: list[str]) -> list[dict[str, Any]]:
        batch = [by_id[i] for i in ids]
        shown = {q.ID: q.choices for q in batch}
        one_pass: dict[str, dict[int, float]] = {}

        def score(rotated: list[CompetitionQuestion]) -> list[dict[int, float]]:
            choices = score_choices(teacher, [served_chat(q, template) for q in rotated],
                                    [len(q.choices or {}) for q in rotated], batch_size=batch_size, engine=engine)
            for question, choice in zip(rotated, choices):
                if question.choices == shown[question.ID]:  # the unrotated pass is the one-pass answer
                    one_pass[question.ID] = choice.probabilities
            return [choice.probabilities for choice in choices]

        averaged = cyclic_scores(batch, score)
        return [{"target": _softmax(avg), "one_pass": [one_pass[q.ID][n] for n in sorted(one_pass[q.ID])]}
                for q, avg in zip(batch, averaged)]

    # Ids of questions made from the corpus name their position, not their text: the text is checked.
    done = store.complete(run, [q.ID for q in questions], compute, questions_per_save,
                          f"choice targets ({teacher.name})", unit="question",
                          inputs={q.ID: json_hash(q.Question) for q in questions})
    return {q.ID: {"target": done[q.ID]["target"], "one_pass": done[q.ID]["one_pass"]} for q in questions}


def single_token_options(tokenizer: Any, count: int) -> list[int] | None:
    """The token of each option number 1..count, or None when some number takes several tokens."""
    sequences = option_token_sequences(tokenizer, count)
    return [sequence[0] for sequence in sequences] if all(len(s) == 1 for s in sequences) else None


def target_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=TARGET_COLUMNS)
