"""A versioned dataset stored as a local directory, written atomically."""

from __future__ import annotations

import abc
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version

from fsku_kedro.datasets.disk_space import check_free_space, estimated_bytes


class LocalDirectoryDataset(AbstractVersionedDataset[Any, Any], abc.ABC):
    """Base for artefacts saved as a folder (model, index).

    A save writes into a temporary sibling folder and renames it into place, so a run killed
    mid-save never leaves a half-written version that a later load would pick up. Before writing it
    checks that the disk has room for the artefact (``disk_space.check_free_space``).
    """

    def __init__(self, filepath: str, version: Version | None = None, metadata: dict | None = None):
        super().__init__(filepath=PurePosixPath(Path(filepath).as_posix()), version=version)
        self.metadata = metadata
        self.last_saved_path: Path | None = None

    @abc.abstractmethod
    def _write(self, directory: Path, data: Any) -> None: ...

    @abc.abstractmethod
    def _read(self, directory: Path) -> Any: ...

    def load(self) -> Any:
        path = Path(str(self._get_load_path()))
        if not path.is_dir():
            raise DatasetError(f"{type(self).__name__}: no saved artefact at {path}")
        return self._read(path)

    def save(self, data: Any) -> None:
        final = Path(str(self._get_save_path()))
        check_free_space(final, estimated_bytes(data))
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            self._write(staging, data)
            if final.exists():  # unversioned: replace the previous artefact
                shutil.rmtree(final)
            os.replace(staging, final)
            self.last_saved_path = final.resolve()
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _exists(self) -> bool:
        try:
            path = self._get_load_path()
        except DatasetError:
            return False
        return Path(str(path)).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}
