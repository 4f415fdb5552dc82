"""The runtime parameters a ``kedro`` command was given, as its CLI hook exported them before Kedro
built the pipelines (``fsku_kedro.cli_hooks``)."""

from __future__ import annotations

import json
import os
from typing import Any

RUN_PARAMS = "FSKU_RUN_PARAMS"  # the environment variable holding them, as JSON


def exported_run_params() -> dict[str, Any]:
    return json.loads(os.environ.get(RUN_PARAMS) or "{}")
