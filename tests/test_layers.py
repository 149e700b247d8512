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
import dataclasses
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from park.components.cloud_rules import CloudCapabilities

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
        section = report.split("Broken contracts", 1)[-1].split(f"\n{name}\n", 1)[-1]
        for other in _contracts().values():  # the report goes on with the next broken contract
            section = section.split(f"\n{other}\n", 1)[0]
        pytest.fail(f"{name}: BROKEN\n{section}")


# --- imports inside functions -----------------------------------------------------------------------

LAZY_REASON = re.compile(r"\bextras?\b|\bstart-up\b|\bimports\b")
"""What may keep an import of a park module inside a function (STYLE: imports at the top unless there is a
measured reason): a comment on the import's first line that names the reason, an optional extra the imported
module needs, the start-up time it would cost, or what heavy module it imports, e.g.
``# optional extra: workloads (pyarrow)``, ``# start-up time: 2.8 s (Helm SDK)``, ``# imports Ray``."""


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
    return not LAZY_REASON.search(text.partition("#")[2])


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
        "module, or end the line with a comment naming the optional extra or the start-up time it saves:\n"
        + "\n".join(hidden)
    )


def test_the_function_level_check_sees_a_hidden_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from park.components import spec\n"
                      "def g():\n    from park.workloads import train  # optional extra: workloads\n")
    flagged = [text for _, text in function_level_imports(module) if unjustified(text)]
    assert flagged == ["from park.components import spec"]


# --- cloud capabilities ------------------------------------------------------------------------------------


def test_every_declared_cloud_capability_is_read():
    """A capability flag nothing reads is a promise nobody keeps (issue 8 found five of eight unread): each
    field of ``CloudCapabilities`` is read as an attribute somewhere outside the module that declares it, by the
    code or by a contract test (``network_policy_datapath``: tests/test_cloud_contracts.py)."""
    declared = {f.name for f in dataclasses.fields(CloudCapabilities)}
    read = {
        node.attr
        for folder in [*_package_folders().values(), ROOT / "tests"]
        for path in folder.rglob("*.py")
        if path.name not in ("cloud_rules.py", "test_layers.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
    }
    assert declared <= read, f"declared, never read: {sorted(declared - read)}"
