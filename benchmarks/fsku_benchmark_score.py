"""The FSKU benchmark score of the default models: every question of ../shared/fsku-benchmark
(1000 multiple choice, 108 descriptive), answered by the inference pipeline's `fsku_benchmark` stages.

    python benchmarks/fsku_benchmark_score.py [--mc-limit N] [--descriptive-limit N]

Runs the model-loading node and the `fsku_benchmark` nodes of the inference pipeline with the limits lifted, then
prints the per-domain report it wrote. Answers are resumable: a second call reuses them.
No target: a 135M English model is expected near chance (0.25 on four options); the figure is
reported as measured. Exits 2 when the benchmark files are absent.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import pandas as pd
from inference_runs import ROOT
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from report import print_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mc-limit", type=int, default=None)
    parser.add_argument("--descriptive-limit", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bootstrap_project(ROOT)
    limits = {"mc_limit": args.mc_limit, "descriptive_limit": args.descriptive_limit}
    with KedroSession.create(project_path=ROOT, runtime_params={"inference": {"fsku_benchmark": limits}}) as session:
        if session.load_context().catalog.load("fsku_benchmark_mc").empty:
            print("FSKU benchmark files not found; nothing to score")
            return 2
        start = time.perf_counter()
        nodes = [n.name for n in pipelines["inference"].nodes if n.name.startswith("inference.fsku_benchmark.")]
        session.run(pipeline_name="inference", node_names=["inference.load_inference_model", *nodes])
        seconds = time.perf_counter() - start
    report_dir = ROOT / "data/08_reporting/fsku_benchmark/evaluation_report.csv"
    report = pd.read_csv(sorted(report_dir.iterdir())[-1] / "evaluation_report.csv")
    columns = ["domain", "questions", "mc_accuracy", "cosine_similarity", "keyword_recall", "descriptive_score",
               "fsku_score", "fallback_share"]
    print(f"FSKU benchmark, default models, {seconds:.0f} s ({seconds / report.loc[0, 'questions']:.2f} s/question)\n")
    print_table(columns, [[f"{v:.4f}" if isinstance(v, float) else v for v in row]
                          for row in report[columns].itertuples(index=False)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
