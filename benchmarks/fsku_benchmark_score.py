"""The FSKU benchmark score: every question of ../shared/fsku-benchmark (1000 multiple choice,
108 descriptive), answered by the inference pipeline's `fsku_benchmark` stages.

    python benchmarks/fsku_benchmark_score.py                       # the default models (no target)
    python benchmarks/fsku_benchmark_score.py --env qwen_coder_cpu \\
        --params model_dirs.inference=data/06_models/base/qwen_coder_teacher --target 0.60

Runs the model-loading node and the `fsku_benchmark` nodes of the inference pipeline in the given
environment with the limits lifted (``--params`` as `kedro run` takes them, dotted keys), then prints
the per-domain report it wrote, the seconds per question, and the MC accuracy on all questions and
on those outside the fixed slice that benchmarks/real_teacher_quality.py used to choose settings
(200 MC, seed 0). Answers are resumable: a second call reuses them. With ``--target``, exits 1
unless both MC accuracies reach it. Exits 2 when the benchmark files are absent.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import yaml
from inference_runs import ROOT
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from report import print_table, verdict

from fsku_kedro.evaluation.fsku_benchmark import benchmark_set
from fsku_kedro.parameters.inference import BenchmarkSliceSettings

SETTINGS_SLICE = BenchmarkSliceSettings(mc_limit=200, descriptive_limit=20, seed=0)


def runtime_params(pairs: list[str], limits: dict) -> dict:
    """``key.sub=value`` pairs (values read as YAML) as nested runtime parameters, plus the lifted limits."""
    nested: dict = {"inference": {"fsku_benchmark": dict(limits)}}
    for pair in pairs:
        key, _, value = pair.partition("=")
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return nested


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", help="Kedro environment (default: base)")
    parser.add_argument("--params", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--mc-limit", type=int, default=None)
    parser.add_argument("--descriptive-limit", type=int, default=None)
    parser.add_argument("--target", type=float, help="MC accuracy to reach on all questions and outside the slice")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bootstrap_project(ROOT)
    limits = {"mc_limit": args.mc_limit, "descriptive_limit": args.descriptive_limit}
    params = runtime_params(args.params, limits)
    with KedroSession.create(project_path=ROOT, env=args.env, runtime_params=params) as session:
        catalog = session.load_context().catalog
        mc = catalog.load("fsku_benchmark_mc")
        if mc.empty:
            print("FSKU benchmark files not found; nothing to score")
            return 2
        answers, descriptive = catalog.load("fsku_benchmark_mc_answers"), catalog.load("fsku_benchmark_descriptive")
        start = time.perf_counter()
        nodes = [n.name for n in pipelines["inference"].nodes if n.name.startswith("inference.fsku_benchmark.")]
        session.run(pipeline_name="inference", node_names=["inference.load_inference_model", *nodes])
        seconds = time.perf_counter() - start
        report = catalog.load("fsku_benchmark.evaluation_report")
        rows = catalog.load("fsku_benchmark.submission_rows")
    _, labels = benchmark_set(mc, answers, descriptive, BenchmarkSliceSettings(**limits))
    slice_ids = {q.ID for q in benchmark_set(mc, answers, descriptive, SETTINGS_SLICE)[0]}
    key = {label.ID: label.answer for label in labels}
    given = rows[rows["question_type"] == "multiple_choice"].assign(
        correct=lambda f: [str(a) == key.get(i) for i, a in zip(f["ID"], f["answer"].astype(str))])
    outside = given[~given["ID"].isin(slice_ids)]
    all_mc, outside_mc = float(given["correct"].mean()), float(outside["correct"].mean()) if len(outside) else None

    columns = ["domain", "questions", "mc_accuracy", "cosine_similarity", "keyword_recall", "descriptive_score",
               "fsku_score", "fallback_share"]
    env = args.env or "base"
    print(f"FSKU benchmark, environment {env} {' '.join(args.params)}: {seconds:.0f} s "
          f"({seconds / report.loc[0, 'questions']:.2f} s/question, answers already saved are reused)\n")
    print_table(columns, [[f"{v:.4f}" if isinstance(v, float) else v for v in row]
                          for row in report[columns].itertuples(index=False)])
    print(f"\nMC accuracy: {all_mc:.4f} on {len(given)} questions; "
          + (f"{outside_mc:.4f} on the {len(outside)} outside the settings slice" if outside_mc is not None
             else "no question outside the settings slice"))
    answered = given["answer"].astype(str).value_counts().sort_index().to_dict()
    expected = given["ID"].map(key).value_counts().sort_index().to_dict()
    print(f"answered {answered}; answer key {expected}")
    if args.target is None:
        return 0
    codes = [verdict(all_mc >= args.target, f"MC accuracy {all_mc:.4f} >= {args.target} on all questions")]
    if outside_mc is not None:
        codes.append(verdict(outside_mc >= args.target,
                             f"MC accuracy {outside_mc:.4f} >= {args.target} outside the settings slice"))
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
