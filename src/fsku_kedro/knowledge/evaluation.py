"""Retrieval quality on a labelled question set: recall@k and MRR."""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")


def squash(text: str) -> str:
    """Text without any whitespace, so PDF line breaks and spacing do not matter."""
    return _SPACE.sub("", text)


def _longest_prefix_inside(target: str, text: str) -> int:
    low, high = 0, len(target)
    while low < high:  # containment of prefixes is monotone in their length
        middle = (low + high + 1) // 2
        if target[:middle] in text:
            low = middle
        else:
            high = middle - 1
    return low


def relevant_chunks(source: str, evidence: str, chunks: list[dict], min_share: float = 0.4) -> set[str]:
    """Ids of the chunks of ``source`` that contain ``evidence``.

    When no chunk holds all of it (the evidence straddles a chunk boundary), a chunk counts if
    it holds a start or an end of the evidence at least ``min_share`` of its length.
    """
    target = squash(evidence)
    own = [(c["chunk_id"], squash(c["content"])) for c in chunks if c["source"] == source]
    found = {cid for cid, text in own if target in text}
    if found or not target:
        return found
    needed = max(1, int(len(target) * min_share))
    return {
        cid
        for cid, text in own
        if _longest_prefix_inside(target, text) >= needed or _longest_prefix_inside(target[::-1], text[::-1]) >= needed
    }


def reciprocal_rank(ranked: list[str], relevant: set[str]) -> float:
    for position, chunk_id in enumerate(ranked, start=1):
        if chunk_id in relevant:
            return 1.0 / position
    return 0.0


def hit_at_k(ranked: list[str], relevant: set[str], k: int) -> float:
    return float(any(chunk_id in relevant for chunk_id in ranked[:k]))
