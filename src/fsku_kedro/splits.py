"""Seeded, order-independent splits shared by the pipelines."""

from __future__ import annotations

import hashlib


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) for seeded, order-independent splits and shards."""
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def in_sample_train(question_id: str, seed: int, train_share: float) -> bool:
    """Whether a sample question joins the prompt set (train) or is held out for validation."""
    return unit_hash(seed, "sample", question_id) < train_share
