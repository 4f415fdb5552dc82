"""Which versions something still points to: an MLflow run (its ``model_location.<dataset>`` and
``input_version.<dataset>`` tags, set by the project's hooks) or a competition package (its
``manifest.json``: the packed ``model`` directory and the run's ``input_versions``)."""

from __future__ import annotations

import json
import logging
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fsku_kedro.hooks import INPUT_VERSION_TAG, MODEL_LOCATION_TAG
from fsku_kedro.packaging.contents import MANIFEST
from fsku_kedro.versions.disk import VersionOnDisk, base_name
from fsku_kedro.versions.retention import VersionKey

logger = logging.getLogger(__name__)

References = dict[VersionKey, list[str]]


class VersionIndex:
    """Finds the version a path or a (dataset name, version) pair stands for."""

    def __init__(self, versions: Iterable[VersionOnDisk]):
        self._by_path: dict[Path, VersionKey] = {}
        self._keys: set[VersionKey] = set()
        for version in versions:
            self._by_path[version.path.resolve()] = (version.dataset, version.version)
            self._keys.add((version.dataset, version.version))

    def for_path(self, path: str | Path) -> VersionKey | None:
        """The version whose folder holds ``path`` (the model directory itself, or a file in it)."""
        path = Path(path).resolve()
        for candidate in (path, *path.parents):
            if candidate in self._by_path:
                return self._by_path[candidate]
        return None

    def for_name(self, name: str, version: str) -> VersionKey | None:
        """``name`` as a catalog or MLflow tag writes it (``compressed_student@path``,
        ``compressed_student:path``) at ``version``."""
        key = (base_name(name.replace(":", "@")), version)
        return key if key in self._keys else None


def _reasons(source: str, pointers: Iterable[tuple[VersionKey | None, str]]) -> References:
    """One reason per version that ``source`` points to, naming every field that points there:
    ``MLflow run <id>: input_version.distilled_student:path, model_location.distilled_student``."""
    fields: dict[VersionKey, list[str]] = defaultdict(list)
    for key, field in pointers:
        if key is not None and field not in fields[key]:
            fields[key].append(field)
    return {key: [f"{source}: {', '.join(names)}"] for key, names in fields.items()}


def references_from_tags(run_id: str, tags: Mapping[str, str], index: VersionIndex) -> References:
    """The versions one MLflow run's tags point to, each with the tags as its reason."""
    pointers = []
    for tag, value in sorted(tags.items()):
        if tag.startswith(MODEL_LOCATION_TAG):
            pointers.append((index.for_path(value), tag))
        elif tag.startswith(INPUT_VERSION_TAG):
            pointers.append((index.for_name(tag[len(INPUT_VERSION_TAG):], value), tag))
    return _reasons(f"MLflow run {run_id}", pointers)


def mlflow_references(tracking_uri: str, index: VersionIndex) -> References:
    """The versions that any run of any experiment in the tracking store points to (deleted runs too:
    ``mlflow gc`` has not removed them, and they can be restored)."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not Path(tracking_uri[len(prefix):]).is_file():
        logger.info("No MLflow store at %s: no run points to a version", tracking_uri)
        return {}
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    references: References = defaultdict(list)
    runs = 0
    token = None
    while experiments:
        page = client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        for run in page:
            runs += 1
            for key, reasons in references_from_tags(run.info.run_id, run.data.tags, index).items():
                references[key] += reasons
        token = page.token
        if not token:
            break
    logger.info("MLflow store %s: %d run(s) point to %d version(s)", tracking_uri, runs, len(references))
    return dict(references)


def references_from_manifest(label: str, manifest: Mapping[str, Any], index: VersionIndex) -> References:
    """The versions a package's manifest names: the ``model`` it packed and its ``input_versions``."""
    pointers = [(index.for_path(manifest["model"]), "manifest model")] if manifest.get("model") else []
    pointers += [(index.for_name(name, str(version)), f"manifest input_versions.{name}")
                 for name, version in sorted((manifest.get("input_versions") or {}).items())]
    return _reasons(label, pointers)


def package_references(archives: Iterable[tuple[str, Path]], index: VersionIndex) -> References:
    """The versions that the competition packages on disk were built from."""
    references: References = defaultdict(list)
    for label, archive in archives:
        try:
            with zipfile.ZipFile(archive) as package:
                manifest = json.loads(package.read(MANIFEST).decode("utf-8"))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            logger.warning("Package %s has no readable %s (%s): it protects no version",
                           archive, MANIFEST, error)
            continue
        for key, reasons in references_from_manifest(label, manifest, index).items():
            references[key] += reasons
    return dict(references)
