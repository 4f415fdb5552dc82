"""The inference pipeline on the sample set: seconds per question cold, with the retrieval cache
warm, and with every answer already in the progress file.

    python benchmarks/inference_pipeline.py

Each run is `kedro run --pipelines inference` limited to the sample-set stages (model load,
parsing, retrieval, answering, submission, evaluation), in one Kedro session. The project's own
progress file and retrieval cache are set aside during the benchmark and restored afterwards.

Target: a re-run that finds its work in the caches is at least 5x faster than a cold run.
"""

from __future__ import annotations

import logging
import sys

import pandas as pd
from inference_runs import PROGRESS, RETRIEVAL_CACHE, ROOT, SUBMISSION, remove, run_sample_stages, set_aside
from report import print_table, verdict


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    questions = len(pd.read_csv(ROOT / "data/01_raw/sample/test.csv", encoding="utf-8-sig"))
    with set_aside(PROGRESS, RETRIEVAL_CACHE, SUBMISSION):
        cold = run_sample_stages()
        first = SUBMISSION.read_bytes()
        remove(PROGRESS)
        retrieval_cached = run_sample_stages()
        fully_cached = run_sample_stages()
        same = SUBMISSION.read_bytes() == first
    rows = [
        ("cold (no cache, no progress)", f"{cold:.1f}", f"{cold / questions:.2f}", "1.0x"),
        ("retrieval cache warm", f"{retrieval_cached:.1f}", f"{retrieval_cached / questions:.2f}",
         f"{cold / retrieval_cached:.1f}x"),
        ("retrieval cache + progress file", f"{fully_cached:.1f}", f"{fully_cached / questions:.2f}",
         f"{cold / fully_cached:.1f}x"),
    ]
    print(f"{questions} sample questions, one Kedro session per run (model load included)\n")
    print_table(["run", "seconds", "s/question", "speed-up"], rows)
    print(f"\nsubmission identical across runs: {same}")
    return verdict(same and cold / fully_cached >= 5.0, "a fully cached re-run is >= 5x faster, same submission")


if __name__ == "__main__":
    sys.exit(main())
