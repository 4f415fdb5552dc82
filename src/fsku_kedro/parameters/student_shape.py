"""student_shape: how the student is derived from its source model (the node ``derive_student`` of
response_generation). ``--params student_shape.layers=24`` cuts it to 24 decoder layers for one run;
``student_shape.mlp_channels=6400`` also keeps only that many MLP channels in each layer."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat, PositiveInt, model_validator

from fsku_kedro.parameters.base import Settings


class StudentShapeSettings(Settings):
    layers: PositiveInt | None = None  # None: every layer of the source
    # evenly_spaced keeps the first and the last; block_influence the layers that change their input
    # most on the calibration passages (ShortGPT).
    layer_selection: Literal["evenly_spaced", "block_influence"] = "evenly_spaced"
    mlp_channels: PositiveInt | None = None  # None: every MLP channel; else the most active (Minitron)
    # With mlp_channels: refit each kept down_proj by ridge least squares on the calibration activations, so
    # the kept channels make up for the dropped ones; the ridge is this share of the mean activation energy.
    mlp_compensation_damping: PositiveFloat | None = None  # None: the kept columns as they were
    calibration_passages: PositiveInt = 16  # chunks of the knowledge base, evenly spaced

    @model_validator(mode="after")
    def _compensation_needs_width(self) -> StudentShapeSettings:
        if self.mlp_compensation_damping is not None and self.mlp_channels is None:
            raise ValueError("mlp_compensation_damping refits width-pruned MLPs; set mlp_channels too")
        return self
