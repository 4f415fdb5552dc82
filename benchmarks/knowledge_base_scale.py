"""Knowledge base at scale: BM25 + FAISS over synthetic chunks made from corpus sentences.

Measures full build time, index memory, query latency p50/p95 (BM25, dense and hybrid, with
and without query embedding), and an incremental rebuild after 1 % of documents change. The
embedder and the fusion settings are the project's (catalog `embedder`, parameters `retrieval`).
Targets: hybrid p50 <= 20 ms without embedding; incremental rebuild >= 10x faster than full.

    python benchmarks/knowledge_base_scale.py --chunks 100000
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time

import faiss
import numpy as np
from corpus_sentences import corpus_sentences
from report import print_table, verdict

from fsku_kedro.knowledge.cleaning import normalize_for_search
from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.embedding import embed_with_cache
from fsku_kedro.knowledge.morphemes import MorphemeTokenizer
from fsku_kedro.knowledge.retrieval import HybridRetriever
from fsku_kedro.knowledge.sparse import SparseIndex

logger = logging.getLogger("benchmark.scale")


def synthetic_chunks(sentences: list[str], n_chunks: int, per_doc: int, seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sentences), size=(n_chunks, 2))
    texts = [f"{sentences[a]} {sentences[b]} (문서 {i // per_doc})" for i, (a, b) in enumerate(picks)]
    return texts, [i // per_doc for i in range(n_chunks)]


def build(texts, ids, tokenizer, embedder, morpheme_cache, embedding_cache, dense_params):
    timings = {}
    start = time.perf_counter()
    search_texts = [normalize_for_search(t) for t in texts]
    timings["normalise"] = time.perf_counter() - start
    start = time.perf_counter()
    sparse, morpheme_cache = SparseIndex.build(ids, search_texts, tokenizer, morpheme_cache=morpheme_cache)
    timings["bm25"] = time.perf_counter() - start
    start = time.perf_counter()
    vectors, embedding_cache, embedded = embed_with_cache(texts, embedder, embedding_cache)
    timings["embed"] = time.perf_counter() - start
    start = time.perf_counter()
    dense = DenseIndex.build(ids, vectors, embedder.name, **dense_params)
    timings["faiss"] = time.perf_counter() - start
    timings["total"] = sum(timings.values())
    return sparse, dense, morpheme_cache, embedding_cache, embedded, timings


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50) * 1000), float(np.percentile(samples, 95) * 1000)


def project_embedder(env: str | None):
    """The catalog's `embedder` and the `retrieval` settings of the project (environment ``env``)."""
    from pathlib import Path

    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    root = Path(__file__).resolve().parents[1]
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env) as session:
        catalog = session.load_context().catalog
        return catalog.load("embedder"), catalog.load("params:retrieval")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--chunks-per-doc", type=int, default=10)
    parser.add_argument("--changed", type=float, default=0.01, help="share of documents changed")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--env", help="Kedro environment whose `embedder` and `retrieval` settings are used")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    sentences = corpus_sentences()
    texts, doc_of = synthetic_chunks(sentences, args.chunks, args.chunks_per_doc, args.seed)
    ids = [f"c{i:06d}" for i in range(len(texts))]
    tokenizer = MorphemeTokenizer("kiwi")
    embedder, settings = project_embedder(args.env)
    dense_params = {"flat_threshold": 20_000, "nlist_factor": 4.0, "target_recall": 0.95, "seed": args.seed}
    logger.info("Full build over %d chunks from %d corpus sentences", len(texts), len(sentences))
    sparse, dense, morphemes, embeddings, _, full = build(texts, ids, tokenizer, embedder, {}, {}, dense_params)

    faiss_bytes = faiss.serialize_index(dense.index).nbytes
    scores = sparse.retriever.scores
    bm25_bytes = sum(scores[key].nbytes for key in ("data", "indices", "indptr"))

    rng = np.random.default_rng(args.seed + 1)
    queries = [sentences[i] for i in rng.integers(0, len(sentences), size=args.queries)]
    query_vectors = embedder.encode(queries, "query")
    retriever = HybridRetriever(sparse, dense, embedder, weights=settings.weights.model_dump(),
                                candidate_k=settings.candidate_k, normalisation=settings.normalisation,
                                rrf_k=settings.rrf_k)
    latency: dict[str, list[float]] = {name: [] for name in ["bm25", "dense", "dense+embed", "hybrid", "hybrid+embed"]}
    retriever.retrieve(queries[:3], k=10)  # warm-up
    for query, vector in zip(queries, query_vectors):
        for name, call in {
            "bm25": lambda: sparse.search(query, 10),
            "dense": lambda: dense.search(vector[None, :], 10),
            "dense+embed": lambda: dense.search(embedder.encode([query], "query"), 10),
            "hybrid": lambda: retriever.retrieve([query], k=10, query_vectors=vector[None, :]),
            "hybrid+embed": lambda: retriever.retrieve([query], k=10),
        }.items():
            start = time.perf_counter()
            call()
            latency[name].append(time.perf_counter() - start)

    # Change 1 % of documents: every chunk of a changed document gets a new sentence.
    n_docs = max(doc_of) + 1
    changed_docs = set(rng.choice(n_docs, size=max(1, int(n_docs * args.changed)), replace=False).tolist())
    changed_texts = [
        f"{text} {sentences[(i * 7) % len(sentences)]}" if doc_of[i] in changed_docs else text
        for i, text in enumerate(texts)
    ]
    logger.info("Incremental rebuild after changing %d of %d documents", len(changed_docs), n_docs)
    *_, embedded, incremental = build(changed_texts, ids, tokenizer, embedder, morphemes, embeddings, dense_params)

    rows = [
        ("chunks", f"{len(texts):,}", ""),
        ("FAISS index", dense.factory + (f", nprobe {dense.nprobe} (recall@10 {dense.tuned_recall:.3f})" if dense.nprobe else ""), ""),
        ("full build: normalise / BM25 / embed / FAISS (s)",
         " / ".join(f"{full[k]:.1f}" for k in ("normalise", "bm25", "embed", "faiss")), ""),
        ("full build total (s)", f"{full['total']:.1f}", ""),
        ("index memory: FAISS / BM25 (MB)", f"{faiss_bytes / 2**20:.1f} / {bm25_bytes / 2**20:.1f}", ""),
        ("peak RSS (MB)", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}", ""),
    ]
    for name, samples in latency.items():
        p50, p95 = percentiles(samples)
        target = "<= 20 ms" if name == "hybrid" else ""
        rows.append((f"query latency {name}: p50 / p95 (ms)", f"{p50:.2f} / {p95:.2f}", target))
    speedup = full["total"] / incremental["total"]
    rows.append((
        f"incremental rebuild, {len(changed_docs)} docs ({embedded} chunks re-embedded) (s)",
        f"{incremental['total']:.1f} (BM25 {incremental['bm25']:.1f}, embed {incremental['embed']:.1f}, "
        f"FAISS {incremental['faiss']:.1f})",
        "",
    ))
    rows.append(("full / incremental", f"{speedup:.1f}x", ">= 10x"))

    print_table(["measure", "value", "target"], rows)
    hybrid_p50 = percentiles(latency["hybrid"])[0]
    return max(
        verdict(hybrid_p50 <= 20.0, f"hybrid p50 {hybrid_p50:.2f} ms without embedding, target <= 20 ms"),
        verdict(speedup >= 10.0, f"incremental rebuild {speedup:.1f}x faster than full, target >= 10x"),
    )


if __name__ == "__main__":
    sys.exit(main())
