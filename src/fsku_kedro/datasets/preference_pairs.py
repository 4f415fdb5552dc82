"""A Hugging Face ``DatasetDict`` saved with ``save_to_disk`` (Arrow files), versioned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsku_kedro.datasets.directory import LocalDirectoryDataset


class HFDatasetDictDataset(LocalDirectoryDataset):
    """A ``datasets.DatasetDict`` (for example train/validation preference pairs) on local disk."""

    def _write(self, directory: Path, data: Any) -> None:
        data.save_to_disk(str(directory))

    def _read(self, directory: Path) -> Any:
        from datasets import load_from_disk

        return load_from_disk(str(directory))
