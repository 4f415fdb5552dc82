"""Distillation arms on the real pair (``qwen_coder_cpu``: Qwen2.5-Coder-1.5B-Instruct teaching a student
derived from itself, in the shape the arm's ``student_shape`` gives), each a real `kedro run` of
knowledge_base, response_generation and distillation configured by ``conf/arms/<arm>.yml`` (`kedro run
--config`), judged on the dev split's validation questions by the served answering path.

    python benchmarks/distillation_arms.py --arm choice_target            # run it (resumable), then record
    python benchmarks/distillation_arms.py --arm choice_target --record   # record the latest run only
    python benchmarks/distillation_arms.py --backfill [DIR ...]           # answers of recorded rounds

Per arm: the undistilled student (round 0) against each trained round on the same held-out questions
(``distillation.validation.fsku_benchmark`` of ``qwen_coder_cpu``: 200 multiple-choice questions of the
800 outside the settings slice, in their own option order and with options shuffled, and 20
descriptive; one pass, no debiasing), the token KL and NLL on held-out pairs, the FSKU score on the
held-out sample questions, and the per-node times of the run. A killed run is resumed by running the
same command again (generation, choice targets, checkpoints and validation answers are all kept).

Target: the trained student at >= 0.50 single-pass MC accuracy on the held-out questions
with options shuffled. Records ``benchmarks/results/distillation_arms.<CPU kind>.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import report
import yaml
from report import (
    ROOT,
    catalog_with_chunks,
    cpu_line,
    latest,
    print_table,
    result_path,
    run_stamp,
    verdict,
    write_result,
)

ENV = "qwen_coder_cpu"
OUTPUTS = ROOT / "data" / ENV
TARGET = 0.50
# Each arm is a Kedro run configuration, conf/arms/<arm>.yml (`kedro run --config`): its environment,
# pipelines and the parameters it changes. The choice-target settings that the environment's default has
# since changed are pinned in the arms that ran before, so every arm keeps its recorded settings.
ARMS_DIR = ROOT / "conf" / "arms"
ARMS: dict[str, dict] = {path.stem: yaml.safe_load(path.read_text(encoding="utf-8"))["run"]
                         for path in sorted(ARMS_DIR.glob("*.yml"))}
COLUMNS = ["benchmark_own_mc_accuracy", "benchmark_shuffled_mc_accuracy", "benchmark_own_negative_mc_accuracy",
           "benchmark_shuffled_negative_mc_accuracy", "benchmark_own_descriptive_score", "fsku_score", "mc_accuracy",
           "token_kl", "teacher_response_nll"]
NEGATIVE = [f"benchmark_{order}_negative_mc_accuracy" for order in ("own", "shuffled")]


def command(arm: str) -> list[str]:
    return ["kedro", "run", "--config", str((ARMS_DIR / f"{arm}.yml").relative_to(ROOT))]


VALIDATION = "validation_report.json"


def _latest_run(name: str) -> dict[str, Path]:
    """Per round folder, the latest version of ``08_reporting/<round>/<name>``, of the latest run only: a
    round whose latest version is older than round 0's belongs to an earlier arm with more rounds."""
    newest = {folder.name: latest(OUTPUTS, f"08_reporting/{folder.name}/{name}/*/{name}")
              for folder in sorted(OUTPUTS.glob("08_reporting/round_*"))}
    started = latest(OUTPUTS, f"08_reporting/round_0/{VALIDATION}/*/{VALIDATION}")
    if started is None:
        return {}
    # One version per run.
    return {round_name: path for round_name, path in newest.items()
            if path is not None and path.parent.name >= started.parent.name}


def rounds() -> dict[str, dict]:
    """Each round's validation report of the latest run (round_0: the undistilled student)."""
    return {name: json.loads(path.read_text(encoding="utf-8")) for name, path in _latest_run(VALIDATION).items()}


def held_out_sets():
    """The environment's held-out benchmark questions per option order, and the validation's shuffle seed."""
    from fsku_kedro.evaluation.fsku_benchmark import held_out_benchmark

    catalog = catalog_with_chunks(ENV)
    settings = catalog.load("params:distillation").validation.fsku_benchmark
    return held_out_benchmark(*(catalog.load(f"fsku_benchmark_{part}") for part in ("mc", "mc_answers", "descriptive")),
                              settings), settings.seed


def read_answers(path: Path, sets: dict, seed: int) -> dict[str, dict[str, list]]:
    """One versioned ``validation_answers.csv`` as per-order answer records (report.answer_records) of
    its multiple-choice benchmark questions."""
    keys = {order: {label.ID for label in labels} for order, (_, labels) in sets.items()}
    with path.open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("question_type") == "multiple_choice"
                and row.get("order") in keys and row["ID"] in keys[row["order"]]]
    for row in rows:
        row["option_probabilities"] = json.loads(row["option_probabilities"]) if row.get("option_probabilities") else None
    return report.answer_records(rows, sets, seed)


def accuracies(answers: dict[str, dict[str, list]], negative: set[str]) -> dict[str, float]:
    """MC accuracy per option order of one round's answer records, overall and on the negative stems,
    under the validation report's names."""
    figures = {}
    for order, record in answers.items():
        scored = [(question, given.strip() == expected) for question, given, expected
                  in zip(record["ID"], record["answer"], record["expected"], strict=True)]
        if scored:
            figures[f"benchmark_{order}_mc_accuracy"] = sum(hit for _, hit in scored) / len(scored)
            kept = [hit for question, hit in scored if question in negative]
            figures[f"benchmark_{order}_negative_mc_accuracy"] = sum(kept) / len(kept) if kept else None
    return figures


def backfill_from_kept_answers(figures: dict, folders: list[Path]) -> None:
    """Per-question answers, and the accuracy on negative stems where the report predates it, for recorded
    rounds that lack them: from the versioned validation answers under each of ``folders`` whose overall
    accuracies equal the recorded ones, when those versions agree on every answer."""
    missing = [(arm, name) for arm, record in figures.items() for name, round_report in record["rounds"].items()
               if round_report.get(NEGATIVE[1]) is None or "answers" not in round_report]
    if not missing:
        return
    from fsku_kedro.questions import asks_for_incorrect

    sets, seed = held_out_sets()
    negative = {q.ID for q in sets["own"][0] if asks_for_incorrect(q)}
    versions: dict[str, list[tuple[dict, dict]]] = {}  # per round folder: (answers, their accuracies)
    for folder in folders:
        for path in sorted(folder.glob("08_reporting/round_*/validation_answers.csv/*/validation_answers.csv")):
            answers = read_answers(path, sets, seed)
            versions.setdefault(path.parents[2].name, []).append((answers, accuracies(answers, negative)))
    for arm, name in missing:
        round_report = figures[arm]["rounds"][name]
        found = [(answers, figure) for answers, figure in versions.get(name, [])
                 if all(abs(figure.get(f"benchmark_{o}_mc_accuracy", -1.0)
                            - round_report[f"benchmark_{o}_mc_accuracy"]) < 1e-9 for o in ("own", "shuffled"))]
        if len({json.dumps(answers, sort_keys=True) for answers, _ in found}) != 1:
            continue  # none kept, or versions that match the figures but disagree on an answer
        answers, figure = found[0]
        round_report["answers"] = answers
        if round_report.get(NEGATIVE[1]) is None:
            round_report.update({n: figure.get(n) for n in NEGATIVE})


def target_agreement() -> dict[str, dict[str, float]] | None:
    """For the latest run's choice targets: per kind of question made from the knowledge base (asking
    for the correct or the incorrect statement), how often the teacher's cyclic-averaged and one-pass
    distributions put their top on the answer the question was made with. None without targets."""
    import numpy as np
    import pandas as pd

    path = latest(OUTPUTS, "05_model_input/choice_targets.parquet/*/choice_targets.parquet")
    frame = pd.read_parquet(path) if path is not None else pd.DataFrame()
    if frame.empty or "answer" not in frame:
        return None
    corpus = frame[frame["answer"] > 0]
    kinds = corpus["question_id"].str.contains("-not-").map({True: "negated", False: "positive"})

    def top_is_answer(group: pd.DataFrame, column: str) -> float:
        return float(np.mean([np.argmax(p) + 1 == a for p, a in zip(group[column], group["answer"])]))

    return {kind: {"questions": len(group), "cyclic_top_is_answer": top_is_answer(group, "target"),
                   "one_pass_top_is_answer": top_is_answer(group, "one_pass")}
            for kind, group in corpus.groupby(kinds)}


def read_curve(path: Path) -> dict[str, list[float]]:
    """Training loss and eval loss by step from a round's ``training_log.csv``."""
    with path.open(encoding="utf-8") as handle:
        log = list(csv.DictReader(handle))
    train = [row for row in log if row.get("loss")]
    evaluation = [row for row in log if row.get("eval_loss")]
    return {"step": [int(row["step"]) for row in train], "loss": [float(row["loss"]) for row in train],
            "eval_step": [int(row["step"]) for row in evaluation],
            "eval_loss": [float(row["eval_loss"]) for row in evaluation],
            "log": path.relative_to(ROOT).as_posix()}


def curves() -> dict[str, dict[str, list[float]]]:
    """Each trained round's curves from the latest run's training logs."""
    return {name: read_curve(path) for name, path in _latest_run("training_log.csv").items()}


def plot(figures: dict, path: Path) -> None:
    """Training loss (mean over 8 steps) of each arm's trained rounds, and held-out MC accuracy per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for arm, record in figures.items():
        for name, curve in (record.get("curves") or {}).items():
            loss = curve["loss"]
            smooth = [sum(loss[max(0, i - 7):i + 1]) / len(loss[max(0, i - 7):i + 1]) for i in range(len(loss))]
            left.plot(curve["step"], smooth, label=f"{arm} ({name})")
    left.set(xlabel="step", ylabel="training loss (mean of 8 steps)", yscale="log",
             title="Training loss per arm (arms with a kept log)")
    left.legend(fontsize=7)
    arms = list(figures)
    best = [max((r for n, r in figures[a]["rounds"].items() if n != "round_0"),
                key=lambda r: r.get("benchmark_shuffled_mc_accuracy") or 0.0) for a in arms]
    undistilled = figures[arms[0]]["rounds"]["round_0"]
    x = range(len(arms))
    right.bar([i - 0.2 for i in x], [r["benchmark_own_mc_accuracy"] for r in best], width=0.4, label="own order")
    right.bar([i + 0.2 for i in x], [r["benchmark_shuffled_mc_accuracy"] for r in best], width=0.4, label="shuffled")
    right.axhline(undistilled["benchmark_shuffled_mc_accuracy"], color="grey", linestyle=":",
                  label="undistilled, shuffled")
    right.axhline(TARGET, color="red", linestyle="--", label=f"target {TARGET} (shuffled)")
    right.set_xticks(list(x), arms, rotation=20, ha="right", fontsize=8)
    right.set(ylabel="held-out MC accuracy (200 questions)", ylim=(0, 0.6), title="Best trained round per arm")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


CONTEXT = {"models": {"teacher": "Qwen2.5-Coder-1.5B-Instruct",
                      "student": "the teacher cut by block influence to each arm's student_shape "
                      "(26 of 28 layers unless the arm says otherwise)"},
           "evaluation": "held-out FSKU benchmark questions outside the settings slice "
           "(distillation.validation.fsku_benchmark of qwen_coder_cpu), served path, one pass; each round's "
           "answers (where its validation answers were still kept) per option order"}


def backfill(folders: list[Path]) -> int:
    """Fills recorded rounds' answers from the kept validation answers, recording nothing new."""
    path = result_path("distillation_arms", by_cpu_kind=True)
    if not path.is_file():
        print(f"no record at {path.relative_to(ROOT)}")
        return 2
    figures = json.loads(path.read_text(encoding="utf-8"))["figures"]
    backfill_from_kept_answers(figures, [OUTPUTS, *(folder.resolve() for folder in folders)])
    write_result("distillation_arms", figures, by_cpu_kind=True, **CONTEXT)
    rounds_of = [(f"{arm} {name}", "answers" in scores) for arm, entry in figures.items()
                 for name, scores in entry["rounds"].items()]
    print(f"rounds with their answers in {path.relative_to(ROOT)}: "
          f"{', '.join(name for name, kept in rounds_of if kept) or 'none'}")
    print(f"rounds without (no single kept version matches their figures): "
          f"{', '.join(name for name, kept in rounds_of if not kept) or 'none'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", choices=sorted(ARMS))
    parser.add_argument("--record", action="store_true", help="record the latest run's outputs, do not run")
    parser.add_argument("--ran-at", default=None, help="with --record: the commit the recorded run ran at")
    parser.add_argument("--name", default=None, help="record under this name (default: the arm's), to keep an "
                        "earlier record of the same settings made at other code")
    parser.add_argument("--backfill", nargs="*", type=Path, metavar="DIR", default=None,
                        help="run nothing: give recorded rounds their per-question answers from the validation "
                        f"answers kept under {OUTPUTS.relative_to(ROOT)} and each DIR (another checkout's "
                        "data/qwen_coder_cpu)")
    args = parser.parse_args()
    if args.backfill is not None:
        return backfill(args.backfill)
    if args.arm is None:
        parser.error("--arm is required unless --backfill")
    run = command(args.arm)
    seconds = None
    if not args.record:
        start = time.perf_counter()
        done = subprocess.run(run, cwd=ROOT, check=False)
        if done.returncode:
            print(f"{' '.join(run)} failed with exit code {done.returncode}; run it again to resume")
            return 2
        seconds = time.perf_counter() - start
    reports = rounds()
    if "round_0" not in reports or len(reports) < 2:
        print(f"no validated rounds under {OUTPUTS}/08_reporting: run the arm first")
        return 2
    times_file = ROOT / "logs" / "node_times.json"
    times = json.loads(times_file.read_text(encoding="utf-8")) if times_file.is_file() else {}
    previous = result_path("distillation_arms", by_cpu_kind=True)
    figures = json.loads(previous.read_text(encoding="utf-8"))["figures"] if previous.is_file() else {}
    recorded = {name: {key: report.get(key) for key in ["model", *COLUMNS, "benchmark_own_fallbacks",
                                                        "benchmark_shuffled_fallbacks"]}
                for name, report in reports.items()}
    entry = args.name or args.arm
    before = figures.get(entry, {})
    # Recording the same run again keeps its wall time.
    same_run = all(before.get("rounds", {}).get(name, {}).get(key) == report[key]
                   for name, report in recorded.items() for key in ("model", *COLUMNS[:2]))
    shape = ARMS[args.arm]["params"].get("student_shape") or {}
    figures[entry] = {
        "kedro_command": " ".join(run),
        "student_shape": shape or {"layers": 26},
        # This entry's own command, commit, CPU and date: the record gathers arms run at different times.
        # Recording an earlier run, ``ran_at`` names the commit it ran at.
        "run": run_stamp(),
        **({"ran_at": args.ran_at} if args.record else {}),
        "rounds": recorded,
        "choice_targets": target_agreement(),
        "curves": curves(),
        "run_seconds": seconds if seconds is not None or not same_run else before.get("run_seconds"),
        "pipeline_seconds": times.get("pipeline_seconds"),
        "nodes": times.get("nodes"),
    }
    backfill_from_kept_answers(figures, [OUTPUTS])
    path = write_result("distillation_arms", figures, by_cpu_kind=True, **CONTEXT)
    print(f"\n{entry} ({cpu_line()}), real models; held-out FSKU questions, one pass\n")
    print_table(["round", "model", *COLUMNS], [
        [name, report.get("model"), *(f"{report[c]:.3f}" if isinstance(report.get(c), float) else "" for c in COLUMNS)]
        for name, report in reports.items()])
    if times.get("nodes"):
        print(f"\nper node (pipeline {times['pipeline_seconds']:.0f} s):\n")
        print_table(["seconds", "node"], [[f"{row['seconds']:.0f}", row["node"]] for row in times["nodes"]])
    plot(figures, path.with_suffix(".png"))
    print(f"\nrecorded in {path.relative_to(ROOT)}, curves in {path.with_suffix('.png').relative_to(ROOT)}")
    trained = [report for name, report in reports.items() if name != "round_0"]
    best = max(report.get("benchmark_shuffled_mc_accuracy") or 0.0 for report in trained)
    return verdict(best >= TARGET, f"a trained student at >= {TARGET} MC accuracy on the held-out questions with "
                   f"options shuffled (best {best:.3f}; undistilled "
                   f"{reports['round_0'].get('benchmark_shuffled_mc_accuracy') or float('nan'):.3f})")


if __name__ == "__main__":
    sys.exit(main())
