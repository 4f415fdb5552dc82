"""The package's layering: the core (answering, knowledge, models, distillation, ...) imports no
adapter; the adapters (Kedro datasets, the competition package, the pipelines) sit on the core and
never import each other, except that a pipeline node may build the package with ``packaging``; the
Kedro project's wiring (settings, hooks, pipeline registry) sits on top of them all."""

import ast

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "fsku_kedro"
ADAPTERS = {"datasets", "packaging", "pipelines"}
WIRING = {"settings", "hooks", "pipeline_registry", "__main__"}
ALLOWED = {("pipelines", "packaging")}  # the package node builds the archive's contents


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ADAPTERS:
        return parts[1]
    return "wiring" if len(parts) == 2 and parts[1] in WIRING else "core"


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_module_imports_up_or_across_the_adapter_layers():
    edges = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("fsku_kedro", *path.relative_to(PACKAGE).with_suffix("").parts))
        for imported in _imports(path):
            if imported.startswith("fsku_kedro.") and _layer(imported) != _layer(module):
                edges.add((module, _layer(module), _layer(imported), imported))
    wrong = sorted(f"{module} ({source}) imports {imported} ({target})" for module, source, target, imported in edges
                   if source != "wiring" and target != "core" and (source, target) not in ALLOWED)
    assert not wrong, "imports that run against the layers:\n" + "\n".join(wrong)
    assert ("pipelines", "core") in {(source, target) for _, source, target, _ in edges}, "the check sees imports"
