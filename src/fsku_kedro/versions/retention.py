"""The retention rule: which versions of a versioned dataset to keep and which to remove.

Pure: it sees version strings and references, never the disk, so it can be read and tested alone.
Kedro's version strings are UTC timestamps (``2026-12-07T04.00.03.900Z``) and Kedro loads the one that
sorts last, so "the last N" are the N that sort last.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

VersionKey = tuple[str, str]  # (dataset, version)
UNFINISHED = "unfinished: a save may still be writing it"


@dataclass(frozen=True)
class Decision:
    """One version and what happens to it; ``reasons`` says why it is kept (empty: it is removed)."""

    dataset: str
    version: str
    reasons: tuple[str, ...]

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


@dataclass(frozen=True)
class RetentionPlan:
    """Every version found, in dataset order and newest first within a dataset."""

    decisions: tuple[Decision, ...]

    @property
    def kept(self) -> list[Decision]:
        return [decision for decision in self.decisions if decision.keep]

    @property
    def removed(self) -> list[Decision]:
        return [decision for decision in self.decisions if not decision.keep]


def plan_retention(found: Mapping[str, Iterable[str]], keep_last: int,
                   referenced: Mapping[VersionKey, Iterable[str]] | None = None,
                   unfinished: Collection[VersionKey] = (), remove_unfinished: bool = False) -> RetentionPlan:
    """Keep, of each dataset in ``found`` (dataset -> its versions on disk), the ``keep_last`` newest
    finished versions and every version in ``referenced`` ((dataset, version) -> why: an MLflow run, a
    package); remove the rest.

    A version in ``unfinished`` (its folder holds no saved artefact) does not count towards the last
    ``keep_last``, and it is kept, since a running save may be writing it, unless ``remove_unfinished``.
    A reference to a version that is not in ``found`` changes nothing.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1 (Kedro loads the newest version), got {keep_last}")
    referenced = referenced or {}
    decisions = []
    for dataset in sorted(found):
        versions = sorted(set(found[dataset]), reverse=True)
        newest = set([version for version in versions if (dataset, version) not in unfinished][:keep_last])
        for version in versions:
            key = (dataset, version)
            reasons = [f"one of the last {keep_last}"] if version in newest else []
            reasons += sorted(set(referenced.get(key, ())))
            if key in unfinished and not remove_unfinished:
                reasons.append(UNFINISHED)
            decisions.append(Decision(dataset, version, tuple(reasons)))
    return RetentionPlan(tuple(decisions))
