"""The main job from a fresh clone: set-up, then `kedro run` on the embedded defaults, timed per node.

    python benchmarks/main_job_time.py                 # clone HEAD into a temporary folder, set up, run
    python benchmarks/main_job_time.py --keep /tmp/x   # clone into /tmp/x and keep it afterwards

The clone has nothing cached (no .venv, no data, no models materialised). When ../shared/fsku-benchmark
exists beside this checkout, the clone sees it too, so the run includes the FSKU benchmark slice as a
user's would. The set-up (`bash scripts/setup_env.sh`, which installs from the project's files) is timed
apart; the target is on `kedro run` alone: at most 12 minutes. Prints the per-node table (from the run's
logs/node_times.json) and records it in benchmarks/results/main_job.<CPU kind>.json. Run it alone on
the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from report import ROOT, clone_beside_shared, cpu_line, print_table, run_logged, verdict, write_result

TARGET_S = 12 * 60


def _timed(command: list[str], cwd: Path, log: Path) -> float:
    code, seconds = run_logged(command, cwd, log)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise SystemExit(f"{' '.join(command)} failed with exit code {code} (log: {log}):\n{tail}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="clone into this (new) folder and keep it")
    args = parser.parse_args()
    holder = Path(tempfile.mkdtemp(prefix="main-job-")) if args.keep is None else args.keep.resolve()
    holder.mkdir(parents=True, exist_ok=True)
    clone = clone_beside_shared(holder)
    with_fsku = (holder / "shared" / "fsku-benchmark").is_dir()

    setup_s = _timed(["bash", "scripts/setup_env.sh"], clone, holder / "setup.log")
    run_s = _timed(["bash", "scripts/run.sh"], clone, holder / "run.log")
    times = json.loads((clone / "logs" / "node_times.json").read_text(encoding="utf-8"))
    pipeline_s = times["pipeline_seconds"]
    slowest = sorted(times["nodes"], key=lambda row: -row["seconds"])[:3]

    print(f"\nmain job from a fresh clone ({cpu_line()}), default models (SmolLM2-135M-Instruct teacher, "
          f"10-layer student); FSKU benchmark slice {'included' if with_fsku else 'absent'}\n")
    print_table(["seconds", "share", "node"], [
        [f"{row['seconds']:.1f}", f"{row['seconds'] / pipeline_s:.1%}",
         row["node"] + (" *" if row in slowest else "")] for row in times["nodes"]])
    print(f"\npipeline {pipeline_s:.1f} s; `bash scripts/run.sh` {run_s:.1f} s (kedro start-up included); "
          f"set-up {setup_s:.1f} s")
    path = write_result("main_job", by_cpu_kind=True, figures={"pipeline_s": pipeline_s, "kedro_run_s": round(run_s, 1),
                                     "setup_s": round(setup_s, 1), "nodes": times["nodes"]},
                        models={"teacher": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)",
                                "student": "the teacher pruned to 10 of 30 layers"},
                        fsku_benchmark_slice=with_fsku, target_s=TARGET_S,
                        commit=subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True,
                                              text=True, check=True).stdout.strip())  # what the clone ran
    print(f"recorded in {path.relative_to(ROOT)}; clone in {clone}")
    return verdict(run_s <= TARGET_S, f"`kedro run` from a fresh clone within {TARGET_S // 60} minutes")


if __name__ == "__main__":
    sys.exit(main())
