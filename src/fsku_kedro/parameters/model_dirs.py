"""model_dirs: run a stage on another model directory, from the command line only.

``kedro run --pipelines inference --params model_dirs.inference=/path/to/model`` answers with that
directory instead of the latest compressed student; ``model_dirs.compression`` quantizes another
directory instead of the distilled student. The catalog entries ``compressed_student@path`` and
``distilled_student@path`` read these values (``${runtime_params:...}``), so kedro-viz shows what
each stage reads. In a file, point those catalog entries at the directory instead.
"""

from __future__ import annotations

from fsku_kedro.parameters.base import Settings


class ModelDirSettings(Settings):
    inference: str | None = None
    compression: str | None = None
