"""package: the competition archive and the limits it is checked against."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat, PositiveInt

from fsku_kedro.parameters.base import Settings


class CompetitionLimits(Settings):
    """The competition's limits: one GPU of this much memory, this many minutes for this many questions."""

    gpu_memory_gb: PositiveFloat = 24.0  # one RTX 4090
    budget_minutes: PositiveFloat = 270.0
    questions: PositiveInt = 515
    tokens_per_sequence: PositiveInt = 2048  # prompt + answer tokens per sequence, for the KV-cache estimate


class PackageSettings(Settings):
    limits: CompetitionLimits = CompetitionLimits()
    # What a missed limit does: warn (the CPU default, whose model and speed are not the competition's)
    # or fail (an environment that prepares a real submission).
    on_limit_miss: Literal["warn", "fail"] = "warn"
