"""FAISS index over chunk embeddings; exact below a size threshold, IVF with tuned nprobe above."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

logger = logging.getLogger(__name__)

_META = "fsku_dense.json"
NPROBE_CANDIDATES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def choose_factory(n_vectors: int, flat_threshold: int, nlist_factor: float) -> str:
    """FAISS factory string: exact search for small sets, IVF with nlist about factor*sqrt(N) above."""
    if n_vectors < flat_threshold:
        return "Flat"
    nlist = max(1, int(round(nlist_factor * math.sqrt(n_vectors))))
    return f"IVF{nlist},Flat"


def _recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f[f >= 0]) & set(t[t >= 0])) for f, t in zip(found, truth))
    return hits / max(1, int((truth >= 0).sum()))


def tune_nprobe(
    index: faiss.Index, vectors: np.ndarray, target_recall: float, seed: int, k: int = 10, queries: int = 200
) -> tuple[int, float]:
    """Smallest nprobe whose recall@k against exact search reaches ``target_recall``.

    Queries are stored vectors with Gaussian noise added, so they are near, not on, the data.
    """
    ivf = faiss.extract_index_ivf(index)
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False)]
    noisy = sample + rng.normal(scale=0.05, size=sample.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(noisy, k)
    recall = 0.0
    for nprobe in NPROBE_CANDIDATES:
        if nprobe > ivf.nlist:
            break
        ivf.nprobe = nprobe
        _, found = index.search(noisy, k)
        recall = _recall_at_k(found, truth)
        if recall >= target_recall:
            return nprobe, recall
    ivf.nprobe = min(ivf.nlist, NPROBE_CANDIDATES[-1])
    return ivf.nprobe, recall


@dataclass
class DenseIndex:
    """A FAISS inner-product index over L2-normalised embeddings; row i is ``chunk_ids[i]``."""

    index: faiss.Index
    chunk_ids: list[str]
    model_name: str
    factory: str
    nprobe: int = 0
    tuned_recall: float | None = None

    @classmethod
    def build(
        cls,
        chunk_ids: list[str],
        vectors: np.ndarray,
        model_name: str,
        *,
        flat_threshold: int,
        nlist_factor: float,
        target_recall: float,
        seed: int,
    ) -> DenseIndex:
        """The index of ``DenseSettings`` (knowledge_base.dense): exact below ``flat_threshold`` vectors,
        IVF above, its nprobe the smallest reaching ``target_recall``."""
        if len(chunk_ids) != len(vectors):
            raise ValueError(f"{len(chunk_ids)} ids for {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        factory = choose_factory(len(vectors), flat_threshold, nlist_factor)
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        nprobe, recall = 0, None
        if factory != "Flat":
            faiss.extract_index_ivf(index).cp.seed = seed
            index.train(vectors)
        index.add(vectors)
        if factory != "Flat":
            nprobe, recall = tune_nprobe(index, vectors, target_recall, seed=seed)
            logger.info("%s over %d vectors: nprobe=%d reaches recall@10=%.3f", factory, len(vectors), nprobe, recall)
        return cls(index, list(chunk_ids), model_name, factory, nprobe, recall)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Top ``k`` (chunk_id, cosine) per query row."""
        if not self.chunk_ids:
            return [[] for _ in range(len(query_vectors))]
        if self.nprobe:
            faiss.extract_index_ivf(self.index).nprobe = self.nprobe
        scores, rows = self.index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), min(k, len(self)))
        return [
            [(self.chunk_ids[r], float(s)) for r, s in zip(row_ids, row_scores) if r >= 0]
            for row_ids, row_scores in zip(rows, scores)
        ]

    def save(self, directory: Path) -> None:
        faiss.write_index(self.index, str(directory / "index.faiss"))
        meta = {
            "chunk_ids": self.chunk_ids,
            "model_name": self.model_name,
            "factory": self.factory,
            "nprobe": self.nprobe,
            "tuned_recall": self.tuned_recall,
            "dimension": self.index.d,
        }
        (directory / _META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> DenseIndex:
        meta = json.loads((directory / _META).read_text(encoding="utf-8"))
        index = faiss.read_index(str(directory / "index.faiss"))
        if index.ntotal != len(meta["chunk_ids"]):
            raise ValueError(f"{directory}: index has {index.ntotal} vectors but {len(meta['chunk_ids'])} ids")
        return cls(index, meta["chunk_ids"], meta["model_name"], meta["factory"], meta["nprobe"], meta["tuned_recall"])
