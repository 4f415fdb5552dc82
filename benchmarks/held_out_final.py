"""A distilled student against its teacher on every FSKU benchmark multiple-choice question outside
the settings slice (800 of 1000), in the benchmark's own option order and with options shuffled
(seed 0, as validation shuffles them), one pass, closed book, through the path validation scores
(evaluation/benchmark_scores.py) in ``qwen_coder_cpu``; and each model's seconds per question
measured in the same run.

    python benchmarks/held_out_final.py --student DIR [--baseline DIR] [--speed-questions 48] [--questions N]

``--student`` is a model directory (a version of ``distilled_student``); the teacher is the
environment's ``teacher_model``. ``--baseline`` adds the undistilled student (the pruned model the
distillation started from, ``student_model``) as a third model, scored and timed alike. Answers
resume from data/qwen_coder_cpu/08_reporting/held_out_final.progress.jsonl, keyed by each model's
weights, so a killed run redoes only unfinished batches. The speed part answers the first
``--speed-questions`` of them again without the store, the models taking turns in blocks of 8, so
that whatever else runs on the cores slows all alike. ``--questions N`` is a plumbing check on N of
them: its figures are printed, not recorded.

Record: benchmarks/results/held_out_final.<cpu kind>.json. Targets (the moonshot): the student's
single-pass accuracy in own order at least the teacher's, and fewer seconds per question; with a
baseline, also the distilled student above the undistilled one with options shuffled. Exits 1 when one
is missed, 2 when the benchmark files are absent.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, catalog_with_chunks, cpu_line, print_table, verdict, write_result

ENV = "qwen_coder_cpu"
PROGRESS = ROOT / "data" / ENV / "08_reporting" / "held_out_final.progress.jsonl"
ORDERS = ("own", "shuffled")
BLOCK = 8


def held_out_sets(catalog, limit: int | None):
    """The MC questions outside the settings slice (``limit``: that many, by a seeded hash), per option
    order; None without the benchmark."""
    from fsku_kedro.evaluation.fsku_benchmark import held_out_benchmark
    from fsku_kedro.parameters.distillation import HeldOutBenchmarkSettings

    mc = catalog.load("fsku_benchmark_mc")
    if mc.empty:
        return None
    settings = HeldOutBenchmarkSettings(mc_questions=limit or len(mc), descriptive_questions=0, option_orders=list(ORDERS))
    return held_out_benchmark(mc, catalog.load("fsku_benchmark_mc_answers"), catalog.load("fsku_benchmark_descriptive"),
                              settings)


def seconds_per_question(bundles: dict, questions: list, templates: dict, inference) -> dict[str, float]:
    """Mean answering seconds per question of each model on ``questions``, taking turns in blocks."""
    from fsku_kedro.answering.batch_runner import answer_questions
    from fsku_kedro.answering.prompts import PreparedQuestion
    from fsku_kedro.evaluation.benchmark_scores import served_settings

    served = served_settings(inference)
    spent = dict.fromkeys(bundles, 0.0)
    for start in range(0, len(questions), BLOCK):
        block = [PreparedQuestion(q) for q in questions[start:start + BLOCK]]
        for name, bundle in bundles.items():
            rows = answer_questions(block, bundle, templates, served, store=None, show_progress=False)
            spent[name] += sum(row.inference_time for row in rows)
    return {name: seconds / len(questions) for name, seconds in spent.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, required=True, help="the distilled student's model directory")
    parser.add_argument("--baseline", type=Path, default=None, help="the undistilled student's model directory")
    parser.add_argument("--speed-questions", type=int, default=48)
    parser.add_argument("--questions", type=int, default=None, help="only this many (a plumbing check)")
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
    inference = catalog.load("params:inference")
    templates = read_templates(catalog.load("prompt_templates"))
    embedder = catalog.load("embedder")
    teacher = catalog.load("teacher_model")
    student = load_any_model(args.student.resolve(), dtype=inference.dtype)
    bundles = {"student": student, "teacher": teacher}
    if args.baseline is not None:
        bundles["undistilled"] = load_any_model(args.baseline.resolve(), dtype=inference.dtype)
    store = ResponseStore(PROGRESS)
    figures: dict = {}
    for role, bundle in bundles.items():
        scores, _ = benchmark_scores(bundle, sets, templates, embedder, inference, store)
        figures[role] = {"model": bundle.name, "directory": str(Path(bundle.path).resolve().relative_to(ROOT))
                         if Path(bundle.path).resolve().is_relative_to(ROOT) else bundle.path,
                         "weights": weights_key(bundle.name, bundle.model), **scores}
    questions = sets["shuffled"][0][:args.speed_questions]
    for role, seconds in seconds_per_question(bundles, questions, templates, inference).items():
        figures[role]["seconds_per_question"] = seconds
    counts = {order: len(asked) for order, (asked, _) in sets.items()}
    context = {"questions": counts, "dtype": resolve_dtype(inference.dtype),
               "evaluation": "every FSKU benchmark MC question outside the settings slice (200 MC, seed 0), "
               "options in own order and shuffled (seed 0), served path, closed book, one pass",
               "speed": f"the first {len(questions)} shuffled questions, the models taking turns in blocks of "
               f"{BLOCK}, without stored answers"}
    # A run on fewer questions checks the plumbing; it must not replace the record of all 800.
    path = write_result("held_out_final", figures, by_cpu_kind=True, **context) if args.questions is None else None
    columns = [f"benchmark_{order}_mc_accuracy" for order in ORDERS] + [
        f"benchmark_{order}_negative_mc_accuracy" for order in ORDERS]
    print(f"\nHeld-out FSKU MC ({cpu_line()}), real models, {counts} questions, one pass\n")
    print_table(["role", "model", *columns, "seconds_per_question"], [
        [role, f["model"], *(f"{f[c]:.3f}" if c in f else "" for c in columns), f"{f['seconds_per_question']:.2f}"]
        for role, f in figures.items()])
    ratio = figures["student"]["seconds_per_question"] / figures["teacher"]["seconds_per_question"]
    where = f"recorded in {path.relative_to(ROOT)}" if path else "a plumbing check, not recorded"
    print(f"\nstudent / teacher seconds per question: {ratio:.2f}; {where}")
    own, shuffled = "benchmark_own_mc_accuracy", "benchmark_shuffled_mc_accuracy"
    checks = [
        verdict(figures["student"][own] >= figures["teacher"][own],
                f"the student's own-order accuracy {figures['student'][own]:.3f} >= the teacher's "
                f"{figures['teacher'][own]:.3f}"),
        verdict(ratio < 1.0, f"the student answers faster ({ratio:.2f} of the teacher's seconds per question)"),
    ]
    if "undistilled" in figures:
        checks.append(verdict(figures["student"][shuffled] > figures["undistilled"][shuffled],
                              f"distillation helps: shuffled accuracy {figures['student'][shuffled]:.3f} > "
                              f"{figures['undistilled'][shuffled]:.3f} before it"))
    return max(checks)


if __name__ == "__main__":
    sys.exit(main())
