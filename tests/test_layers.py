"""The import graph keeps the layers a newcomer reads in ../shared/ARCHITECTURE.md ("Layout", dependency
direction): no import cycles, no import against the direction, and no import of a park module hidden inside a
function without a reason (issue 8, "Layers a newcomer can see").

The contracts live in ``.importlinter`` and import-linter checks them (grimp builds the graph). The source
folders are import packages under other names (pyproject ``package-dir``: ``components`` is
``park.components``), which grimp cannot follow through the editable install, so the test lays the ``park``
package out as symlinks in a scratch folder and runs ``lint-imports`` there.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"


def _contracts() -> dict[str, str]:
    """Contract id -> name, as .importlinter declares them."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(CONFIG)
    prefix = "importlinter:contract:"
    return {s.removeprefix(prefix): parser[s]["name"] for s in parser.sections() if s.startswith(prefix)}


def _package_folders() -> dict[str, Path]:
    """Import name -> source folder, from pyproject's ``[tool.setuptools] package-dir``."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in setuptools["package-dir"].items()}


def park_as_installed(folder: Path) -> Path:
    """``folder/park`` laid out the way the installed package imports: symlinks to the source folders."""
    folders = _package_folders()
    top = folder / "park"
    top.mkdir()
    for entry in folders["park"].iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for name, source in folders.items():
        if name.count(".") == 1:
            (top / name.split(".", 1)[1]).symlink_to(source, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> str:
    stage = park_as_installed(tmp_path_factory.mktemp("layers"))
    env = {**os.environ, "PYTHONPATH": str(stage)}
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                               "sys.exit(lint_imports_command())",
         "--config", str(CONFIG), "--no-cache", "--no-logo"],
        cwd=stage, env=env, capture_output=True, text=True, timeout=120,
    )
    assert "Contracts:" in run.stdout, f"lint-imports did not run:\n{run.stdout}\n{run.stderr}"
    return run.stdout


def test_the_staged_package_is_the_source_tree(tmp_path):
    """The graph is built from this checkout's files, not from an installed copy elsewhere."""
    stage = park_as_installed(tmp_path)
    assert (stage / "park" / "components" / "spec.py").resolve() == ROOT / "components" / "spec.py"


@pytest.mark.parametrize("contract", sorted(_contracts()))
def test_import_contract_kept(report, contract):
    name = _contracts()[contract]
    line = next((x for x in report.splitlines() if x.startswith(f"{name} ")), None)
    assert line is not None, f"contract {name!r} missing from the report:\n{report}"
    if not line.endswith("KEPT"):
        broken = report.split("Broken contracts", 1)[-1]
        section = broken.split(f"\n{name}\n", 1)[-1]
        pytest.fail(f"{name}: BROKEN\n{section.split(chr(10) * 3, 1)[0]}")


# --- imports inside functions -----------------------------------------------------------------------

LAZY_REASONS = ("# optional extra", "# start-up time")
"""What may keep an import of a park module inside a function (STYLE: imports at the top unless measured):
a comment on the import's first line starting with one of these, then what it is, e.g.
``# optional extra: workloads (torch)`` or ``# start-up time: rich tables``."""


def _park_import(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "park"
    return any(alias.name.split(".")[0] == "park" for alias in node.names)


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every import of a park module inside a function of ``path``."""
    source = path.read_text()
    lines = source.splitlines()
    found = set()
    for function in ast.walk(ast.parse(source)):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and _park_import(node):
                    found.add((node.lineno, lines[node.lineno - 1].strip()))
    return sorted(found)


def unjustified(text: str) -> bool:
    comment = text.partition("#")[2]
    return not any(re.match(re.escape(reason[2:]), comment.strip()) for reason in LAZY_REASONS)


def test_function_level_imports_of_park_modules_say_why():
    hidden = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for folder in _package_folders().values()
        for path in sorted(folder.rglob("*.py"))
        for line, text in function_level_imports(path)
        if unjustified(text)
    ]
    assert not hidden, (
        f"{len(hidden)} imports of park modules inside functions with no reason; move them to the top of the "
        f"module, or end the line with a comment starting {' or '.join(map(repr, LAZY_REASONS))}:\n"
        + "\n".join(hidden)
    )


def test_the_function_level_check_sees_a_hidden_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from park.components import spec\n"
                      "def g():\n    from park.workloads import train  # optional extra: workloads\n")
    flagged = [text for _, text in function_level_imports(module) if unjustified(text)]
    assert flagged == ["from park.components import spec"]
