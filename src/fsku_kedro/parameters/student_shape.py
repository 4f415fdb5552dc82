"""student_shape: how the student is derived from its source model (the node ``derive_student`` of
response_generation). ``--params student_shape.layers=24`` cuts it to 24 decoder layers for one run;
``student_shape.mlp_channels=6400`` also keeps only that many MLP channels in each layer."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from fsku_kedro.parameters.base import Settings


class StudentShapeSettings(Settings):
    layers: PositiveInt | None = None  # None: every layer of the source
    # evenly_spaced keeps the first and the last; block_influence the layers that change their input
    # most on the calibration passages (ShortGPT).
    layer_selection: Literal["evenly_spaced", "block_influence"] = "evenly_spaced"
    mlp_channels: PositiveInt | None = None  # None: every MLP channel; else the most active (Minitron)
    calibration_passages: PositiveInt = 16  # chunks of the knowledge base, evenly spaced
