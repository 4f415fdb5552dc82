"""The fallback policy: what a question gets when the model's answer cannot be used, and the
limit on how often that may happen.

Multiple choice falls back to choice scoring without context while the model may still be used
(its failure was about the context, the time limit or the answer's form), then to the option that
overlaps the retrieved text most; descriptive falls back to sentences of the top passage
(fallback.py). Every fallback row carries its reason. Model and runtime failures (out of memory,
timeouts, a broken model file) fall back; a programming error stops the run.
"""

from __future__ import annotations

import logging
import re

from fsku_kedro.answering.circuit_breaker import CircuitBreaker
from fsku_kedro.answering.fallback import extractive_answer, overlap_choice
from fsku_kedro.answering.mc_strategy import ChoiceStrategy
from fsku_kedro.answering.prompts import PreparedQuestion
from fsku_kedro.contracts import SubmissionRow
from fsku_kedro.errors import UserInputError
from fsku_kedro.parameters.inference import FallbackSettings

logger = logging.getLogger(__name__)

# Errors of the project's own code: they stop the run. Model and runtime failures (RuntimeError,
# OSError, ...) fall back with their reason.
PROGRAMMING_ERRORS = (TypeError, AttributeError, KeyError, NameError, AssertionError, NotImplementedError,
                      ImportError)
# Reasons after which the model is not asked again for the same batch.
MODEL_UNUSABLE = ("model_error", "no_model", "budget_spent")


def clean_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def answer_row(item: PreparedQuestion, answer: str, confidence: float | None, method: str,
               fallback_reason: str = "", probabilities: dict[int, float] | None = None) -> SubmissionRow:
    """A submission row for ``item``; a confidence is kept only where one was measured (clipped to [0, 1]),
    and the option probabilities where the options were scored."""
    measured = None if confidence is None else min(max(confidence, 0.0), 1.0)
    options = [round(probabilities[n], 6) for n in sorted(probabilities)] if probabilities else None
    return SubmissionRow(ID=item.question.ID, answer=answer, confidence=measured,
                         inference_time=0.0, used_fallback=bool(fallback_reason), method=method,
                         question_type=item.question.question_type, fallback_reason=fallback_reason,
                         option_probabilities=options)


class FallbackPolicy:
    def __init__(self, settings: FallbackSettings, strategy: ChoiceStrategy | None, breaker: CircuitBreaker):
        self.settings, self.strategy, self.breaker = settings, strategy, breaker

    def answers(self, group: list[PreparedQuestion], reasons: list[str], use_model: bool) -> list[SubmissionRow]:
        """One fallback row per item of ``group``, each with its reason from ``reasons``."""
        results: list[SubmissionRow | None] = [None] * len(group)
        mc = [i for i, item in enumerate(group) if item.question.question_type == "multiple_choice"]
        if mc and use_model and self.strategy is not None and not self.breaker.is_open():
            start = self.breaker.clock()
            try:
                choices = self.strategy.choose([group[i] for i in mc], with_context=False, cyclic=False)
                for i, chosen in zip(mc, choices):
                    results[i] = answer_row(group[i], str(chosen.number), chosen.confidence, "fallback_closed_book",
                                            reasons[i], chosen.probabilities)
            except PROGRAMMING_ERRORS:
                raise
            except Exception as error:  # noqa: BLE001 - any model failure falls through to overlap
                logger.warning("closed-book fallback failed (%s: %s); using retrieval overlap", type(error).__name__, error)
            finally:
                self.breaker.charge(self.breaker.clock() - start)
        for i, item in enumerate(group):
            if results[i] is not None:
                continue
            context = " ".join(p.text for p in item.passages)
            if item.question.question_type == "multiple_choice":
                number, confidence = overlap_choice(item.question.choices, context)
                results[i] = answer_row(item, str(number), confidence, "fallback_overlap", reasons[i])
            else:
                top = item.passages[0].text if item.passages else ""
                text = extractive_answer(item.question.parsed_question, top, self.settings.sentences,
                                         self.settings.max_chars)
                results[i] = answer_row(item, clean_text(text) or item.question.parsed_question, None,
                                        "fallback_extractive", reasons[i])
        return results  # type: ignore[return-value]


def fallback_counts(rows: list[SubmissionRow]) -> dict[str, int]:
    """How many answers each fallback reason gave."""
    counts: dict[str, int] = {}
    for row in rows:
        if row.used_fallback:
            counts[row.fallback_reason or "unknown"] = counts.get(row.fallback_reason or "unknown", 0) + 1
    return dict(sorted(counts.items()))


def check_fallback_share(rows: list[SubmissionRow], limit: float | None) -> None:
    """Fail when a larger share than ``limit`` (``inference.max_fallback_share``) of the answers came
    from a fallback; None: no limit."""
    counts = fallback_counts(rows)
    share = sum(counts.values()) / len(rows) if rows else 0.0
    if limit is not None and share > limit:
        reasons = ", ".join(f"{reason} {n}" for reason, n in counts.items())
        raise UserInputError(
            f"{sum(counts.values())} of {len(rows)} questions ({share:.1%}) were answered by a fallback ({reasons}), "
            f"more than inference.max_fallback_share ({limit:.1%}) allows. The answers are kept in the progress "
            "file; see the log for each batch's reason, then fix the cause or raise the limit "
            "(--params inference.max_fallback_share=...)")
