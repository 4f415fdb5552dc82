"""A whole environment from a fresh clone: set-up, `kedro run --env <env>` (every pipeline but the
package), `kedro run --pipelines package`, and the archive replayed offline in an empty folder,
timed per node and scored.

    python benchmarks/whole_environment.py --holder /work/whole_env                 # qwen_coder_cpu
    python benchmarks/whole_environment.py --holder /tmp/default_env --env base     # the tiny defaults

``--holder`` keeps the clone and this script's state: run the same command again after a kill and it
resumes (the clone is kept, finished steps are skipped, and the pipeline itself resumes its
generation, targets, checkpoints and answers). Each attempt's per-node table is kept, and the record
sums them per node. The clone starts with nothing cached (no .venv, no data); ../shared beside this
checkout is linked beside the clone, as a user's checkout would have it.

Scored: the submission on the labelled sample test.csv (FSKU score, MC accuracy, descriptive score),
the FSKU benchmark questions of the inference pipeline, and the distillation rounds' held-out
validation. The replay must give a submission byte-identical to the packaged one. Records
``benchmarks/results/whole_environment.<env>.<CPU kind>.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from report import ROOT, clone_beside_shared, cpu_line, latest, print_table, run_logged, verdict, write_result

SET_UP = {"qwen_coder_cpu": "scripts/setup_qwen_coder_cpu.sh", "base": "scripts/setup_env.sh"}


def _load(path: Path | None) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else {}


def _save(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _overall(report: Path | None) -> dict:
    """The first (overall) row of an evaluation report CSV."""
    if report is None:
        return {}
    with report.open(encoding="utf-8") as handle:
        row = next(csv.DictReader(handle), {})
    return {key: _number(value) for key, value in row.items()}


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _keep_attempt(state: dict, times: Path, outcome: dict | None, log: Path) -> None:
    """Appends the run's per-node table (written after every node) to the attempts and removes it.
    ``outcome`` None: the attempt was killed along with this script; its time runs from its start to the
    log's last write, and what the table lacks (the node it was killed in) is kept as ``lost_seconds``."""
    if not times.is_file():
        return
    table = _load(times)
    if outcome is None:
        started = state.get("run_started")
        wall = log.stat().st_mtime - started if started and log.is_file() else table.get("pipeline_seconds", 0.0)
        outcome = {"seconds": round(wall, 1), "exit_code": "killed"}
    state["attempts"].append(outcome)
    state["attempts"][-1].update(table)
    state["attempts"][-1]["lost_seconds"] = round(max(outcome["seconds"] - table.get("pipeline_seconds", 0.0), 0.0), 1)
    times.unlink()


def summed_nodes(attempts: list[dict]) -> list[dict]:
    """Seconds per node over every attempt, in the order the nodes first started."""
    seconds: dict[str, float] = {}
    runs: dict[str, int] = {}
    for attempt in attempts:
        for row in attempt.get("nodes", []):
            seconds[row["node"]] = seconds.get(row["node"], 0.0) + row["seconds"]
            runs[row["node"]] = runs.get(row["node"], 0) + 1
    rows = [{"node": name, "seconds": round(value, 1), "attempts": runs[name]} for name, value in seconds.items()]
    lost = sum(attempt.get("lost_seconds", 0.0) for attempt in attempts)
    if lost:  # start-up, and the nodes attempts were killed in before they finished
        rows.append({"node": "(outside the node tables: start-up, nodes killed unfinished)", "seconds": round(lost, 1),
                     "attempts": sum(1 for attempt in attempts if attempt.get("lost_seconds"))})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holder", type=Path, required=True, help="folder for the clone and the state (kept)")
    parser.add_argument("--env", default="qwen_coder_cpu", choices=sorted(SET_UP))
    args = parser.parse_args()
    holder = args.holder.resolve()
    holder.mkdir(parents=True, exist_ok=True)
    state_file, log = holder / "state.json", holder / "steps.log"
    cloned_now = not (holder / "fsku_kedro" / ".git").is_dir()
    state = {} if cloned_now else _load(state_file)  # a new clone starts a new state
    clone = clone_beside_shared(holder)
    if not state:
        state = {"commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True,
                                          check=True).stdout.strip(), "attempts": []}
        _save(state_file, state)
    outputs = clone / "data" if args.env == "base" else clone / "data" / args.env
    kedro = [str(clone / ".venv" / "bin" / "kedro"), "run", *([] if args.env == "base" else ["--env", args.env])]

    times = clone / "logs" / "node_times.json"
    steps = [("setup", ["bash", SET_UP[args.env]]), ("run", kedro), ("package", [*kedro, "--pipelines", "package"])]
    for name, command in steps:
        if name in state:
            continue
        if name == "run":
            _keep_attempt(state, times, None, log)  # a table left behind: an attempt killed with this script
            state["run_started"] = time.time()
            _save(state_file, state)
        print(f"{name}: {' '.join(command)} (log: {log})", flush=True)
        code, seconds = run_logged(command, clone, log, mode="a")
        if name == "run":  # each attempt's per-node table is kept; a resumed run writes a new one
            _keep_attempt(state, times, {"seconds": round(seconds, 1), "exit_code": code}, log)
            _save(state_file, state)
        if code:
            print(f"{name} failed with exit code {code}; run the same command again to resume")
            return 2
        state[name] = round(seconds, 1)
        _save(state_file, state)

    archive = latest(outputs / "09_package" / "competition_package.zip", "*/competition_package.zip")
    if archive is None:
        print(f"no archive under {outputs / '09_package'}")
        return 2
    replay = holder / "replay"
    shutil.rmtree(replay, ignore_errors=True)
    with zipfile.ZipFile(archive) as package:
        package.extractall(replay)
    test_csv = clone / "data" / "01_raw" / "sample" / "test.csv"
    code, replay_s = run_logged([str(clone / ".venv" / "bin" / "python"), "answer.py", str(test_csv), "--out",
                                 "replayed.csv"], replay, log, env={"HF_HUB_OFFLINE": "1"}, mode="a")
    identical = code == 0 and (replay / "replayed.csv").read_bytes() == (replay / "submission.csv").read_bytes()

    reporting = outputs / "08_reporting"
    rounds = {folder.name: _load(latest(folder, "validation_report.json/*/validation_report.json"))
              for folder in sorted(reporting.glob("round_*"))}
    package_report = _load(latest(reporting, "package_report.json/*/package_report.json"))
    nodes = summed_nodes(state["attempts"])
    figures = {
        "setup_s": state["setup"], "kedro_run_s": round(sum(a["seconds"] for a in state["attempts"]), 1),
        "pipeline_s": round(sum(a.get("pipeline_seconds", 0.0) for a in state["attempts"]), 1),
        "attempts": len(state["attempts"]), "package_s": state["package"], "nodes": nodes,
        "sample_evaluation": _overall(latest(reporting, "evaluation_report.csv/*/evaluation_report.csv")),
        "fsku_benchmark_evaluation": _overall(latest(reporting, "fsku_benchmark/evaluation_report.csv/*/"
                                                                 "evaluation_report.csv")),
        "distillation_rounds": rounds,
        "package": {"archive_mb": round(archive.stat().st_size / 1e6, 1), "report": package_report},
        "replay": {"seconds": round(replay_s, 1), "exit_code": code, "byte_identical": identical},
    }
    path = write_result(f"whole_environment.{args.env}", figures, by_cpu_kind=True, commit=state["commit"])

    print(f"\n`kedro run{'' if args.env == 'base' else ' --env ' + args.env}` from a fresh clone ({cpu_line()}), "
          f"{len(state['attempts'])} attempt(s)\n")
    print_table(["seconds", "node", "attempts"], [[f"{row['seconds']:.0f}", row["node"], row["attempts"]]
                                                  for row in nodes])
    print(f"\nset-up {state['setup']:.0f} s; kedro run {figures['kedro_run_s']:.0f} s (pipeline "
          f"{figures['pipeline_s']:.0f} s); package {state['package']:.0f} s; replay {replay_s:.0f} s\n")
    print_table(["questions", "FSKU score", "MC accuracy", "descriptive score"], [
        [name, *(f"{value:.3f}" if isinstance(value := figures[key].get(column), float) else ""
                 for column in ("fsku_score", "mc_accuracy", "descriptive_score"))]
        for name, key in (("sample test.csv", "sample_evaluation"),
                          ("FSKU benchmark (inference)", "fsku_benchmark_evaluation"))])
    print(f"\nrecorded in {path.relative_to(ROOT)}; clone in {clone}")
    return verdict(identical, "the package replays offline to a byte-identical submission")


if __name__ == "__main__":
    sys.exit(main())
