"""Retrieval quality of the knowledge base on the labelled sample set.

Runs the knowledge_base pipeline in a Kedro session (the project's own configuration, so the
run is also logged to MLflow) and checks the target: hybrid recall@5 >= max(BM25, dense) recall@5.

    python benchmarks/retrieval_quality.py [--env local]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from report import print_table, verdict

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=None)
    args = parser.parse_args()
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT, env=args.env) as session:
        session.run(pipeline_name="knowledge_base")
        report = session.load_context().catalog.load("retrieval_report")
    columns = [c for c in report.columns if c.startswith("recall@")] + ["mrr"]
    print(f"{int(report['questions'].iloc[0])} labelled questions, {int(report['unresolved'].iloc[0])} unresolved")
    print_table(
        ["retriever", *columns],
        [[row["retriever"], *(f"{row[c]:.3f}" for c in columns)] for row in report.to_dict("records")],
    )
    by_name = report.set_index("retriever")["recall@5"]
    best_single = max(by_name["bm25"], by_name["dense"])
    return verdict(
        by_name["hybrid"] >= best_single,
        f"hybrid recall@5 {by_name['hybrid']:.3f}, target >= max(BM25, dense) {best_single:.3f}",
    )


if __name__ == "__main__":
    sys.exit(main())
