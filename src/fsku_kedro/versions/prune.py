"""The retention rule applied to a catalog: find the versions on disk and what points to them, plan
with ``retention.plan_retention``, show the plan, remove what it removes."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsku_kedro.datasets.disk_space import human_bytes
from fsku_kedro.errors import UserInputError
from fsku_kedro.versions.disk import (
    VersionOnDisk,
    archive_files,
    remove_version,
    versioned_folders,
    versions_on_disk,
)
from fsku_kedro.versions.references import VersionIndex, mlflow_references, package_references
from fsku_kedro.versions.retention import Decision, RetentionPlan, VersionKey, plan_retention

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pruning:
    """A plan and the versions on disk it decides about."""

    plan: RetentionPlan
    on_disk: dict[VersionKey, VersionOnDisk]

    def size(self, decision: Decision) -> int:
        return self.on_disk[(decision.dataset, decision.version)].bytes

    @property
    def bytes_freed(self) -> int:
        return sum(self.size(decision) for decision in self.plan.removed)


def plan_for_catalog(catalog: Any, catalog_config: dict[str, Any], project_path: Path, tracking_uri: str,
                     keep_last: int, datasets: Collection[str] = (),
                     remove_unfinished: bool = False) -> Pruning:
    """The plan for the catalog's versioned directory datasets (only ``datasets``, where given):
    references are read from the MLflow store at ``tracking_uri`` and from every package on disk."""
    folders = versioned_folders(catalog, catalog_config, project_path)
    unknown = set(datasets) - {folder.name for folder in folders}
    if unknown:
        raise UserInputError(f"no versioned model dataset named {', '.join(sorted(unknown))}; the catalog "
                             f"has {', '.join(folder.name for folder in folders)}")
    every = [version for folder in folders for version in versions_on_disk(folder)]
    index = VersionIndex(every)
    referenced: dict[VersionKey, list[str]] = defaultdict(list)
    for source in (mlflow_references(tracking_uri, index),
                   package_references(archive_files(catalog, catalog_config, project_path), index)):
        for key, reasons in source.items():
            referenced[key] += reasons
    chosen = [version for version in every if not datasets or version.dataset in datasets]
    found: dict[str, list[str]] = defaultdict(list)
    for version in chosen:
        found[version.dataset].append(version.version)
    unfinished = {(v.dataset, v.version) for v in chosen if not v.finished}
    plan = plan_retention(found, keep_last, referenced, unfinished, remove_unfinished)
    return Pruning(plan, {(v.dataset, v.version): v for v in chosen})


def apply(pruning: Pruning) -> dict[VersionKey, str]:
    """Remove every version the plan removes; returns those that could not be removed, with why."""
    failed = {}
    for decision in pruning.plan.removed:
        key = (decision.dataset, decision.version)
        try:
            remove_version(pruning.on_disk[key])
        except OSError as error:
            logger.error("Could not remove %s: %s", pruning.on_disk[key].path, error)
            failed[key] = f"{pruning.on_disk[key].path}: {error}"
    return failed


def table(pruning: Pruning, shown_reasons: int = 2) -> str:
    """One line per version: dataset, version, keep or remove, size, and why it is kept."""
    rows = [("dataset", "version", "action", "size", "why kept")]
    for decision in pruning.plan.decisions:
        reasons = list(decision.reasons[:shown_reasons])
        if len(decision.reasons) > shown_reasons:
            reasons.append(f"{len(decision.reasons) - shown_reasons} more")
        rows.append((decision.dataset, decision.version, "keep" if decision.keep else "remove",
                     human_bytes(pruning.size(decision)), "; ".join(reasons)))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return "\n".join("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[4]]).rstrip()
                     for row in rows)


def summary(pruning: Pruning, applied: bool, failed: Collection[VersionKey] = ()) -> str:
    """The closing line: how many versions go (or went) and the bytes that frees."""
    total = len(pruning.plan.decisions)
    if not applied:
        return (f"Would remove {len(pruning.plan.removed)} of {total} versions, freeing "
                f"{human_bytes(pruning.bytes_freed)} (dry run: --apply removes them).")
    gone = [d for d in pruning.plan.removed if (d.dataset, d.version) not in failed]
    freed = sum(pruning.size(decision) for decision in gone)
    return f"Removed {len(gone)} of {total} versions, freeing {human_bytes(freed)}."
