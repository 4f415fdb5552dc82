"""Models against the teacher on every multiple-choice question of the FSKU benchmark's test split (600 of
1000: outside the settings slice and the validation questions, which chose recipes, rounds and
settings; evaluation/fsku_benchmark.py), closed book, through the path validation scores
(evaluation/benchmark_scores.py) in ``qwen_coder_cpu``: in the benchmark's own option order, and with
options shuffled under each of three seeds (their mean, with a 95 % interval over the seeds); and each
model's seconds per question measured in the same run as the teacher's.

    python benchmarks/held_out_final.py --model distilled=DIR [--model LABEL=DIR ...] [--cyclic LABEL ...]
                                        [--speed-questions 48] [--questions N] [--rescore]

Each ``--model`` is a label and a model directory (a version of ``distilled_student``, an undistilled
student's cache, a 4-bit copy). The teacher (the environment's ``teacher_model``, one pass) is scored in
every run. ``--cyclic LABEL`` (``teacher`` or a ``--model`` label, repeatable) adds that model averaged
over the options' cyclic rotations (4 passes) as ``LABEL_cyclic``: the teacher's is the accuracy a one-pass
model would have to learn, a student's is its served setting when serving chose cyclic. Answers resume from
data/qwen_coder_cpu/08_reporting/held_out_final.progress.jsonl, keyed by each model's weights, so a killed
run redoes only unfinished batches. The speed part answers the first ``--speed-questions`` again without
the store in two halves, the models taking turns in the order A B ... then ... B A, so that whatever else
runs on the cores slows all alike and an engine starts at most twice per model; each model's time is also
given as a ratio to the teacher's in the same run. A label whose record already holds the answers of the
same weights, answering mode and questions (a checkout without that store, the teacher of an earlier
run) keeps them and the run that made them; it is only timed again (``timed``). ``--rescore`` answers
every label again. ``--questions N`` is a
plumbing check on N questions: its figures are printed, not recorded.

Record: benchmarks/results/held_out_test.<cpu kind>.json, one entry per label, kept across runs (each with
its own command, commit and date), and the frontier beside it (.png: accuracy against time per question
as a multiple of the teacher's), with every answer (question, option order, answer, option
probabilities) so that any subset can be scored again. held_out_final.<cpu kind>.json is the earlier
record, measured on all 800 outside the settings slice, 200 of which chose the recipe: history only.
Targets (for the labels given): a one-pass model at or above the teacher's one pass with
options shuffled at no more than the teacher's time; a model at <= 0.75x the teacher's time within 3
points of it. Exits 1 when a target is missed, 2 when the benchmark files are absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report
from report import (
    ROOT,
    catalog_with_chunks,
    cpu_line,
    print_table,
    result_path,
    run_stamp,
    typed,
    verdict,
    write_result,
)

ENV = "qwen_coder_cpu"
PROGRESS = ROOT / "data" / ENV / "08_reporting" / "held_out_final.progress.jsonl"
SEEDS = (0, 1, 2)
ORDERS = ("own", *(f"shuffled_{seed}" for seed in SEEDS))
# Student's t for 2 degrees of freedom (three seeds), two-sided 95 %.
T_TWO_DF = 4.303


def held_out_sets(catalog, limit: int | None):
    """The test split's MC questions (``limit``: the first that many) in their own option order and
    shuffled by each seed; None without the benchmark."""
    from fsku_kedro.evaluation.fsku_benchmark import benchmark_split_sets

    tables = [catalog.load(f"fsku_benchmark_{part}") for part in ("mc", "mc_answers", "descriptive")]
    if tables[0].empty:
        return None
    sets = {}
    for seed in SEEDS:  # the own order is the same under every seed
        orders = benchmark_split_sets(*tables, "test", ["own", "shuffled"], seed=seed)
        sets.setdefault("own", orders["own"])
        sets[f"shuffled_{seed}"] = orders["shuffled"]
    kept = {}
    for order, (questions, labels) in sets.items():
        chosen = [q for q in questions if q.question_type == "multiple_choice"][:limit]
        ids = {q.ID for q in chosen}
        kept[order] = (chosen, [label for label in labels if label.ID in ids])
    return kept


def over_seeds(scores: dict[str, float], name: str) -> dict[str, float]:
    """The mean of ``benchmark_shuffled_<seed>_<name>`` over the seeds and its 95 % interval."""
    values = [scores[f"benchmark_shuffled_{seed}_{name}"] for seed in SEEDS if f"benchmark_shuffled_{seed}_{name}" in scores]
    if not values:
        return {}
    mean = statistics.fmean(values)
    half = T_TWO_DF * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return {f"shuffled_{name}": mean, f"shuffled_{name}_interval": [mean - half, mean + half]}


def seconds_per_question(bundles: dict, questions: list, templates: dict, inference) -> dict[str, float]:
    """Mean answering seconds per question of each (bundle, cyclic) in ``bundles`` on ``questions``,
    taking turns in two halves (A B ... B A)."""
    from fsku_kedro.answering.batch_runner import answer_questions
    from fsku_kedro.answering.prompts import PreparedQuestion
    from fsku_kedro.evaluation.benchmark_scores import served_settings

    spent = dict.fromkeys(bundles, 0.0)
    half = (len(questions) + 1) // 2
    for turn, start in enumerate(range(0, len(questions), half)):
        block = [PreparedQuestion(q) for q in questions[start:start + half]]
        # The second half in reverse order: the model that answered last answers again on its warm engine.
        for name in (list(bundles) if turn == 0 else list(reversed(bundles))):
            bundle, cyclic = bundles[name]
            rows = answer_questions(block, bundle, templates, served_settings(inference, cyclic), store=None,
                                    show_progress=False)
            spent[name] += sum(row.inference_time for row in rows)
    return {name: seconds / len(questions) for name, seconds in spent.items()}


def recorded_entry(entry: dict | None, weights: str, cyclic: bool, sets: dict) -> dict | None:
    """``entry`` (a label's figures in the record) when it answered these ``sets`` with the same weights and
    answering mode: every order's questions in the same order with the same options shown; else None."""
    if not entry or entry.get("weights") != weights or entry.get("cyclic") != cyclic:
        return None
    recorded = entry.get("answers") or {}
    shown = report.answer_records([{"order": order, "ID": q.ID, "answer": None} for order, (questions, _) in
                                   sets.items() for q in questions], sets)
    for order, expected in shown.items():
        kept = recorded.get(order) or {}
        if any(kept.get(column) != expected[column] for column in ("ID", "options_shown", "expected")):
            return None
    return entry


def labelled(text: str) -> tuple[str, Path]:
    label, directory = report.labelled_directory(text)
    if label.startswith("teacher"):  # the teacher's labels are the script's own
        raise argparse.ArgumentTypeError(f"--model takes LABEL=DIR with a label not starting with teacher, got {text!r}")
    return label, directory


def targets(figures: dict, labels: list[str]) -> list[int]:
    """The targets for the models of this run, against the teacher's one pass."""
    teacher = figures["teacher"]
    checks = []
    for label in labels:
        model = figures[label]
        ratio = model["time_ratio_to_teacher"]
        better = model["shuffled_mc_accuracy"] >= teacher["shuffled_mc_accuracy"] and ratio <= 1.0
        checks.append(verdict(better, f"{label}: shuffled {model['shuffled_mc_accuracy']:.3f} against the teacher's "
                              f"{teacher['shuffled_mc_accuracy']:.3f}, at {ratio:.2f}x its time"))
        if ratio <= 0.75:
            close = model["shuffled_mc_accuracy"] >= teacher["shuffled_mc_accuracy"] - 0.03
            checks.append(verdict(close, f"{label} at {ratio:.2f}x the teacher's time within 3 points of it"))
    return checks


def moonshot(figures: dict) -> None:
    """Prints, without deciding the exit status, whether a one-pass model reaches the teacher's cyclic
    accuracy (four passes)."""
    if "teacher_cyclic" not in figures:
        return
    goal = figures["teacher_cyclic"]["shuffled_mc_accuracy"]
    for label, model in figures.items():
        if not model["cyclic"] and label != "teacher":
            reached = "reaches" if model["shuffled_mc_accuracy"] >= goal else "does not reach"
            print(f"moonshot: {label} ({model['shuffled_mc_accuracy']:.3f} shuffled, one pass) {reached} the "
                  f"teacher's cyclic {goal:.3f}")


def plot_frontier(figures: dict, path: Path) -> None:
    """Test accuracy (own order, and shuffled with its interval) against time per question as a multiple
    of the teacher's one pass in the same run, one point per recorded model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7.5, 5))
    for label, f in figures.items():
        x = f["time_ratio_to_teacher"]
        low, high = f["shuffled_mc_accuracy_interval"]
        shuffled = f["shuffled_mc_accuracy"]
        axis.errorbar(x, shuffled, yerr=[[shuffled - low], [high - shuffled]], fmt="o", color="tab:blue", capsize=3)
        axis.plot(x, f["benchmark_own_mc_accuracy"], "s", color="tab:orange")
        axis.annotate(label, (x, shuffled), textcoords="offset points", xytext=(6, -10), fontsize=8)
    axis.plot([], [], "o", color="tab:blue", label="shuffled, mean of 3 seeds (95 % interval)")
    axis.plot([], [], "s", color="tab:orange", label="own option order")
    axis.axhline(figures["teacher"]["shuffled_mc_accuracy"], color="grey", linestyle=":",
                 label="teacher one pass, shuffled")
    if "teacher_cyclic" in figures:  # the moonshot: what a one-pass model would have to learn
        axis.axhline(figures["teacher_cyclic"]["shuffled_mc_accuracy"], color="grey", linestyle="--",
                     label="teacher cyclic (4 passes), shuffled")
    axis.set(xlabel="seconds per question, x the teacher's one pass (same run)", ylabel="test MC accuracy",
             title=f"FSKU test split, {len(figures)} models, closed book")
    axis.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=labelled, action="append", default=[], help="LABEL=DIR, repeatable")
    parser.add_argument("--cyclic", action="append", default=[], metavar="LABEL",
                        help="also this model (teacher or a --model label) over cyclic rotations, repeatable")
    parser.add_argument("--speed-questions", type=int, default=48)
    parser.add_argument("--questions", type=int, default=None, help="only this many (a plumbing check)")
    parser.add_argument("--rescore", action="store_true",
                        help="answer every label again, even one whose record holds these answers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from fsku_kedro.evaluation.benchmark_scores import benchmark_scores
    from fsku_kedro.generation.store import ResponseStore
    from fsku_kedro.models.bundle import weights_key
    from fsku_kedro.models.compute_dtype import resolve_dtype
    from fsku_kedro.models.loading import load_any_model
    from fsku_kedro.prompt_templates import read_templates

    catalog = catalog_with_chunks(ENV)
    sets = held_out_sets(catalog, args.questions)
    if sets is None:
        print("FSKU benchmark files not found; nothing to score")
        return 2
    inference = typed(catalog, "inference")
    templates = read_templates(catalog.load("prompt_templates"))
    embedder = catalog.load("embedder")
    teacher = catalog.load("teacher_model")
    runs = {"teacher": (teacher, False)}
    for label, directory in args.model:
        runs[label] = (load_any_model(directory.resolve(), dtype=inference.dtype), False)
    unknown = sorted(set(args.cyclic) - set(runs))
    if unknown:
        parser.error(f"--cyclic names {unknown}, which are neither teacher nor a --model label ({sorted(runs)})")
    for label in args.cyclic:
        runs[f"{label}_cyclic"] = (runs[label][0], True)
    store = ResponseStore(PROGRESS)
    stamp = run_stamp()
    previous = result_path("held_out_test", by_cpu_kind=True)
    kept = json.loads(previous.read_text(encoding="utf-8"))["figures"] if previous.is_file() else {}
    figures: dict = {}
    for label, (bundle, cyclic) in runs.items():
        weights = weights_key(bundle.name, bundle.model)
        reused = None if args.rescore else recorded_entry(kept.get(label), weights, cyclic, sets)
        if reused:
            print(f"{label}: the record holds these answers (run of {reused['run'].get('date')}); timing it only")
            figures[label] = {**reused, "timed": stamp}
            continue
        scores, answers = benchmark_scores(bundle, sets, templates, embedder, inference, store, cyclic=cyclic)
        where = Path(bundle.path).resolve() if bundle.path else None
        figures[label] = {"model": bundle.name, "cyclic": cyclic, "run": stamp,
                          "directory": where.relative_to(ROOT).as_posix() if where and where.is_relative_to(ROOT)
                          else bundle.path, "weights": weights, **scores,
                          **over_seeds(scores, "mc_accuracy"), **over_seeds(scores, "negative_mc_accuracy"),
                          "answers": report.answer_records(answers, sets)}
    questions = sets["shuffled_0"][0][:args.speed_questions]
    for label, seconds in seconds_per_question(runs, questions, templates, inference).items():
        figures[label]["seconds_per_question"] = seconds
    for label in runs:
        figures[label]["time_ratio_to_teacher"] = (figures[label]["seconds_per_question"]
                                                   / figures["teacher"]["seconds_per_question"])
    counts = {order: len(asked) for order, (asked, _) in sets.items()}
    context = {"label": "real models", "questions": counts, "dtype": resolve_dtype(inference.dtype),
               "evaluation": "every MC question of the FSKU benchmark's test split (outside the settings slice and "
               "the validation questions), options in own order and shuffled by seeds 0, 1 and 2 (mean and a 95 % "
               "t interval over the seeds), served path, closed book, one pass unless cyclic",
               "speed": f"the first {len(questions)} questions shuffled by seed 0, the models of one run taking turns "
               "in two halves (A B ... B A), without stored answers; time_ratio_to_teacher is within that run"}
    path = None
    if args.questions is None:  # a plumbing check must not replace the record of the whole test split
        path = write_result("held_out_test", {**kept, **figures}, by_cpu_kind=True, **context)
        plot_frontier({**kept, **figures}, path.with_suffix(".png"))
    print(f"\nFSKU test split MC ({cpu_line()}), real models, {counts['own']} questions\n")
    print_table(["label", "model", "own order", "shuffled (3 seeds)", "95 % interval", "negated stems, shuffled",
                 "seconds per question", "x teacher"], [
        [label, f["model"], f"{f['benchmark_own_mc_accuracy']:.3f}", f"{f['shuffled_mc_accuracy']:.3f}",
         "{:.3f} to {:.3f}".format(*f["shuffled_mc_accuracy_interval"]),
         f"{f['shuffled_negative_mc_accuracy']:.3f}" if "shuffled_negative_mc_accuracy" in f else "",
         f"{f['seconds_per_question']:.2f}", f"{f['time_ratio_to_teacher']:.2f}"]
        for label, f in figures.items()])
    print(f"\n{'recorded in ' + str(path.relative_to(ROOT)) if path else 'a plumbing check, not recorded'}")
    moonshot(figures)
    return max([0, *targets(figures, [label for label, _ in args.model])])


if __name__ == "__main__":
    sys.exit(main())
