"""The free-disk check before a directory dataset writes: an estimate of the bytes an artefact takes,
compared with what is free on the target's file system."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fsku_kedro.errors import DiskSpaceError
from fsku_kedro.models.bundle import ModelBundle

logger = logging.getLogger(__name__)

# Room left free beyond the estimate (logs, MLflow, checkpoints and other writers share the disk).
FREE_SPACE_MARGIN_BYTES = 512 * 2**20
# Tokenizer, config and generation files saved beside a model's weights (Qwen2.5's are about 11 MB).
TOKENIZER_SLACK_BYTES = 32 * 2**20
RETENTION_COMMAND = "python -m fsku_kedro.versions --env ENV --keep 2"


def tensor_bytes(tensors: Any) -> int:
    """The bytes of ``tensors`` (each counted once, however often it is shared) as stored: numel times
    element size."""
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def estimated_bytes(data: Any) -> int | None:
    """About how many bytes saving ``data`` writes, or ``None`` where there is no cheap estimate.

    A model bundle: its parameters and buffers (GPTQ keeps its packed weights in buffers) plus tokenizer
    slack; a LoRA adapter: its weights; a mapping: the sum of its values (several quantized variants).
    Indices and other data get none: they are small beside a model."""
    if isinstance(data, Mapping):
        parts = [estimated_bytes(value) for value in data.values()]
        return None if not parts or None in parts else sum(parts)
    if isinstance(data, ModelBundle):
        return tensor_bytes([*data.model.parameters(), *data.model.buffers()]) + TOKENIZER_SLACK_BYTES
    weights = getattr(data, "weights", None)
    if isinstance(weights, Mapping) and all(hasattr(t, "element_size") for t in weights.values()):
        return tensor_bytes(weights.values())
    return None


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (a new version's folder does not yet)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(target: Path, needed: int | None) -> None:
    """Raise ``DiskSpaceError`` when the file system of ``target`` has fewer than ``needed`` bytes plus
    ``FREE_SPACE_MARGIN_BYTES`` free; ``needed`` ``None`` (no estimate) checks nothing."""
    if needed is None:
        return
    parent = nearest_existing(target)
    free = shutil.disk_usage(parent).free
    logger.debug("Saving %s: about %d bytes needed, %d free on %s", target, needed, free, parent)
    if free < needed + FREE_SPACE_MARGIN_BYTES:
        raise DiskSpaceError(
            f"not enough disk space to save {target}: it needs about {needed:,} bytes "
            f"({human_bytes(needed)}) plus a margin of {human_bytes(FREE_SPACE_MARGIN_BYTES)}, and "
            f"{free:,} bytes ({human_bytes(free)}) are free on {parent}. Old model versions can be removed: "
            f"`{RETENTION_COMMAND}` lists what it would delete, and with --apply deletes it "
            "(docs/orchestration.md)"
        )


def human_bytes(count: float) -> str:
    """``count`` bytes in decimal units: 950 B, 1.5 MB, 3.1 GB."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
