"""Peak resident memory of loading one saved model, measured in a fresh process.

    python -m fsku_kedro.compression.probe <model directory>

Prints one JSON line: ``{"peak_load_mib": ...}`` (growth of the high-water RSS during the load).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path


def _peak_rss_kib() -> int:
    """This process's own high-water RSS. Linux's VmHWM starts afresh at exec, whereas
    ``ru_maxrss`` carries over the (larger) peak of the process that spawned this one."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    import torch  # noqa: F401  (imported before the baseline: its own footprint is not the model's)
    import transformers  # noqa: F401

    from fsku_kedro.models.loading import load_any_model

    directory = Path(sys.argv[1])
    before = _peak_rss_kib()
    load_any_model(directory, "float32", trust_remote_code=False)
    peak = (_peak_rss_kib() - before) / 1024
    sys.stdout.write(json.dumps({"peak_load_mib": peak}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
