"""``park ARGS`` run in the test's own process, answered as ``subprocess.run([".venv/bin/park", ...])`` answers.

A fresh ``park`` process spends seconds importing (Pulumi, Helm's SDK, torch for tiny-model) and rendering charts
that the test process has already imported and rendered (charts are cached per process); typer's CliRunner calls
the same ``park.cli:app`` the console script calls (``[project.scripts]`` in pyproject.toml,
tests/test_cli.py checks the script itself). What CliRunner would keep to itself is put where a console script
shows it: an exception ``park`` did not handle goes to stderr as the traceback it would print.
"""

from __future__ import annotations

import os
import subprocess
import traceback
from pathlib import Path

from typer.testing import CliRunner

from park.cli import app

RUNNER = CliRunner()


def park_in_process(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                    unset_prefixes: tuple[str, ...] = ("PARK_",)) -> subprocess.CompletedProcess[str]:
    """``park *args`` in ``cwd`` (default: this process's), with ``env`` added to the environment and the
    variables named ``unset_prefixes*`` removed (as the tests' subprocess calls remove them)."""
    unset: dict[str, str | None] = {name: None for name in os.environ if name.startswith(unset_prefixes)}
    previous = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = RUNNER.invoke(app, list(args), env={**unset, **(env or {})}, prog_name="park")
    finally:
        os.chdir(previous)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["park", *args], result.exit_code, result.stdout, stderr)
