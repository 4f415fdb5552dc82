"""Names that the settings models and the core both use: the compute dtypes and the distillation
losses. Free of dependencies, so that the core (the losses, say) imports them without the settings
(pydantic), and the settings import them without the core."""

from __future__ import annotations

from typing import Literal, get_args

DtypeName = Literal["auto", "float32", "bfloat16", "float16"]  # auto: see models/compute_dtype.py
DTYPES = tuple(name for name in get_args(DtypeName) if name != "auto")  # the explicit dtypes

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
