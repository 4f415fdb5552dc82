"""Passages for questions: the knowledge-base retriever's hits with their text, as the one shape
(``contracts.Passage``) that goes from retrieval to the answering prompt."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from fsku_kedro.contracts import CompetitionQuestion, Passage
from fsku_kedro.hashing import json_hash
from fsku_kedro.knowledge.content_cache import compute_with_cache
from fsku_kedro.knowledge.dense import DenseIndex
from fsku_kedro.knowledge.embedding import Embedder
from fsku_kedro.knowledge.retrieval import HybridRetriever, Reranker
from fsku_kedro.knowledge.sparse import SparseIndex
from fsku_kedro.parameters.retrieval import RetrievalSettings
from fsku_kedro.questions import retrieval_query

logger = logging.getLogger(__name__)


def retrieve_passages(
    questions: list[CompetitionQuestion],
    chunks: pd.DataFrame,
    bm25_index: SparseIndex,
    faiss_index: DenseIndex,
    embedder: Embedder,
    reranker: Reranker | None,
    retrieval_cache: dict[str, Any],
    settings: RetrievalSettings,
) -> tuple[dict[str, tuple[Passage, ...]], dict[str, Any]]:
    """Top-k passages per question ID through the knowledge-base retriever, best first. Results are
    cached by a hash of the query under a fingerprint of the chunks and retrieval settings
    (cache-aside), so a re-run or a resumed run retrieves only new questions."""
    kinds = pd.Series([q.question_type for q in questions]).value_counts().to_dict() if questions else {}
    logger.info("%d test questions: %s", len(questions), kinds)
    if not questions:
        return {}, retrieval_cache
    retriever = HybridRetriever.from_settings(chunks, bm25_index, faiss_index, embedder, reranker, settings)
    namespace = json_hash([sorted(chunks["content_hash"].astype(str)), settings.model_dump(), embedder.name,
                           type(reranker).__name__])

    def search(queries: list[str]) -> list[list[list[Any]]]:
        hits = retriever.retrieve(queries, k=settings.k, mode=settings.mode)
        return [[[hit.chunk_id, round(hit.score, 6)] for hit in row] for row in hits]  # the cache's rows

    queries = [retrieval_query(q) for q in questions]
    results, cache, computed = compute_with_cache(queries, f"retrieval:{namespace}", retrieval_cache, search)
    logger.info("Retrieval: %d of %d questions searched, %d from the cache", computed, len(queries),
                len(queries) - computed)
    texts = dict(zip(chunks["chunk_id"], chunks["content"]))
    passages = {
        q.ID: tuple(Passage(cid, float(score), texts[cid]) for cid, score in hits if cid in texts)
        for q, hits in zip(questions, results)
    }
    return passages, cache
