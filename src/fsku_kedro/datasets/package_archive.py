"""The competition package as one versioned zip archive."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version

from fsku_kedro.packaging.contents import CompetitionPackage, write_package

# Model weights and indices barely compress; text files do. Level 1 keeps packing fast.
_COMPRESSION = {"compression": zipfile.ZIP_DEFLATED, "compresslevel": 1}


class PackageArchiveDataset(AbstractVersionedDataset[CompetitionPackage, Path]):
    """Writes a ``CompetitionPackage`` as a zip archive (built in a temporary folder, then moved into
    place); loading gives the archive's path."""

    def __init__(self, filepath: str, version: Version | None = None, metadata: dict | None = None):
        super().__init__(filepath=PurePosixPath(Path(filepath).as_posix()), version=version)
        self.metadata = metadata

    def load(self) -> Path:
        path = Path(str(self._get_load_path()))
        if not path.is_file():
            raise DatasetError(f"no package archive at {path}; run `kedro run --pipelines package`")
        return path

    def save(self, data: CompetitionPackage) -> None:
        final = Path(str(self._get_save_path()))
        final.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".package.", dir=final.parent) as staging:
            contents = Path(staging) / "package"
            contents.mkdir()
            write_package(data, contents)
            partial = Path(staging) / final.name
            with zipfile.ZipFile(partial, "w", **_COMPRESSION) as archive:
                for path in sorted(contents.rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(contents).as_posix())
            os.replace(partial, final)

    def _exists(self) -> bool:
        try:
            return Path(str(self._get_load_path())).is_file()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}


def unpack(archive: Path, target: Path) -> Path:
    """Unpack a package archive into ``target`` (created) and return it."""
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as source:
        source.extractall(target)
    return target
