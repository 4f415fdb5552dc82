"""The one list of distillation loss names, free of dependencies so that the losses can be imported
without the settings (pydantic): the settings, the trainer's configuration and the losses all read it."""

from __future__ import annotations

# Each loss: the divergence on the chosen (teacher-response) tokens and on the rejected
# (student-response) tokens, or None (distillation/losses.py defines the divergences).
LOSS_DIVERGENCES: dict[str, tuple[str, str | None]] = {
    "distillm_v2": ("skl", "srkl"),
    "distillm_v1": ("srkl", "srkl"),
    "kd": ("fkl", "fkl"),
    "rkl": ("rkl", "rkl"),
    "gkd": ("jsd", "jsd"),
    "seqkd": ("nll", None),
}
