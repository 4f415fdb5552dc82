"""The catalog's versioned directory datasets, their versions on disk, and removing a version.

A versioned dataset with filepath ``F`` keeps version ``V`` in ``F/V/<name of F>``; the folder
``F/V`` is what a version takes on disk and what removing it deletes.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedro.io.catalog_config_resolver import CatalogConfigResolver
from kedro.io.core import parse_dataset_definition
from parse import parse

from fsku_kedro.datasets import DirectoryArchiveDataset, ModelPathDataset
from fsku_kedro.datasets.directory import LocalDirectoryDataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionedFolder:
    """A versioned dataset: its name (without a transcoding suffix such as ``@model``) and its folder."""

    name: str
    folder: Path


@dataclass(frozen=True)
class VersionOnDisk:
    """One version of a dataset: its folder ``F/V``, whether the artefact inside was saved, its size."""

    dataset: str
    version: str
    path: Path
    finished: bool
    bytes: int


def base_name(name: str) -> str:
    """``compressed_student@model`` -> ``compressed_student``: transcoded entries share one folder."""
    return name.split("@")[0]


def _folder(dataset: Any) -> Path:
    return Path(str(dataset._filepath))


def _is_retained(dataset: Any) -> bool:
    """A versioned directory dataset that writes (``ModelPathDataset`` only reads another's folder)."""
    return (isinstance(dataset, LocalDirectoryDataset) and not isinstance(dataset, ModelPathDataset)
            and dataset._version is not None)


def _class_of(type_name: str | None) -> type | None:
    try:
        return parse_dataset_definition({"type": type_name})[0] if type_name else None
    except Exception:  # noqa: BLE001 - a type that does not import here is not one of ours
        return None


def catalog_datasets(catalog: Any, catalog_config: dict[str, Any], project_path: Path,
                     kind: type = LocalDirectoryDataset) -> list[tuple[str, Any]]:
    """(name, dataset) for every catalog dataset of ``kind``: each named entry, and each name that a
    dataset factory (``"{round}.distilled_student"``) takes for a folder already on disk."""
    found: dict[str, Any] = {}
    for name in sorted(catalog.keys()):
        cls = _class_of(catalog.get_type(name))
        if cls is not None and issubclass(cls, kind):
            found[name] = catalog.get(name)
    for pattern, config in sorted(catalog_config.items()):
        if not CatalogConfigResolver.is_pattern(pattern) or not isinstance(config, dict):
            continue
        cls = _class_of(config.get("type"))
        if cls is None or not issubclass(cls, kind) or "filepath" not in config:
            continue
        found |= dict(_pattern_matches(catalog, pattern, str(config["filepath"]), project_path))
    return sorted(found.items())


def _pattern_matches(catalog: Any, pattern: str, filepath: str, project_path: Path) -> list[tuple[str, Any]]:
    """The datasets a factory pattern names, one for each folder on disk that its filepath matches."""
    path_pattern = filepath if Path(filepath).is_absolute() else (project_path / filepath).as_posix()
    pieces = re.split(r"(\{[^{}]*\})", path_pattern)
    wildcard = "".join("*" if piece.startswith("{") else glob.escape(piece) for piece in pieces)
    matches = []
    for match in sorted(glob.glob(wildcard)):
        fields = parse(path_pattern, match)
        try:
            name = pattern.format(**fields.named) if fields else None
        except (KeyError, ValueError, IndexError):
            name = None
        dataset = catalog.get(name) if name else None
        if dataset is not None and _folder(dataset) == Path(match):
            matches.append((name, dataset))
    return matches


def versioned_folders(catalog: Any, catalog_config: dict[str, Any],
                      project_path: Path) -> list[VersionedFolder]:
    """Every versioned directory dataset that writes its own folder, one entry per folder."""
    folders: dict[Path, str] = {}
    for name, dataset in catalog_datasets(catalog, catalog_config, project_path):
        if _is_retained(dataset):
            folders.setdefault(_folder(dataset), base_name(name))
    return sorted((VersionedFolder(name, folder) for folder, name in folders.items()), key=lambda f: f.name)


def archive_files(catalog: Any, catalog_config: dict[str, Any],
                  project_path: Path) -> list[tuple[str, Path]]:
    """(label, zip file) for every competition package on disk; the label names its version."""
    archives = []
    packages = catalog_datasets(catalog, catalog_config, project_path, kind=DirectoryArchiveDataset)
    for name, dataset in packages:
        path = _folder(dataset)
        if dataset._version is None:
            archives += [(base_name(name), path)] if path.is_file() else []
        else:
            archives += [(f"{base_name(name)} {file.parent.name}", file)
                         for file in sorted(path.glob(f"*/{path.name}")) if file.is_file()]
    return archives


def directory_bytes(path: Path) -> int:
    """The bytes of every file under ``path`` (links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for file in files:
            try:
                total += os.lstat(os.path.join(root, file)).st_size
            except FileNotFoundError:  # removed meanwhile
                pass
    return total


def versions_on_disk(folder: VersionedFolder) -> list[VersionOnDisk]:
    """The versions in ``folder``, newest first; hidden entries (a removal under way) are skipped."""
    if not folder.folder.is_dir():
        return []
    versions = []
    for entry in sorted(folder.folder.iterdir(), reverse=True):
        if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
            continue
        finished = (entry / folder.folder.name).exists()
        versions.append(VersionOnDisk(folder.name, entry.name, entry, finished, directory_bytes(entry)))
    return versions


def remove_version(version: VersionOnDisk) -> None:
    """Delete a version's folder: first renamed out of Kedro's sight (a hidden name), so a load never
    sees it half deleted, then removed."""
    hidden = version.path.with_name(f".{version.version}.removing")
    os.replace(version.path, hidden)
    shutil.rmtree(hidden)
    logger.info("Removed %s version %s (%s)", version.dataset, version.version, version.path)
