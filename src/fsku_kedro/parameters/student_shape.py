"""student_shape: derive another student from the teacher, from the command line only.

``kedro run --env qwen_coder_cpu --params student_shape.layers=24`` makes the student the teacher cut
to 24 decoder layers instead of the environment's depth; ``student_shape.mlp_channels=6720`` also
keeps only that many MLP channels in each layer (the most active on the calibration text, as Minitron
prunes width). The catalog entry ``student_model`` reads these values (``${runtime_params:...}``), so
kedro-viz and the run describe the same student. In a file, set ``keep_layers`` and
``keep_mlp_channels`` on the catalog entry instead.
"""

from __future__ import annotations

from pydantic import PositiveInt

from fsku_kedro.parameters.base import Settings


class StudentShapeSettings(Settings):
    layers: PositiveInt | None = None  # None: the catalog entry's own depth
    mlp_channels: PositiveInt | None = None  # None: every MLP channel
