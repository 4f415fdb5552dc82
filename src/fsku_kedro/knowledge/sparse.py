"""BM25 over Korean morphemes with bm25s, and its on-disk form."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import bm25s

from fsku_kedro.knowledge.cleaning import normalize_for_search
from fsku_kedro.knowledge.content_cache import compute_with_cache
from fsku_kedro.knowledge.morphemes import MorphemeTokenizer

logger = logging.getLogger(__name__)

_META = "fsku_sparse.json"


@dataclass
class SparseIndex:
    """A bm25s index whose rows are ``chunk_ids``; texts are analysed by ``tokenizer``."""

    retriever: bm25s.BM25
    chunk_ids: list[str]
    tokenizer: MorphemeTokenizer

    @classmethod
    def build(
        cls,
        chunk_ids: list[str],
        texts: list[str],
        tokenizer: MorphemeTokenizer,
        *,
        k1: float,
        b: float,
        method: str,
        morpheme_cache: dict[str, list[str]] | None = None,
    ) -> tuple[SparseIndex, dict[str, list[str]]]:
        """Index ``texts`` (already in search form) with the BM25 variant and parameters of ``BM25Settings``;
        analyses only texts missing from ``morpheme_cache``.

        Returns the index and the cache of the indexed texts' morphemes.
        """
        if len(chunk_ids) != len(texts):
            raise ValueError(f"{len(chunk_ids)} ids for {len(texts)} texts")
        tokens, cache, _ = compute_with_cache(
            texts, f"morphemes:{tokenizer.backend}", morpheme_cache or {}, tokenizer.tokenize_many
        )
        retriever = bm25s.BM25(k1=k1, b=b, method=method)
        retriever.index(tokens, show_progress=False)
        return cls(retriever=retriever, chunk_ids=list(chunk_ids), tokenizer=tokenizer), cache

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """Top ``k`` (chunk_id, BM25 score) for a raw query; empty when nothing matches."""
        return self.search_tokens(self.tokenizer.tokenize(normalize_for_search(query)), k)

    def search_tokens(self, query_tokens: list[str], k: int) -> list[tuple[str, float]]:
        vocab = self.retriever.vocab_dict
        known = [token for token in query_tokens if token in vocab]
        if not known or not self.chunk_ids:
            return []
        k = min(k, len(self.chunk_ids))
        indices, scores = self.retriever.retrieve([known], k=k, show_progress=False, n_threads=0)
        return [(self.chunk_ids[int(i)], float(s)) for i, s in zip(indices[0], scores[0]) if s > 0]

    def save(self, directory: Path) -> None:
        self.retriever.save(str(directory / "bm25"), allow_pickle=False)
        meta = {"chunk_ids": self.chunk_ids, "backend": self.tokenizer.backend}
        (directory / _META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> SparseIndex:
        meta = json.loads((directory / _META).read_text(encoding="utf-8"))
        retriever = bm25s.BM25.load(str(directory / "bm25"), allow_pickle=False)
        return cls(retriever=retriever, chunk_ids=meta["chunk_ids"], tokenizer=MorphemeTokenizer(meta["backend"]))

