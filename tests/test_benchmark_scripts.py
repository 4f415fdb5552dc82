"""Every script under benchmarks/ still fits the code it measures: each name it imports from the
project (at the top or inside a function) exists, and each command-line script builds its parser and
answers ``--help``. A rename in the package fails here, not at the script's next long run."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "benchmarks"
SCRIPTS = sorted(path for path in BENCHMARKS.glob("*.py"))
LOCAL = {path.stem for path in SCRIPTS}


def _imports(path) -> list[tuple[str, str | None, int]]:
    """(module, name or None, line) for every import of the project or of a sibling script in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            root = node.module.split(".")[0]
            if root == "fsku_kedro" or root in LOCAL:
                found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names
                      if alias.name.split(".")[0] in ("fsku_kedro", *LOCAL)]
    return found


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.name)
def test_every_project_name_a_benchmark_imports_exists(path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    missing = []
    for module_name, name, line in _imports(path):
        module = importlib.import_module(module_name)
        if name is not None and name != "*" and not hasattr(module, name):
            try:  # a submodule imported by name
                importlib.import_module(f"{module_name}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{path.name}:{line}: {module_name}.{name}")
    assert not missing, missing


COMMANDS = [path for path in SCRIPTS if "argparse" in path.read_text(encoding="utf-8")
            and "__main__" in path.read_text(encoding="utf-8")]


def test_each_command_line_script_answers_help():
    """All parsers in one interpreter: each script is imported and its ``main`` asked for ``--help``."""
    program = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(BENCHMARKS)!r})\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    module = importlib.import_module(name)\n"
        "    sys.argv = [name + '.py', '--help']\n"
        "    try:\n"
        "        module.main()\n"
        "        failed.append(name + ': main() returned instead of printing its help')\n"
        "    except SystemExit as done:\n"
        "        if done.code not in (0, None):\n"
        "            failed.append(f'{name}: exit {done.code}')\n"
        "print('FAILED', failed)\n"
    )
    assert COMMANDS
    done = subprocess.run([sys.executable, "-c", program, *(path.stem for path in COMMANDS)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FAILED []" in done.stdout, done.stdout[-3000:]
