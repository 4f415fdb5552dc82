"""Caching per-text work (embeddings, morpheme analysis) by content hash, so a rebuild only
redoes the texts that changed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fsku_kedro.hashing import stable_hash

logger = logging.getLogger(__name__)


def content_key(namespace: str, text: str) -> str:
    """Cache key of ``text`` under ``namespace`` (the model or analyser that produced the value)."""
    return stable_hash(namespace, text, length=64)


def compute_with_cache(
    texts: list[str],
    namespace: str,
    cache: dict[str, Any],
    compute: Callable[[list[str]], Sequence[Any]],
) -> tuple[list[Any], dict[str, Any], int]:
    """Values for ``texts``, computing only those missing from ``cache``.

    Returns (values in input order, the cache restricted to these texts, number computed now).
    The returned cache holds exactly the current texts, so it does not grow without bound.
    """
    keys = [content_key(namespace, text) for text in texts]
    missing = dict(sorted({key: text for key, text in zip(keys, texts) if key not in cache}.items()))
    fresh: dict[str, Any] = {}
    if missing:
        logger.info("%s: computing %d of %d texts (%d cached)", namespace, len(missing), len(texts), len(texts) - len(missing))
        fresh = dict(zip(missing, compute(list(missing.values()))))
    lookup = {**cache, **fresh}
    return [lookup[key] for key in keys], {key: lookup[key] for key in keys}, len(missing)
