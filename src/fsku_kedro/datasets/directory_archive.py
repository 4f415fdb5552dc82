"""A directory persisted as one versioned zip archive (the competition package)."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version

# Model weights and indices barely compress; text files do. Level 1 keeps packing fast.
_COMPRESSION = {"compression": zipfile.ZIP_DEFLATED, "compresslevel": 1}


class DirectoryArchiveDataset(AbstractVersionedDataset[Path, Path]):
    """Saves a directory as a zip archive (written beside the target, then moved into place) and then
    removes the directory: the node hands over a staging folder it built. Loading gives the archive's
    path."""

    def __init__(self, filepath: str, version: Version | None = None, metadata: dict | None = None):
        super().__init__(filepath=PurePosixPath(Path(filepath).as_posix()), version=version)
        self.metadata = metadata

    def load(self) -> Path:
        path = Path(str(self._get_load_path()))
        if not path.is_file():
            raise DatasetError(f"no archive at {path}; run the pipeline that builds it (`kedro run --pipelines package`)")
        return path

    def save(self, data: Path) -> None:
        source = Path(data)
        if not source.is_dir():
            raise DatasetError(f"{source} is not a directory to archive")
        final = Path(str(self._get_save_path()))
        final.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".archive.", dir=final.parent) as staging:
            partial = Path(staging) / final.name
            with zipfile.ZipFile(partial, "w", **_COMPRESSION) as archive:
                for path in sorted(source.rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(source).as_posix())
            os.replace(partial, final)
        shutil.rmtree(source)

    def _exists(self) -> bool:
        try:
            return Path(str(self._get_load_path())).is_file()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}
