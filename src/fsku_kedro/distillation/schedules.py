"""Schedules of DistiLLM-2's alpha and beta over training steps.

Adaptive alpha (the paper's sentence-level rule, which the released code computes but never
applies): for each pair, gap = exp(mean log p(y)) - exp(mean log q(y)) over the response tokens.
During the first ``anchor_steps`` optimizer steps alpha stays at its base value while the mean
gap is recorded; then ``anchor = (1 - base) · mean gap`` is frozen, and each pair gets
``alpha = clip(1 - anchor / (gap + 1e-5), min_alpha, base)``: a pair the student already
matches (small gap) gets a smaller skew, a hard pair keeps the base skew. Chosen (teacher
responses) and rejected (student responses) sides keep separate anchors.

Gradual beta moves beta linearly from ``beta_start`` to ``beta`` over ``warmup_steps``.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


def gradual_beta(step: int, beta: float, beta_start: float | None, warmup_steps: int) -> float:
    if beta_start is None or warmup_steps <= 0:
        return beta
    progress = min(max(step, 0) / warmup_steps, 1.0)
    return beta_start + (beta - beta_start) * progress


class AdaptiveAlpha(TrainerCallback, ExportableState):
    """Per-pair alpha for one side; its anchor survives a resume (saved with the checkpoint)."""

    def __init__(self, side: str, base: float, anchor_steps: int, min_alpha: float):
        self.side = side
        self.base = base
        self.anchor_steps = anchor_steps
        self.min_alpha = min_alpha
        self.gap_sum = 0.0
        self.gap_count = 0
        self.anchor: float | None = None
        self._step_gaps: list[float] = []

    def alphas(self, gaps: torch.Tensor) -> torch.Tensor:
        """Alpha for each pair given its probability gap; records the gaps while anchoring."""
        if self.anchor is None:
            self._step_gaps.extend(gaps.detach().float().cpu().tolist())
            return torch.full_like(gaps, self.base, dtype=torch.float32)
        values = 1 - self.anchor / (gaps.float() + 1e-5)
        return values.clamp(min=self.min_alpha, max=self.base)

    def on_step_end(self, args, state, control, **kwargs):
        if self.anchor is None and self._step_gaps:
            self.gap_sum += sum(self._step_gaps)
            self.gap_count += len(self._step_gaps)
            self._step_gaps.clear()
            if state.global_step >= self.anchor_steps:
                self.anchor = (1 - self.base) * self.gap_sum / max(self.gap_count, 1)

    def state(self) -> dict:
        return {
            "args": {
                "side": self.side,
                "base": self.base,
                "anchor_steps": self.anchor_steps,
                "min_alpha": self.min_alpha,
            },
            "attributes": {"gap_sum": self.gap_sum, "gap_count": self.gap_count, "anchor": self.anchor},
        }
