"""Choice scoring over cyclic rotations with the rows' shared prefix run once, against every row run
whole, on the same questions and batches, in one run.

    python benchmarks/shared_prefix_speed.py [--env qwen_coder_cpu] [--questions 24] [--batch-size 8]

Every rotation of a question repeats the prompt up to its first option; the teacher's choice targets
and cyclic answering score all of them. The environment's teacher scores a fixed seeded slice of the
FSKU benchmark's multiple-choice questions (../shared/fsku-benchmark) in the served closed-book
template, each under every cyclic rotation of its options, once with ``share_prefix=False`` and
once with ``share_prefix=True``. Real models; the compute dtype is the environment's (``auto``).

Target: sharing at least 1.3x faster, the same cyclic answer for every question, and option
probabilities within 1e-3 in float32 (2e-2 in bfloat16, whose rounding follows the batch shape).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_line, print_table, verdict, write_result

TARGET = 1.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="qwen_coder_cpu")
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from fsku_kedro.answering.choice_scoring import score_choices
    from fsku_kedro.answering.debias import cyclic_scores
    from fsku_kedro.distillation.choice_targets import served_chat
    from fsku_kedro.evaluation.fsku_benchmark import benchmark_set
    from fsku_kedro.parameters.inference import BenchmarkSliceSettings
    from fsku_kedro.prompt_templates import read_templates

    bootstrap_project(ROOT)
    catalog = KedroSession.create(project_path=ROOT, env=None if args.env == "base" else args.env).load_context().catalog
    mc = catalog.load("fsku_benchmark_mc")
    if not len(mc):
        print("the FSKU benchmark is absent (../shared/fsku-benchmark); nothing to measure")
        return 0
    questions, _ = benchmark_set(mc, catalog.load("fsku_benchmark_mc_answers"),
                                 catalog.load("fsku_benchmark_descriptive").iloc[0:0],
                                 BenchmarkSliceSettings(mc_limit=args.questions))
    template = read_templates(catalog.load("prompt_templates"))["closed_book_multiple_choice"]
    teacher = catalog.load("teacher_model")
    dtype = str(next(teacher.model.parameters()).dtype).removeprefix("torch.")

    runs: dict[bool, dict] = {}
    for share in (False, True):
        calls: list[tuple[int, int]] = []
        handle = teacher.model.register_forward_pre_hook(
            lambda module, a, kwargs, calls=calls: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)

        def score(rotated, share=share):
            return [c.probabilities for c in score_choices(
                teacher, [served_chat(q, template) for q in rotated], [len(q.choices or {}) for q in rotated],
                batch_size=args.batch_size, share_prefix=share)]

        start = time.perf_counter()
        averaged = cyclic_scores(questions, score)
        seconds = time.perf_counter() - start
        handle.remove()
        runs[share] = {"seconds": seconds, "forward_passes": len(calls),
                       "token_positions": sum(rows * width for rows, width in calls), "scores": averaged}

    plain, shared = runs[False], runs[True]
    answers = [(max(a, key=a.get), max(b, key=b.get)) for a, b in zip(plain["scores"], shared["scores"])]
    same = sum(a == b for a, b in answers)
    difference = max(abs(torch.tensor([a[n] for n in sorted(a)]).softmax(0) - torch.tensor([b[n] for n in sorted(b)])
                         .softmax(0)).max().item() for a, b in zip(plain["scores"], shared["scores"]))
    speedup = plain["seconds"] / shared["seconds"]
    rows = sum(len(q.choices or {}) for q in questions)
    print(f"\n{len(questions)} FSKU MC questions, {rows} rotated rows, batch {args.batch_size}; teacher {teacher.name} "
          f"({dtype}); {cpu_line()}; real models\n")
    print_table(["rows run", "seconds", "s / question", "forward passes", "token positions"], [
        (name, f"{r['seconds']:.1f}", f"{r['seconds'] / len(questions):.2f}", r["forward_passes"],
         r["token_positions"]) for name, r in (("whole", plain), ("shared prefix once", shared))])
    print(f"\nspeed-up {speedup:.2f}x; same cyclic answer {same}/{len(questions)}; "
          f"largest option-probability difference {difference:.2e}")
    tolerance = 1e-3 if dtype == "float32" else 2e-2
    write_result("shared_prefix_speed", {
        "questions": len(questions), "rows": rows, "dtype": dtype, "speedup": round(speedup, 3),
        "same_answers": same, "max_probability_difference": difference,
        **{name: {k: v for k, v in r.items() if k != "scores"} for name, r in (("whole", plain), ("shared", shared))},
    }, by_cpu_kind=True, models={"teacher": teacher.name},
        settings={"env": args.env, "batch_size": args.batch_size, "template": "closed_book_multiple_choice"})
    return verdict(speedup >= TARGET and same == len(questions) and difference <= tolerance,
                   f"sharing >= {TARGET}x faster (measured {speedup:.2f}x), every cyclic answer the same "
                   f"({same}/{len(questions)}), probabilities within {tolerance:g} ({difference:.1e})")


if __name__ == "__main__":
    sys.exit(main())
