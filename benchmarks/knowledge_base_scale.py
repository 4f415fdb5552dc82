"""Knowledge base at scale: BM25 + FAISS over synthetic chunks made from corpus sentences.

Measures full build time, index memory, query latency p50/p95 (BM25, dense and hybrid, with
and without query embedding), and an incremental rebuild after 1 % of documents change. The
embedder and the fusion settings are the project's (catalog `embedder`, parameters `retrieval`).
Targets: hybrid p50 <= 20 ms without embedding; incremental rebuild >= 10x faster than full.
The full build's embeddings are saved in parts under --cache-dir with the seconds each took, so a
killed run restarted embeds only the missing parts; delete the folder for a fresh measurement.

    python benchmarks/knowledge_base_scale.py --chunks 100000
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from corpus_sentences import corpus_sentences
from report import print_table, verdict
from tqdm.auto import tqdm

from fsku_kedro.datasets.content_cache import ContentCacheDataset
from fsku_kedro.hashing import stable_hash
from fsku_kedro.knowledge.cleaning import normalize_for_search
from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.embedding import embed_with_cache
from fsku_kedro.knowledge.morphemes import MorphemeTokenizer
from fsku_kedro.knowledge.retrieval import HybridRetriever
from fsku_kedro.knowledge.sparse import SparseIndex

logger = logging.getLogger("benchmark.scale")
ROOT = Path(__file__).resolve().parents[1]


def synthetic_chunks(sentences: list[str], n_chunks: int, per_doc: int, seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sentences), size=(n_chunks, 2))
    texts = [f"{sentences[a]} {sentences[b]} (문서 {i // per_doc})" for i, (a, b) in enumerate(picks)]
    return texts, [i // per_doc for i in range(n_chunks)]


def embed_in_parts(texts: list[str], embedder, directory: Path, part_size: int) -> tuple[dict, float, int]:
    """Passage vectors of ``texts`` as an embedding cache, computed ``part_size`` texts at a time.

    Each finished part is saved under ``directory`` with the seconds it took. Returns the cache,
    the embedding seconds of all parts (earlier runs' included) and how many parts were reused.
    """
    seconds_file = directory / "seconds.json"
    seconds = json.loads(seconds_file.read_text()) if seconds_file.exists() else {}
    cache: dict = {}
    spent, reused = 0.0, 0
    for start in tqdm(range(0, len(texts), part_size), desc="embedding parts"):
        part = texts[start : start + part_size]
        name = stable_hash(embedder.name, *part)
        dataset = ContentCacheDataset(str(directory / f"{name}.parquet"))
        saved = dataset.load() if name in seconds else {}
        if len(saved) == len(set(part)):
            cache.update(saved)
            spent, reused = spent + seconds[name], reused + 1
            continue
        began = time.perf_counter()
        _, fresh, _ = embed_with_cache(part, embedder, {})
        seconds[name] = time.perf_counter() - began
        dataset.save(fresh)
        partial = seconds_file.with_suffix(".partial")
        partial.write_text(json.dumps(seconds))
        partial.replace(seconds_file)
        cache.update(fresh)
        spent += seconds[name]
    return cache, spent, reused


def build(texts, ids, tokenizer, embedder, morpheme_cache, embedding_cache, bm25_params, dense_params):
    timings = {}
    start = time.perf_counter()
    search_texts = [normalize_for_search(t) for t in texts]
    timings["normalise"] = time.perf_counter() - start
    start = time.perf_counter()
    sparse, morpheme_cache = SparseIndex.build(ids, search_texts, tokenizer, morpheme_cache=morpheme_cache,
                                               **bm25_params)
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
    """The catalog's `embedder`, and the `retrieval` and `knowledge_base` settings of the project
    (environment ``env``)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT, env=env) as session:
        catalog = session.load_context().catalog
        return catalog.load("embedder"), catalog.load("params:retrieval"), catalog.load("params:knowledge_base")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--chunks-per-doc", type=int, default=10)
    parser.add_argument("--changed", type=float, default=0.01, help="share of documents changed")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--env", help="Kedro environment whose `embedder` and `retrieval` settings are used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data/04_feature/knowledge_base_scale",
                        help="where the full build's embeddings are saved part by part, for resuming")
    parser.add_argument("--part-size", type=int, default=2_000, help="texts embedded per saved part")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    sentences = corpus_sentences()
    texts, doc_of = synthetic_chunks(sentences, args.chunks, args.chunks_per_doc, args.seed)
    ids = [f"c{i:06d}" for i in range(len(texts))]
    tokenizer = MorphemeTokenizer("kiwi")
    embedder, settings, knowledge_base = project_embedder(args.env)
    bm25_params = knowledge_base.bm25.model_dump(include={"k1", "b", "method"})
    dense_params = {**knowledge_base.dense.model_dump(), "seed": args.seed}
    logger.info("Full build over %d chunks from %d corpus sentences", len(texts), len(sentences))
    embeddings, embed_seconds, reused = embed_in_parts(texts, embedder, args.cache_dir, args.part_size)
    sparse, dense, morphemes, embeddings, _, full = build(texts, ids, tokenizer, embedder, {}, embeddings,
                                                          bm25_params, dense_params)
    full["embed"] += embed_seconds  # the build itself only looked the vectors up
    full["total"] += embed_seconds

    faiss_bytes = faiss.serialize_index(dense.index).nbytes
    scores = sparse.retriever.scores
    bm25_bytes = sum(scores[key].nbytes for key in ("data", "indices", "indptr"))

    rng = np.random.default_rng(args.seed + 1)
    queries = [sentences[i] for i in rng.integers(0, len(sentences), size=args.queries)]
    query_vectors = embedder.encode(queries, "query")
    retriever = HybridRetriever(sparse, dense, embedder, weights=settings.weights.model_dump(),
                                candidate_k=settings.candidate_k, normalisation=settings.normalisation,
                                rrf_k=settings.rrf_k, rerank_k=settings.rerank_k)
    latency: dict[str, list[float]] = {name: [] for name in ["bm25", "dense", "dense+embed", "hybrid", "hybrid+embed"]}
    retriever.retrieve(queries[:3], k=10, mode="hybrid")  # warm-up
    calls = {
        "bm25": lambda query, vector: sparse.search(query, 10),
        "dense": lambda query, vector: dense.search(vector[None, :], 10),
        "dense+embed": lambda query, vector: dense.search(embedder.encode([query], "query"), 10),
        "hybrid": lambda query, vector: retriever.retrieve([query], k=10, mode="hybrid",
                                                           query_vectors=vector[None, :]),
        "hybrid+embed": lambda query, vector: retriever.retrieve([query], k=10, mode="hybrid"),
    }
    for query, vector in zip(queries, query_vectors):
        for name, call in calls.items():
            start = time.perf_counter()
            call(query, vector)
            latency[name].append(time.perf_counter() - start)

    # Change 1 % of documents: every chunk of a changed document gets a new sentence.
    n_docs = max(doc_of) + 1
    changed_docs = set(rng.choice(n_docs, size=max(1, int(n_docs * args.changed)), replace=False).tolist())
    changed_texts = [
        f"{text} {sentences[(i * 7) % len(sentences)]}" if doc_of[i] in changed_docs else text
        for i, text in enumerate(texts)
    ]
    logger.info("Incremental rebuild after changing %d of %d documents", len(changed_docs), n_docs)
    *_, embedded, incremental = build(changed_texts, ids, tokenizer, embedder, morphemes, embeddings, bm25_params,
                                      dense_params)

    rows = [
        ("chunks", f"{len(texts):,}", ""),
        ("FAISS index", dense.factory + (f", nprobe {dense.nprobe} (recall@10 {dense.tuned_recall:.3f})" if dense.nprobe else ""), ""),
        ("full build: normalise / BM25 / embed / FAISS (s)",
         " / ".join(f"{full[k]:.1f}" for k in ("normalise", "bm25", "embed", "faiss")), ""),
        ("full build total (s)", f"{full['total']:.1f}", ""),
        ("embedding parts reused from an earlier run", f"{reused} of {-(-len(texts) // args.part_size)}", ""),
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
        (f"{incremental['total']:.1f} (BM25 {incremental['bm25']:.1f}, embed {incremental['embed']:.1f}, "
         f"FAISS {incremental['faiss']:.1f})"),
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
