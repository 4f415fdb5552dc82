"""Catalog access to a ``ResponseStore`` (the progress file of a generation run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset
from kedro.io.core import DatasetError

from fsku_kedro.generation.store import ResponseStore


class ResponseStoreDataset(AbstractDataset[None, ResponseStore]):
    """Loads a ``ResponseStore`` that a node appends to while it generates; not saved as a whole."""

    def __init__(self, filepath: str, metadata: dict | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> ResponseStore:
        return ResponseStore(self._filepath)

    def save(self, data: Any) -> None:
        raise DatasetError("a ResponseStore is written by appending during generation, not saved")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
