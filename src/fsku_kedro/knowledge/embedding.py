"""Dense text embeddings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from fsku_kedro.knowledge.content_cache import compute_with_cache

logger = logging.getLogger(__name__)


@dataclass
class Embedder:
    """A sentence-transformers model and the name its vectors are recorded under."""

    model: Any
    name: str
    batch_size: int = 64

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text (inner product = cosine)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def embed_with_cache(
    texts: list[str], embedder: Embedder, cache: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Embed ``texts`` re-using cached vectors; returns (matrix, updated cache, number embedded now)."""
    vectors, cache, computed = compute_with_cache(
        texts, embedder.name, cache, lambda missing: embedder.encode(missing, show_progress=len(missing) > 256)
    )
    matrix = np.stack(vectors) if vectors else np.zeros((0, embedder.dimension), np.float32)
    return matrix.astype(np.float32), cache, computed
