"""Content-hash keyed caches (embedding vectors, morpheme lists), stored as Parquet (no pickle)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kedro.io import AbstractDataset
from kedro.io.core import DatasetError

logger = logging.getLogger(__name__)


class ContentCacheDataset(AbstractDataset[dict, dict]):
    """A mapping ``key -> value`` where values are float32 ``vectors``, lists of ``tokens`` or
    ``json`` values (stored as JSON text).

    Loads as empty when nothing was cached yet or the file cannot be read. Point two catalog
    entries at the same file (one read, one written) to update it from a node.
    """

    VALUE_KINDS = ("vectors", "tokens", "json")

    def __init__(self, filepath: str, values: str = "vectors", metadata: dict | None = None):
        if values not in self.VALUE_KINDS:
            raise DatasetError(f"ContentCacheDataset: values must be one of {self.VALUE_KINDS}, got {values!r}")
        self._filepath = Path(filepath)
        self._values = values
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        if not self._filepath.exists():
            return {}
        try:
            frame = pd.read_parquet(self._filepath, columns=["key", "value"])
        except Exception as error:  # a cache is disposable: rebuild rather than fail the run
            logger.warning("Ignoring unreadable cache %s (%s); it will be rebuilt", self._filepath, error)
            return {}
        if self._values == "vectors":
            return {key: np.asarray(value, dtype=np.float32) for key, value in zip(frame["key"], frame["value"])}
        if self._values == "json":
            return {key: json.loads(value) for key, value in zip(frame["key"], frame["value"])}
        return {key: [str(token) for token in value] for key, value in zip(frame["key"], frame["value"])}

    def save(self, data: dict[str, Any]) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        values = list(data.values())
        if self._values == "vectors":
            values = [np.asarray(value, dtype=np.float32) for value in values]
        elif self._values == "json":
            values = [json.dumps(value, ensure_ascii=False) for value in values]
        partial = self._filepath.with_name(self._filepath.name + ".partial")
        pd.DataFrame({"key": list(data), "value": values}).to_parquet(partial, index=False)
        partial.replace(self._filepath)

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "values": self._values}
