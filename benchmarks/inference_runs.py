"""Running the inference pipeline's sample-set stages in Kedro sessions, for the inference benchmarks."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_NODES = [f"inference.{name}" for name in ("load_inference_model", "retrieve_passages", "answer_test_questions",
                                                  "write_submission", "evaluate_answers")]
PROGRESS = ROOT / "data/07_model_output/answers.progress.jsonl"
RETRIEVAL_CACHE = ROOT / "data/04_feature/retrieval_cache.parquet"
SUBMISSION = ROOT / "data/07_model_output/submission.csv"


def run_sample_stages() -> float:
    """Seconds for one `kedro run` of the sample-set stages of the inference pipeline."""
    bootstrap_project(ROOT)
    start = time.perf_counter()
    with KedroSession.create(project_path=ROOT) as session:
        session.run(pipeline_name="inference", node_names=SAMPLE_NODES)
    return time.perf_counter() - start


@contextlib.contextmanager
def set_aside(*paths: Path) -> Iterator[None]:
    """Move ``paths`` away for the duration (so runs start without them) and put them back after."""
    kept = {}
    for path in paths:
        if path.exists():
            kept[path] = path.with_name(path.name + ".set-aside")
            shutil.move(path, kept[path])
    try:
        yield
    finally:
        for original, moved in kept.items():
            if original.exists():
                original.unlink()
            shutil.move(moved, original)


def remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
