"""Where a parameter was set: which file of which configuration environment, or ``--params``.

Kedro's config loader merges the files and the runtime parameters; what it does not say is which
file set a key. ``ParameterSources`` asks the same loader for each parameters file on its own (its
patterns, its reading and resolvers), in Kedro's merge order, and remembers what each one sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_MISSING = object()


def _lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return _MISSING
        tree = tree[key]
    return tree


class ParameterSources:
    """The parameter files that ``loader`` reads for its base and run environment, then the runtime
    parameters, in the order Kedro merges them (later ones win)."""

    def __init__(self, loader: Any, run_env: str | None, runtime_params: dict | None):
        root = Path(loader.conf_source)
        patterns = loader.config_patterns["parameters"]
        self._layers: list[tuple[str, Any]] = []
        for env in dict.fromkeys([loader.base_env, run_env]):
            folder = root / env if env else None
            if folder is None or not folder.is_dir():
                continue
            files = sorted({path for pattern in patterns for path in folder.glob(pattern)
                            if path.is_file() and path.suffix in (".yml", ".yaml", ".json")})
            for path in files:
                try:
                    # Under the key "parameters" the loader merges the runtime parameters into every file.
                    content = loader.load_and_merge_dir_config(str(path.parent), [path.name], "one_parameters_file",
                                                               set())
                except Exception:  # noqa: BLE001 - the loader itself reports a broken file when the run reads it
                    content = {}
                name = path.relative_to(root.parent) if root.is_absolute() else path
                self._layers.append((str(name), content))
        if runtime_params:
            self._layers.append(("--params", runtime_params))

    def setting(self, path: tuple[str, ...]) -> list[str]:
        """Every source that sets exactly ``path``, in merge order."""
        return [name for name, tree in self._layers if _lookup(tree, path) is not _MISSING]

    def where(self, path: tuple[str, ...]) -> str:
        """The last source that sets ``path`` (or a parent of it), or "" when none does."""
        for depth in range(len(path), 0, -1):
            found = [name for name, tree in self._layers if _lookup(tree, path[:depth]) is not _MISSING]
            if found:
                return found[-1]
        return ""
