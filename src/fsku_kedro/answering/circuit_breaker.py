"""Time limits for answering: a per-question limit and a global budget for the whole set."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


def scaled_budget(questions: int, budget_minutes: float, per_questions: int) -> float:
    """Seconds allowed for ``questions`` at the rate of ``budget_minutes`` per ``per_questions``
    (``inference.time_limit`` holds the competition's figures)."""
    return budget_minutes * 60.0 * questions / per_questions


@dataclass
class CircuitBreaker:
    """Counts the seconds spent against ``budget_s`` (including ``spent_s`` carried over from an
    interrupted run). A batch whose time per question exceeds ``per_question_s`` is over its limit;
    once the budget is spent, the breaker is open and the remaining questions get fallbacks."""

    per_question_s: float
    budget_s: float
    spent_s: float = 0.0
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False)

    def remaining(self) -> float:
        return self.budget_s - self.spent_s

    def is_open(self) -> bool:
        return self.remaining() <= 0.0

    def deadline(self, batch_size: int) -> float:
        """Seconds a batch of ``batch_size`` questions may run: its share of limits, within the budget."""
        return max(0.0, min(self.per_question_s * batch_size, self.remaining()))

    def charge(self, seconds: float) -> None:
        self.spent_s += seconds

    def over_limit(self, seconds: float, batch_size: int) -> bool:
        return seconds / max(batch_size, 1) > self.per_question_s
