"""Dense text embeddings behind one interface, with the query / passage roles kept apart.

E5 models were trained with "query: " and "passage: " prefixes and lose much of their retrieval
quality without them; symmetric comparisons (an answer against its reference) use "query: " on both
sides, as the E5 model card advises. Models without roles ignore them.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fsku_kedro.knowledge.content_cache import compute_with_cache

logger = logging.getLogger(__name__)

Role = Literal["query", "passage"]


class Embedder(ABC):
    """L2-normalised float32 vectors, one row per text (inner product = cosine)."""

    name: str
    batch_size: int

    @property
    @abstractmethod
    def dimension(self) -> int: ...

    @abstractmethod
    def _embed(self, texts: list[str], role: Role, show_progress: bool) -> np.ndarray: ...

    def encode(self, texts: list[str], role: Role = "passage", show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.ascontiguousarray(self._embed(list(texts), role, show_progress), dtype=np.float32)


@dataclass
class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model; ``prompts`` maps a role to the text put before each input."""

    model: Any
    name: str
    batch_size: int = 64
    prompts: dict[str, str] = field(default_factory=dict)

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _embed(self, texts: list[str], role: Role, show_progress: bool) -> np.ndarray:
        return self.model.encode(
            texts,
            prompt=self.prompts.get(role) or None,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )


def embed_with_cache(
    texts: list[str], embedder: Embedder, cache: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Embed ``texts`` as passages re-using cached vectors; returns (matrix, updated cache, number embedded now)."""
    vectors, cache, computed = compute_with_cache(
        texts, f"{embedder.name}:passage", cache,
        lambda missing: embedder.encode(missing, "passage", show_progress=len(missing) > 256),
    )
    matrix = np.stack(vectors) if vectors else np.zeros((0, embedder.dimension), np.float32)
    return matrix.astype(np.float32), cache, computed
