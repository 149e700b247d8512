"""docs/getting-started.md and the docs it leans on say what the commands really do.

Every `park` command in a ```console block of the guide is run again and its output compared with what
the guide shows (a line `...`, or `...` inside a line, stands for what was cut). Every other
`park conformance` command it shows must get as far as looking for its cluster. Commands of other tools
(pulumi, kind, aws, gcloud) cannot run here and are not checked.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "getting-started.md"
PARK = Path(sys.executable).parent / "park"
KIND_STORAGE = "/mnt/park-storage"
"""The kind stack's storage.localPath; the guide writes there, the test into a temporary folder instead."""


def fenced_blocks(text: str, language: str) -> list[list[str]]:
    blocks = re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    return [block.splitlines() for block in blocks]


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, the output lines shown under it) for every `$ ` line of every console block."""
    shown = []
    for block in fenced_blocks(text, "console"):
        for line in block:
            if line.startswith("$ "):
                shown.append((line[2:], []))
            elif shown:
                shown[-1][1].append(line)
    return shown


def output_pattern(lines: list[str]) -> re.Pattern[str]:
    parts = []
    for line in lines:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.rstrip().split("...")) + r"\n")
    return re.compile("".join(parts))


def run_park(command: str, cwd: Path, storage: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command.replace(KIND_STORAGE, str(storage)))
    assert argv[0] == ".venv/bin/park", f"not a park command: {command}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARK_")}
    env["KUBECONFIG"] = str(cwd / "no-kubeconfig")  # never a real cluster, whatever this machine has
    return subprocess.run([str(PARK), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def shown_park_commands() -> list[tuple[str, list[str]]]:
    commands = console_commands(GUIDE.read_text())
    assert commands, "the guide shows no park command with its output any more; update this test"
    return commands


@pytest.mark.parametrize("command, shown", shown_park_commands(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_guide_shows_what_the_park_command_prints(command, shown, tmp_path):
    storage = tmp_path / "park-storage"
    result = run_park(command, tmp_path, storage)
    printed = "".join(line.rstrip() + "\n" for line in (result.stdout + result.stderr).splitlines())
    expected = [line.replace(KIND_STORAGE, str(storage)) for line in shown]
    assert output_pattern(expected).fullmatch(printed), (
        f"docs/getting-started.md shows for `{command}`:\n" + "\n".join(expected)
        + f"\n\nbut it printed (exit {result.returncode}):\n{printed}"
    )


def test_every_conformance_command_in_the_guide_parses_and_looks_for_its_cluster(tmp_path):
    """A misspelled option or stack would stop at the command line; these get to the kubeconfig lookup."""
    commands = sorted({line.split("#")[0].strip() for block in fenced_blocks(GUIDE.read_text(), "bash")
                       for line in block if line.startswith(".venv/bin/park conformance ")})
    assert len(commands) >= 3, f"expected the kind, aws and gcp conformance commands, found {commands}"
    for command in commands:
        result = run_park(command, tmp_path, tmp_path / "park-storage")
        printed = result.stdout + result.stderr
        assert result.returncode == 2 and "error: no usable kubeconfig" in printed, (
            f"`{command}` did not reach the cluster lookup (exit {result.returncode}):\n{printed[-600:]}"
        )


def test_train_readme_applies_a_file_that_park_render_writes(tmp_path):
    """workloads/train/README.md once applied a park-train.yaml that nothing wrote."""
    readme = (ROOT / "workloads" / "train" / "README.md").read_text()
    render = re.search(r"^(\.venv/bin/park render [^#\n]*)", readme, re.MULTILINE)
    apply = re.search(r"^kubectl apply --server-side -f (\S+)", readme, re.MULTILINE)
    assert render and apply, "the train README shows no `park render` and `kubectl apply -f FILE` any more"
    result = run_park(render.group(1).strip(), tmp_path, tmp_path / "park-storage")
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.glob(apply.group(1)))
    assert len(files) == 1, f"{apply.group(1)} matches {len(files)} rendered files: {[f.name for f in files]}"
    job = yaml.safe_load(files[0].read_text())
    meta = job["metadata"]
    assert (job["kind"], meta["namespace"], meta["name"]) == ("RayJob", "research", "park-train")


def test_benchmarks_do_not_call_a_rerun_owed_that_they_print():
    for section in (ROOT / "docs" / "benchmarks.md").read_text().split("\n## "):
        if "Quiet-machine rerun" in section:
            assert "rerun is still owed" not in section, section.splitlines()[0]


def test_readme_creates_the_stack_before_pulumi_up():
    """`pulumi stack select` fails on a fresh backend; `init` with the name of a stacks/ file picks it up."""
    readme = (ROOT / "README.md").read_text()
    provisioning = readme[readme.index("## Provisioning with Pulumi"):]
    block = fenced_blocks(provisioning, "bash")[0]
    assert block[0].startswith("pulumi stack init "), block
    assert "docs/getting-started.md" in provisioning.split("\n## ")[0]
