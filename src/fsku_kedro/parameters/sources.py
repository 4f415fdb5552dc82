"""Where a parameter was set: which file of which configuration environment, or ``--params``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_MISSING = object()


def _lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return _MISSING
        tree = tree[key]
    return tree


class ParameterSources:
    """The parameter files of ``conf_source`` for the base and the run environment, and the runtime
    parameters, in the order Kedro merges them (later ones win)."""

    def __init__(self, conf_source: str | Path, base_env: str, run_env: str | None, runtime_params: dict | None):
        root = Path(conf_source)
        self._layers: list[tuple[str, Any]] = []
        for env in dict.fromkeys([base_env, run_env]):
            if not env:
                continue
            folder = root / env
            files = sorted({*folder.glob("parameters*"), *folder.glob("**/parameters*")}) if folder.is_dir() else []
            for path in files:
                if path.suffix in (".yml", ".yaml") and path.is_file():
                    try:
                        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                    except yaml.YAMLError:
                        content = {}
                    self._layers.append((str(path.relative_to(root.parent) if root.is_absolute() else path), content))
        if runtime_params:
            self._layers.append(("--params", runtime_params))

    def where(self, path: tuple[str, ...]) -> str:
        """The last source that sets ``path`` (or a parent of it), or "" when none does."""
        for depth in range(len(path), 0, -1):
            found = [name for name, tree in self._layers if _lookup(tree, path[:depth]) is not _MISSING]
            if found:
                return found[-1]
        return ""
