"""The package's layering, bottom-up:

- base: modules that import nothing of the project but each other (errors, hashing, the shared
  names, ...) and the settings models (``parameters``), which the core takes as arguments;
- core: answering, knowledge, models, distillation, ... (no Kedro, no adapter);
- adapters: the Kedro datasets, the competition package and the pipelines, which never import each
  other, except that a pipeline node may build the package with ``packaging``;
- wiring: the Kedro project's settings, hooks and pipeline registry, and the command-line tools over
  the whole project (``versions``).

Every import points down or stays in its layer, and no two packages import each other, however
indirectly. Imports inside functions count as much as those at the top of a module."""

import ast
from collections import defaultdict

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "fsku_kedro"
LAYERS = (  # bottom-up; each entry a subpackage or a top-level module of fsku_kedro
    ("base", {"errors", "hashing", "text_decoding", "names", "log_setup", "plotting", "run_timing", "run_params",
              "parameters"}),
    ("core", {"contracts", "questions", "competition_csv", "prompt_templates", "answering", "compression",
              "distillation", "evaluation", "generation", "knowledge", "models"}),
    ("adapters", {"datasets", "packaging", "pipelines"}),
    ("wiring", {"settings", "hooks", "cli_hooks", "pipeline_registry", "__main__", "versions"}),
)
LEVEL = {unit: level for level, (_, units) in enumerate(LAYERS) for unit in units}
ADAPTERS = LAYERS[2][1]
ALLOWED = {("pipelines", "packaging")}  # the package node builds the archive's contents


def _module(path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(("fsku_kedro", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def _imports(path):
    """Every name ``path`` imports, relative imports resolved: ``import a.b`` yields ``a.b``, ``from a import
    b`` yields ``a.b`` (``b`` a submodule or a name in ``a``)."""
    package = _module(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _unit(module: str) -> str | None:
    """The subpackage or top-level module of fsku_kedro that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "fsku_kedro" and len(parts) > 1 else None


def _unit_graph() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> the imports that make the arrow."""
    arrows = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        source = _unit(module)
        for imported in _imports(path):
            target = _unit(imported)
            if source and target and target != source:
                arrows[(source, target)].append(f"{module} imports {imported}")
    return {arrow: sorted(set(lines)) for arrow, lines in arrows.items()}


def _cycle(arrows) -> list[str] | None:
    """One cycle of the graph (its units, the first repeated at the end), or None."""
    following = defaultdict(set)
    for source, target in arrows:
        following[source].add(target)
    state: dict[str, str] = {}  # "open" while on the current path, then "done"
    path: list[str] = []

    def visit(unit):
        state[unit] = "open"
        path.append(unit)
        for target in sorted(following[unit]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[unit] = "done"
        path.pop()
        return None

    for unit in sorted(following):
        if unit not in state and (found := visit(unit)):
            return found
    return None


def test_every_package_is_placed_in_a_layer():
    units = {_unit(_module(path)) for path in PACKAGE.rglob("*.py")} - {None}
    assert not units - LEVEL.keys(), f"place these in a layer of LAYERS: {sorted(units - LEVEL.keys())}"
    assert not LEVEL.keys() - units, f"LAYERS names what is not in the package: {sorted(LEVEL.keys() - units)}"


def test_no_two_packages_import_each_other():
    arrows = _unit_graph()
    cycle = _cycle(arrows)
    assert cycle is None, "a cycle between packages: " + " -> ".join(cycle) + "\n" + "\n".join(
        line for source, target in zip(cycle, cycle[1:]) for line in arrows[(source, target)][:3])


def test_a_cycle_is_found_and_named():
    assert _cycle({("a", "b"): [], ("b", "c"): [], ("c", "b"): []}) == ["b", "c", "b"]
    assert _cycle({("a", "b"): [], ("a", "c"): [], ("b", "c"): []}) is None


def test_no_import_points_up_a_layer():
    arrows = _unit_graph()
    wrong = [f"{line} ({LAYERS[LEVEL[source]][0]} -> {LAYERS[LEVEL[target]][0]})"
             for (source, target), lines in sorted(arrows.items())
             if source in LEVEL and target in LEVEL and LEVEL[target] > LEVEL[source]  # else: unplaced, named above
             for line in lines]
    assert not wrong, "imports that point up a layer:\n" + "\n".join(wrong)
    assert ("parameters", "names") in arrows and ("pipelines", "models") in arrows, "the check sees imports"


def test_no_adapter_imports_another():
    arrows = _unit_graph()
    wrong = [line for (source, target), lines in sorted(arrows.items())
             if source in ADAPTERS and target in ADAPTERS and (source, target) not in ALLOWED for line in lines]
    assert not wrong, "adapters that import each other:\n" + "\n".join(wrong)
