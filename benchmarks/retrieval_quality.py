"""Retrieval quality of the knowledge base, with the project's embedder and retriever.

1. The labelled sample set: runs the knowledge_base pipeline in a Kedro session (the project's own
   configuration, logged to MLflow) and reads its retrieval report. Targets: dense recall@5 >= 0.6,
   and hybrid MRR strictly above BM25's.
2. Fusion on the sample set: the weighted sum of min-max scaled scores at several weights, and
   reciprocal rank fusion (rrf), each through the project's evaluate_retrieval node.
3. The FSKU benchmark's 108 descriptive items (../shared/fsku-benchmark, read through the catalog;
   skipped when absent): each question retrieves its own reference answer among all 108, through
   the project's BM25 and FAISS indices and hybrid retriever. Target: hybrid R@5 >= max(BM25, dense).

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
FUSIONS = [("minmax", 0.85, 0.15), ("minmax", 0.7, 0.3), ("minmax", 0.5, 0.5), ("minmax", 0.3, 0.7), ("rrf", 1.0, 1.0)]


def _rows(report, label: str | None = None) -> list[list[str]]:
    columns = [c for c in report.columns if c.startswith("recall@")] + ["mrr"]
    return [[label or row["retriever"], *(f"{row[c]:.3f}" for c in columns)] for row in report.to_dict("records")]


def descriptive_task(catalog, settings, variants=()) -> dict[str, dict[str, float]] | None:
    """R@1/5/10 and MRR of each retriever when each descriptive question looks for its own reference;
    ``variants`` (label, settings) add the hybrid retriever under other fusion settings."""
    import pandas as pd

    from fsku_kedro.knowledge.cleaning import normalize_for_search
    from fsku_kedro.knowledge.dense import DenseIndex
    from fsku_kedro.knowledge.evaluation import hit_at_k, reciprocal_rank
    from fsku_kedro.knowledge.morphemes import MorphemeTokenizer
    from fsku_kedro.knowledge.retrieval import HybridRetriever
    from fsku_kedro.knowledge.sparse import SparseIndex

    items = catalog.load("fsku_benchmark_descriptive")
    if items.empty:
        return None
    ids = [f"ref{i:03d}" for i in range(len(items))]
    references = items["Answer"].astype(str).tolist()
    embedder = catalog.load("embedder")
    indices = catalog.load("params:knowledge_base")  # the indices as the knowledge base builds them
    sparse, _ = SparseIndex.build(ids, [normalize_for_search(t) for t in references],
                                  MorphemeTokenizer(indices.bm25.tokenizer),
                                  **indices.bm25.model_dump(include={"k1", "b", "method"}))
    dense = DenseIndex.build(ids, embedder.encode(references, "passage"), embedder.name, **indices.dense.model_dump())
    chunks = pd.DataFrame({"chunk_id": ids, "content": references})
    queries = items["Question"].astype(str).tolist()
    vectors = embedder.encode(queries, "query")
    results = {}
    runs = [(mode, mode, settings) for mode in ("bm25", "dense", "hybrid")]
    runs += [(label, "hybrid", variant) for label, variant in variants]
    for name, mode, variant in runs:
        retriever = HybridRetriever.from_settings(chunks, sparse, dense, embedder, None, variant)
        ranked = retriever.retrieve(queries, k=10, mode=mode, query_vectors=vectors)
        found = [[hit.chunk_id for hit in row] for row in ranked]
        results[name] = {f"recall@{k}": sum(hit_at_k(r, {i}, k) for r, i in zip(found, ids)) / len(ids)
                         for k in (1, 5, 10)}
        results[name]["mrr"] = sum(reciprocal_rank(r, {i}) for r, i in zip(found, ids)) / len(ids)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=None)
    args = parser.parse_args()
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT, env=args.env) as session:
        session.run(pipeline_names=["knowledge_base"])
    with KedroSession.create(project_path=ROOT, env=args.env) as session:
        catalog = session.load_context().catalog
        report = catalog.load("retrieval_report")
        settings = catalog.load("params:retrieval")
        embedder = catalog.load("embedder")
        print(f"embedder {embedder.name}; fusion {settings.normalisation}, weights bm25 {settings.weights.bm25} / "
              f"dense {settings.weights.dense}\n")
        print(f"1. sample set: {int(report['questions'].iloc[0])} labelled questions, "
              f"{int(report['unresolved'].iloc[0])} unresolved\n")
        columns = [c for c in report.columns if c.startswith("recall@")] + ["mrr"]
        print_table(["retriever", *columns], _rows(report))

        from fsku_kedro.parameters.retrieval import FusionWeights
        from fsku_kedro.pipelines.knowledge_base.nodes import evaluate_retrieval

        inputs = [catalog.load(name) for name in ("chunks", "bm25_index", "faiss_index")]
        questions, labels = catalog.load("sample_questions"), catalog.load("sample_labels")
        ks = catalog.load("params:knowledge_base.report")
        fusion_rows, variants = [], []
        for method, bm25, dense in FUSIONS:
            variant = settings.model_copy(update={"normalisation": method,
                                                  "weights": FusionWeights(bm25=bm25, dense=dense)})
            variants.append((f"hybrid {method} {bm25}/{dense}", variant))
            fused, _, _ = evaluate_retrieval(*inputs, embedder, None, questions, labels, variant, ks)
            hybrid = fused[fused["retriever"] == "hybrid"]
            fusion_rows += _rows(hybrid, f"hybrid {method} {bm25}/{dense}")
        print("\n2. fusion on the sample set\n")
        print_table(["fusion", *columns], fusion_rows)

        descriptive = descriptive_task(catalog, settings, variants)
    by_name = report.set_index("retriever")
    checks = [
        (by_name.loc["dense", "recall@5"] >= 0.6, f"sample dense recall@5 {by_name.loc['dense', 'recall@5']:.3f} >= 0.6"),
        (by_name.loc["hybrid", "mrr"] > by_name.loc["bm25", "mrr"],
         f"sample hybrid MRR {by_name.loc['hybrid', 'mrr']:.3f} > BM25 MRR {by_name.loc['bm25', 'mrr']:.3f}"),
    ]
    if descriptive is None:
        print("\n3. FSKU descriptive task: benchmark files not found, skipped")
    else:
        print("\n3. FSKU descriptive items: each of the 108 questions retrieves its own reference answer "
              "(bm25 / dense / hybrid with the configured fusion, then hybrid under each fusion of 2.)\n")
        print_table(["retriever", "recall@1", "recall@5", "recall@10", "mrr"],
                    [[mode, *(f"{v:.3f}" for v in scores.values())] for mode, scores in descriptive.items()])
        best = max(descriptive["bm25"]["recall@5"], descriptive["dense"]["recall@5"])
        checks.append((descriptive["hybrid"]["recall@5"] >= best,
                       f"descriptive hybrid R@5 {descriptive['hybrid']['recall@5']:.3f} >= max(BM25, dense) {best:.3f}"))
    print()
    return max(verdict(bool(met), text) for met, text in checks)


if __name__ == "__main__":
    sys.exit(main())
