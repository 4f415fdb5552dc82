"""kedro-datasets' ``huggingface.ArrowDataset`` (a ``Dataset`` or ``DatasetDict`` saved with
``save_to_disk``), written atomically on a local disk."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kedro_datasets.huggingface import ArrowDataset


class AtomicArrowDataset(ArrowDataset):
    """``ArrowDataset`` whose local saves go into a temporary sibling folder that is then renamed into
    place, so a run killed mid-save never leaves a half-written version that a later load would pick
    up. Other filesystems are written as the library writes them."""

    def _save_dataset(self, data: Any, save_path: str) -> None:
        self._write_atomically(super()._save_dataset, data, save_path)

    def _save_dataset_dict(self, data: Any, save_path: str) -> None:
        self._write_atomically(super()._save_dataset_dict, data, save_path)

    def _write_atomically(self, write: Callable[[Any, str], None], data: Any, save_path: str) -> None:
        if self._protocol != "file":
            write(data, save_path)
            return
        final = Path(save_path)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            write(data, str(staging))
            if final.exists():  # unversioned: replace the previous save
                shutil.rmtree(final)
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
