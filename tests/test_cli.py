"""The ``park`` command's conventions (issue 11, item 6): ``--version``, ``-h``, shell completion, bare ``park``
is help with exit 0, the stack is an argument everywhere, and an output path that cannot be written is one
line and exit 2, never a traceback. The console script runs in a fresh process where the traceback would
show (typer prints it; CliRunner would only keep the exception); the rest goes through typer's CliRunner, or
through tests/park_in_process.py where a traceback must show (it prints the exception CliRunner kept)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer
from park_in_process import park_in_process
from typer.testing import CliRunner

from park.cli import app

ROOT = Path(__file__).resolve().parent.parent
PARK = Path(sys.executable).with_name("park")
RUNNER = CliRunner()


def park(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    if not PARK.exists():
        pytest.skip(f"no park console script beside {sys.executable}")
    return subprocess.run([str(PARK), *args], capture_output=True, text=True, timeout=300, check=False, cwd=cwd,
                          env={**os.environ, **(env or {})})


def unwritable_folder() -> Path:
    """A path even root cannot create (sysfs refuses new entries); skips where there is none."""
    candidate = Path("/sys/park-cli-test-out")
    try:
        candidate.mkdir()
    except OSError:
        return candidate
    candidate.rmdir()
    pytest.skip("no path here that refuses writes")


def test_bare_park_prints_the_help_and_exits_0():
    done = park()
    assert done.returncode == 0, done.stderr
    assert "Usage: park" in done.stdout
    for command in ("render", "kind-config", "cost", "tiny-model", "conformance"):
        assert command in done.stdout


def test_version_is_the_installed_project_version():
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    done = park("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"park-stack {expected}"


def test_show_completion_prints_a_completion_script():
    """typer's --show-completion / --install-completion (click's shell_complete, env var _PARK_COMPLETE).

    By default typer detects the shell from the parent processes (under `make` that is `sh`, which has no
    completion); typer's own switch for its tests makes the option take the shell by name instead."""
    done = park("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert done.returncode == 0, done.stderr
    assert "_PARK_COMPLETE" in done.stdout and "complete " in done.stdout


def test_help_offers_completion_and_version():
    result = RUNNER.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for option in ("--install-completion", "--show-completion", "--version", "-h"):
        assert option in result.output


def all_commands() -> list[str]:
    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["", *all_commands()])
def test_dash_h_is_help_everywhere(command):
    result = RUNNER.invoke(app, [*command.split(), "-h"], prog_name="park")
    assert result.exit_code == 0, result.output
    assert f"Usage: park {command}".rstrip() in result.output


@pytest.mark.parametrize("args, message", [
    (["render", "kind", "--out", "{file}"], "error: --out {file} exists and is not a folder"),
    (["kind-config", "kind", "--out", "{file}/kind.yaml"], "error: --out {file}/kind.yaml: Not a directory"),
    (["tiny-model", "{file}/model"], "error: {file}/model: Not a directory"),
    (["conformance", "--out", "{file}"], "error: --out {file} exists and is not a folder"),
], ids=["render", "kind-config", "tiny-model", "conformance"])
def test_an_output_path_under_or_at_a_file_is_one_line_exit_2(args, message, tmp_path):
    """kind-config and tiny-model through the console script (no other test runs it for them); render and
    conformance, which other tests run as the console script, in this process (render's charts are then
    rendered once for this module)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("mine\n")
    argv = [arg.replace("{file}", str(a_file)) for arg in args]
    if args[0] in ("kind-config", "tiny-model"):
        done = park(*argv, cwd=tmp_path)
    else:
        done = park_in_process(*argv, cwd=tmp_path, unset_prefixes=())
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [message.replace("{file}", str(a_file))]
    assert a_file.read_text() == "mine\n"


def test_kind_config_into_a_folder_is_one_line_exit_2(tmp_path):
    result = RUNNER.invoke(app, ["kind-config", "kind", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: --out {tmp_path} is a folder; give the name of a file\n"


@pytest.mark.parametrize("args", [
    ["render", "kind", "--out", "{ro}"],
    ["kind-config", "kind", "--out", "{ro}/kind.yaml"],
    ["tiny-model", "{ro}"],
    ["conformance", "--out", "{ro}"],
], ids=["render", "kind-config", "tiny-model", "conformance"])
def test_an_output_path_nobody_may_write_is_one_line_exit_2(args):
    read_only = unwritable_folder()
    result = RUNNER.invoke(app, [arg.replace("{ro}", str(read_only)) for arg in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(read_only) in lines[0], lines
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def test_conformance_takes_the_stack_as_an_argument_like_render(tmp_path):
    """The kind stack's context (kind-park-kind) is looked up: the argument reached the run, and it reached
    it before any cluster is needed (no kubeconfig here)."""
    result = RUNNER.invoke(app, ["conformance", "kind", "--target", "kubernetes", "--kubeconfig",
                                 str(tmp_path / "no-kubeconfig"), "--out", str(tmp_path / "evidence")])
    assert result.exit_code == 2, result.output
    assert "kind-park-kind" in result.output and "no usable kubeconfig" in result.output


def test_conformance_stack_argument_and_option_must_agree(tmp_path):
    result = RUNNER.invoke(app, ["conformance", "aws", "--stack", "kind", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "STACK aws and --stack kind differ" in result.output
    assert list(tmp_path.iterdir()) == [], "nothing ran"
