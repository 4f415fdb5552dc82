"""Which distillation recipe distils best at equal training? Each arm is a real
`kedro run --pipelines distillation` (so an MLflow run) with its own loss schedule; the table is
built from those MLflow runs by the pipeline's own comparison node.

    python benchmarks/distillation_effect.py [--steps 20] [--env qwen_coder_cpu] [--arms seqkd "seqkd→distillm_v2"]

Arms: seqkd; kd; distillm_v2; seqkd→distillm_v2; seqkd→kd; dpo; seqkd→distillm_v2 with adaptive
alpha (anchored on the first fifth of its round); seqkd→distillm_v2 with learning rate 3e-3 (3× the base
environment's) in its DistiLLM-2 round. Every arm starts from the same student, reads the same pair dataset version (round 1; later
rounds regenerate the student's responses, as the recipe does) and trains ``--steps`` optimizer
steps in all, split evenly over its rounds; everything else is the environment's distillation
settings. Reported per arm, for its last round: held-out token KL(teacher || student) and
teacher-response NLL (validation pairs), the held-out FSKU score (the sample split's held-out
questions) and training tokens/s. The per-step training curves of every run go to
data/08_reporting/distillation_effect/<env>.json.

Needs a pair dataset (`kedro run --pipelines response_generation` in the same environment).
Target: seqkd→distillm_v2 ends with a lower held-out token KL than seqkd alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import mlflow
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from report import print_table, verdict

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data/08_reporting/distillation_effect"
ADAPTIVE = "seqkd→distillm_v2 (adaptive alpha)"
ARMS = {
    "seqkd": [{"loss": "seqkd"}],
    "kd": [{"loss": "kd"}],
    "distillm_v2": [{"loss": "distillm_v2"}],
    "seqkd→distillm_v2": [{"loss": "seqkd"}, {"loss": "distillm_v2"}],
    "seqkd→kd": [{"loss": "seqkd"}, {"loss": "kd"}],
    "dpo": [{"loss": "dpo"}],
    ADAPTIVE: [{"loss": "seqkd"}, {"loss": "distillm_v2", "distillm": {"adaptive_alpha": True}}],
    "seqkd→distillm_v2 (learning rate 3e-3)": [{"loss": "seqkd"},
                                            {"loss": "distillm_v2", "training": {"learning_rate": 3.0e-3}}],
}
CURVES = ("loss", "kl.chosen", "kl.rejected")


def schedule_for(arm: str, steps: int) -> list[dict]:
    """The arm's schedule with ``steps`` optimizer steps split evenly over its rounds."""
    rounds = ARMS[arm]
    if steps % len(rounds):
        raise SystemExit(f"--steps {steps} does not split evenly over the {len(rounds)} rounds of {arm}")
    per_round = steps // len(rounds)
    schedule = []
    for entry in rounds:
        entry = {**entry, "training": {**entry.get("training", {}), "max_steps": per_round}}
        if entry.get("distillm", {}).get("adaptive_alpha"):
            # The anchor is the mean gap over the round's first fifth; alpha adapts after it.
            entry["distillm"] = {"alpha_anchor_steps": max(1, per_round // 5), **entry["distillm"]}
        schedule.append(entry)
    return schedule


def pair_version(env: str | None) -> str | None:
    """The pair dataset version every arm reads (the newest when the benchmark starts)."""
    with KedroSession.create(project_path=ROOT, env=env) as session:
        catalog = session.load_context().catalog
        if not catalog.exists("pair_dataset"):
            return None
        return catalog.get("pair_dataset").resolve_load_version()


def run_arm(arm: str, steps: int, env: str | None, version: str, learning_rate: float | None, work: Path) -> str:
    """One `kedro run --pipelines distillation` for ``arm``; returns its MLflow run id. Checkpoints go to
    a folder of this arm's own, so no arm resumes another's identical first round."""
    settings: dict = {"schedule": schedule_for(arm, steps), "checkpoint_dir": str(work / f"arm_{len(list(work.iterdir()))}")}
    if learning_rate:
        settings["training"] = {"learning_rate": learning_rate}
    pipelines.set_requested(None)  # the next session builds and types its own graph
    with KedroSession.create(project_path=ROOT, env=env, runtime_params={"distillation": settings}) as session:
        session.run(pipeline_names=["distillation"], load_versions={"pair_dataset": version})
    return mlflow.last_active_run().info.run_id


def curves(run_id: str, rounds: int) -> dict[str, list[list[float]]]:
    client = mlflow.MlflowClient()
    found = {}
    for number in range(1, rounds + 1):
        for name in CURVES:
            key = f"round_{number}.training_history.{name}"
            history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
            if history:
                found[key] = [[m.step, m.value] for m in history]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per arm, over all its rounds")
    parser.add_argument("--env", help="Kedro environment (default: base)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--learning-rate", type=float, help="override distillation.training.learning_rate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from fsku_kedro.pipelines.distillation.nodes import compare_distillation_runs

    bootstrap_project(ROOT)
    version = pair_version(args.env)
    if version is None:
        print("no pair dataset yet: run `kedro run --pipelines response_generation` first")
        return 2
    run_ids, seconds = {}, {}
    checkpoints = ROOT / "data/06_models/distillation"
    checkpoints.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=checkpoints, prefix="benchmark-") as work:
        for arm in args.arms:
            start = time.perf_counter()
            run_ids[arm] = run_arm(arm, args.steps, args.env, version, args.learning_rate, Path(work))
            seconds[arm] = time.perf_counter() - start
    runs = mlflow.search_runs(experiment_names=["fsku_kedro"], max_results=10_000)
    runs = runs[runs["run_id"].isin(run_ids.values())]
    table, _ = compare_distillation_runs(runs, runs.iloc[:0])
    table = table.set_index("run_id")
    first = runs.iloc[0]
    before = {name: first.get(f"metrics.round_0.validation_metrics.{name}", float("nan"))
              for name in ("token_kl", "teacher_response_nll", "fsku_score")}

    rows = [["before training", "-", "-", "-", f"{before['token_kl']:.4f}", f"{before['teacher_response_nll']:.4f}",
             f"{before['fsku_score']:.4f}", "-", "-"]]
    results = {}
    for arm, run_id in run_ids.items():
        row = table.loc[run_id]
        results[arm] = {"run_id": run_id, "run_s": seconds[arm], "curves": curves(run_id, int(row["rounds"])),
                        **{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k != "started"}}
        rows.append([arm, int(row["rounds"]), int(row["steps"]), f"{row['tokens_per_second']:.0f}",
                     f"{row['token_kl']:.4f}", f"{row['teacher_response_nll']:.4f}", f"{row['fsku_score']:.4f}",
                     f"{seconds[arm]:.0f}", run_id[:8]])
    env = args.env or "base"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{env}.json").write_text(json.dumps({"env": env, "steps": args.steps, "pair_dataset": version,
                                                 "before": before, "arms": results}, ensure_ascii=False, indent=1,
                                                default=str), encoding="utf-8")
    student = table["student"].iloc[0] if len(table) else "?"
    print(f"\nenvironment {env}, student {student}, {args.steps} optimizer steps per arm, pair dataset {version}; "
          "real models, CPU\n")
    print_table(["arm", "rounds", "steps", "train tokens/s", "held-out token KL", "teacher-response NLL",
                 "held-out FSKU", "run s", "MLflow run"], rows)
    print(f"\nper-step curves: {(OUT / f'{env}.json').relative_to(ROOT)}")
    codes = []
    if {"seqkd", "seqkd→distillm_v2"} <= results.keys():
        warm, alone = results["seqkd→distillm_v2"]["token_kl"], results["seqkd"]["token_kl"]
        codes.append(verdict(warm < alone, f"seqkd→distillm_v2 held-out KL {warm:.4f} < seqkd alone {alone:.4f}"))
    if {ADAPTIVE, "seqkd→distillm_v2"} <= results.keys():
        adaptive, fixed = results[ADAPTIVE]["token_kl"], results["seqkd→distillm_v2"]["token_kl"]
        print(f"adaptive alpha: held-out KL {adaptive:.4f} vs fixed alpha {fixed:.4f} "
              f"({'adaptive' if adaptive < fixed else 'fixed'} is lower)")
    return max(codes or [0])


if __name__ == "__main__":
    sys.exit(main())
