"""Hybrid retrieval: BM25 and dense scores normalised per query (or turned into reciprocal ranks),
then a weighted sum (architecture 4.10.c), with an optional rerank stage (cross-encoder, or an LLM judging
relevance as in 4.10.a)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.knowledge.sparse import SparseIndex
from fsku_kedro.parameters.retrieval import MODES, NORMALISATIONS, RetrievalSettings

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Hit:
    chunk_id: str
    score: float
    bm25: float = 0.0
    dense: float = 0.0


def normalise(scores: dict[str, float], method: str, rrf_k: int) -> dict[str, float]:
    """Map one retriever's candidate scores to comparable values so different retrievers can be
    summed: ``minmax`` to [0, 1], ``max`` divided by the largest, ``rrf`` the reciprocal rank
    1 / (rrf_k + rank) (reciprocal rank fusion, which ignores the scores' scale altogether)."""
    if not scores:
        return {}
    if method == "rrf":
        ranked = sorted(scores, key=lambda key: (-scores[key], key))
        return {key: 1.0 / (rrf_k + rank) for rank, key in enumerate(ranked, start=1)}
    values = np.fromiter(scores.values(), dtype=np.float64)
    if method == "minmax":
        low, high = float(values.min()), float(values.max())
        if high - low < 1e-12:
            return dict.fromkeys(scores, 1.0)
        return {key: (value - low) / (high - low) for key, value in scores.items()}
    if method == "max":
        top = float(np.abs(values).max()) or 1.0
        return {key: value / top for key, value in scores.items()}
    raise ValueError(f"unknown normalisation {method!r}; choose one of {NORMALISATIONS}")


def fuse(
    sparse_hits: Sequence[tuple[str, float]],
    dense_hits: Sequence[tuple[str, float]],
    weights: dict[str, float],
    method: str,
    rrf_k: int,
) -> list[Hit]:
    """Weighted sum of normalised scores; a chunk missing from one list scores 0 there."""
    sparse = normalise(dict(sparse_hits), method, rrf_k)
    dense = normalise(dict(dense_hits), method, rrf_k)
    ids = list(dict.fromkeys([*sparse, *dense]))
    hits = [
        Hit(
            chunk_id=cid,
            score=weights["bm25"] * sparse.get(cid, 0.0) + weights["dense"] * dense.get(cid, 0.0),
            bm25=sparse.get(cid, 0.0),
            dense=dense.get(cid, 0.0),
        )
        for cid in ids
    ]
    return sorted(hits, key=lambda hit: (-hit.score, hit.chunk_id))


class Reranker(Protocol):
    def score(self, query: str, passages: list[str]) -> list[float]: ...


@dataclass
class CrossEncoderReranker:
    """Scores (query, passage) pairs with a sentence-transformers CrossEncoder."""

    model: Any

    def score(self, query: str, passages: list[str]) -> list[float]:
        if not passages:
            return []
        return [float(s) for s in self.model.predict([(query, p) for p in passages], show_progress_bar=False)]


@dataclass
class LLMReranker:
    """Asks a causal LM whether each passage helps answer the query and scores the answer.

    One forward pass per batch: the score is log P(yes) - log P(no) for the first answer token
    after a chat-formatted prompt built from ``prompt_template`` (fields ``query``, ``passage``).
    """

    model: Any
    tokenizer: Any
    prompt_template: str
    yes: str = "예"
    no: str = "아니오"
    batch_size: int = 8

    def _first_token(self, word: str) -> int:
        return self.tokenizer(word, add_special_tokens=False)["input_ids"][0]

    def score(self, query: str, passages: list[str]) -> list[float]:
        import torch

        yes_id, no_id = self._first_token(self.yes), self._first_token(self.no)
        prompts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": self.prompt_template.format(query=query, passage=p)}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for p in passages
        ]
        scores: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(
                prompts[start : start + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            )
            with torch.no_grad():
                logits = self.model(**batch).logits[:, -1, :]  # left padding: last position is the answer slot
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            scores.extend((log_probs[:, yes_id] - log_probs[:, no_id]).tolist())
        return scores


@dataclass
class HybridRetriever:
    """BM25 + FAISS retrieval over the same chunks, fused by weighted sum, optionally reranked; its
    fusion and depths are ``RetrievalSettings``' (``from_settings``)."""

    sparse: SparseIndex
    dense: DenseIndex
    embedder: Embedder
    weights: dict[str, float]
    candidate_k: int
    normalisation: str
    rrf_k: int
    rerank_k: int
    reranker: Reranker | None = None
    texts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.weights) != {"bm25", "dense"} or any(w < 0 for w in self.weights.values()):
            raise ValueError(f"weights must give non-negative 'bm25' and 'dense', got {self.weights}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.normalisation!r}; choose one of {NORMALISATIONS}")
        if self.dense.model_name != self.embedder.name:
            raise ValueError(
                f"the dense index was built with {self.dense.model_name!r} but queries would be embedded "
                f"with {self.embedder.name!r}; rebuild the knowledge base or change the embedder"
            )
        if self.reranker is not None and not self.texts:
            raise ValueError("a reranker needs the chunk texts")

    def retrieve(
        self, queries: list[str], k: int, mode: str, query_vectors: np.ndarray | None = None
    ) -> list[list[Hit]]:
        """Top ``k`` hits per query. ``query_vectors`` skips query embedding when given."""
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {MODES}")
        depth = max(k, self.candidate_k)
        sparse_hits = [self.sparse.search(q, depth) for q in queries] if mode != "dense" else None
        dense_hits = None
        if mode != "bm25":
            vectors = query_vectors if query_vectors is not None else self.embedder.encode(queries, "query")
            dense_hits = self.dense.search(vectors, depth)
        results = []
        for i, query in enumerate(queries):
            if mode == "bm25":
                hits = [Hit(cid, s, bm25=s) for cid, s in sparse_hits[i]]
            elif mode == "dense":
                hits = [Hit(cid, s, dense=s) for cid, s in dense_hits[i]]
            else:
                hits = fuse(sparse_hits[i], dense_hits[i], self.weights, self.normalisation, self.rrf_k)
                if self.reranker is not None:
                    hits = self._rerank(query, hits)
            results.append(hits[:k])
        return results

    @classmethod
    def from_settings(
        cls, chunks: Any, sparse: SparseIndex, dense: DenseIndex, embedder: Embedder, reranker: Reranker | None,
        settings: RetrievalSettings,
    ) -> HybridRetriever:
        """The retriever ``retrieval`` settings describe, over the chunks table's texts."""
        return cls(
            sparse=sparse,
            dense=dense,
            embedder=embedder,
            weights=settings.weights.model_dump(),
            candidate_k=settings.candidate_k,
            normalisation=settings.normalisation,
            rrf_k=settings.rrf_k,
            reranker=reranker,
            rerank_k=settings.rerank_k,
            texts=dict(zip(chunks["chunk_id"], chunks["content"])),
        )

    def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        head, tail = hits[: self.rerank_k], hits[self.rerank_k :]
        scores = self.reranker.score(query, [self.texts[h.chunk_id] for h in head])
        order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
        return [Hit(head[i].chunk_id, float(scores[i]), head[i].bm25, head[i].dense) for i in order] + tail
