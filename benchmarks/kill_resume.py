"""Kill the inference run at 5 random points, restart it, and compare with an uninterrupted run.

    python benchmarks/kill_resume.py [--points 5] [--seed 0]

Each trial starts `kedro run --pipelines inference` (sample-set stages) from an empty progress
file, kills it with SIGKILL once a random number of answers is on disk (plus a random delay, so
some kills land inside a batch), restarts it to completion, and compares submission.csv with the
uninterrupted run's byte for byte. Records in the progress file beyond one per question would mean
finished work was done again. The project's own progress file is set aside and restored.

Target: every resumed submission equals the uninterrupted one, and nothing finished is redone.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
from inference_runs import PROGRESS, ROOT, SAMPLE_NODES, SUBMISSION, remove, set_aside
from report import print_table, verdict

COMMAND = [sys.executable, "-m", "kedro", "run", "--pipelines", "inference", "--nodes", ",".join(SAMPLE_NODES)]


def records() -> int:
    return PROGRESS.read_text(encoding="utf-8").count("\n") if PROGRESS.exists() else 0


def run_to_end() -> float:
    start = time.perf_counter()
    subprocess.run(COMMAND, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def run_and_kill(after_records: int, delay: float) -> int:
    """Start a run, SIGKILL it once ``after_records`` answers are saved and ``delay`` s have passed."""
    process = subprocess.Popen(COMMAND, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    while process.poll() is None and records() < after_records:
        time.sleep(0.05)
    time.sleep(delay)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return records()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    questions = len(pd.read_csv(ROOT / "data/01_raw/sample/test.csv", encoding="utf-8-sig"))
    rows, all_good = [], True
    with set_aside(PROGRESS, SUBMISSION):
        remove(PROGRESS)
        uninterrupted = run_to_end()
        reference = SUBMISSION.read_bytes()
        for trial in range(1, args.points + 1):
            remove(PROGRESS, SUBMISSION)
            target, delay = rng.randint(1, questions - 1), round(rng.uniform(0.0, 3.0), 2)
            saved = run_and_kill(target, delay)
            resumed = run_to_end()
            equal = SUBMISSION.read_bytes() == reference
            redone = records() - questions
            all_good &= equal and redone == 0
            rows.append((trial, target, delay, saved, f"{resumed:.1f}", redone, equal))
    print(f"{questions} sample questions; uninterrupted run {uninterrupted:.1f} s\n")
    print_table(["trial", "kill after answers", "extra delay s", "answers saved at kill", "resume s",
                 "answers redone", "submission equal"], rows)
    return verdict(all_good, f"all {args.points} resumed submissions equal the uninterrupted one, nothing redone")


if __name__ == "__main__":
    sys.exit(main())
