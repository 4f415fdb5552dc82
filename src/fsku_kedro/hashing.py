"""Stable hashes: ids, fingerprints and seeded splits that are the same on every machine and run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def stable_hash(*parts: object, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``parts`` joined by NUL characters."""
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:length]


def json_hash(value: Any, length: int = 16) -> str:
    """``stable_hash`` of ``value`` written as canonical JSON (sorted keys; other objects as text)."""
    return stable_hash(json.dumps(value, sort_keys=True, default=str), length=length)


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) for seeded, order-independent splits and shards."""
    return int(stable_hash(*parts, length=12), 16) / float(16**12)


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
