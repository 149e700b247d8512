"""The example CI workflow (docs/ci/conformance-workflow.yaml) would run as written in a fork.

jactionlint (the `dev` extra) checks what actionlint checks plus the token permissions an action needs (an
OIDC login without `id-token: write` fails at run time). The tests below add what no linter can know: the
test-report action's permission, the workflow's own documentation of the variables it reads, and that its
jobs do not share one concurrency group.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "docs" / "ci" / "conformance-workflow.yaml"


def linter() -> str:
    """The jactionlint beside this Python (the venv's), else on PATH; a missing one fails, never skips."""
    found = shutil.which("jactionlint", path=str(Path(sys.executable).parent)) or shutil.which("jactionlint")
    if not found:
        pytest.fail("jactionlint is not installed: pip install -e '.[dev]' (or `make setup`)")
    return found


def lint(workflow: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Lint a copy placed where a fork keeps it, away from any config file of this checkout. shellcheck and
    pyflakes are switched off so the verdict does not depend on what else the machine has installed."""
    target = tmp_path / ".github" / "workflows" / "conformance.yaml"
    target.parent.mkdir(parents=True)
    target.write_bytes(workflow.read_bytes())
    return subprocess.run(
        [linter(), "--no-online", "--shellcheck=", "--pyflakes=", "--no-color", "--format", "oneline",
         str(target.relative_to(tmp_path))],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )


def load(workflow: Path) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); only the jobs are looked at here.
    return yaml.safe_load(workflow.read_text())


def header(workflow: Path) -> str:
    """The comment block the workflow opens with: what a user reads before copying it."""
    lines = []
    for line in workflow.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def test_example_workflow_passes_the_linter(tmp_path):
    result = lint(WORKFLOW, tmp_path)
    assert result.returncode == 0, f"jactionlint on {WORKFLOW.name}:\n{result.stdout}{result.stderr}"


def test_jobs_that_publish_a_test_report_may_write_checks():
    """mikepenz/action-junit-report v6.4.2 README, "PR run permissions": the action requires `checks: write`;
    with the read-only token many repositories default to, the report step fails."""
    jobs = load(WORKFLOW)["jobs"]
    publishing = {name: job for name, job in jobs.items()
                  if any(str(step.get("uses", "")).startswith("mikepenz/action-junit-report@")
                         for step in job["steps"])}
    assert publishing, "no job publishes junit.xml any more; update this test"
    for name, job in publishing.items():
        assert (job.get("permissions") or {}).get("checks") == "write", \
            f"job {name} publishes a test report without `permissions: checks: write`"


def test_every_secret_and_variable_the_workflow_reads_is_documented_in_its_header():
    """A fork must know what to create before the first run: each `secrets.X` / `vars.X` is named in the
    opening comment."""
    text = WORKFLOW.read_text()
    documented = header(WORKFLOW)
    used = set(re.findall(r"\b(?:secrets|vars)\.([A-Za-z_][A-Za-z0-9_]*)", text.replace(documented, "")))
    assert used, "the workflow reads no secret or variable; update this test"
    missing = sorted(name for name in used if not re.search(rf"^#\s+{name}\b", documented, re.MULTILINE))
    assert not missing, f"read but not documented at the top of {WORKFLOW.name}: {', '.join(missing)}"


def test_local_and_cluster_runs_never_share_a_concurrency_group():
    """One workflow-level group would make every push's 30-minute local run queue behind the 90-minute nightly
    cluster run (and, with a single pending slot, cancel queued runs)."""
    workflow = load(WORKFLOW)
    assert "concurrency" not in workflow, "workflow-level concurrency puts every job in one group"
    groups = {name: job.get("concurrency", {}).get("group") for name, job in workflow["jobs"].items()}
    assert all(groups.values()), f"every job sets its own concurrency group: {groups}"
    assert len(set(groups.values())) == len(groups), f"jobs share a concurrency group: {groups}"


@pytest.mark.parametrize("cloud, login_action", [
    ("aws", "aws-actions/configure-aws-credentials@"),
    ("gcp", "google-github-actions/auth@"),
])
def test_cluster_job_logs_in_to_each_cloud_a_shipped_stack_runs_on(cloud, login_action):
    """The nightly run takes any shipped stack: for each cloud it logs in (OIDC) and builds a kubeconfig."""
    assert any(f"park:cloud: {cloud}" in path.read_text() for path in (ROOT / "stacks").glob("Pulumi.*.yaml"))
    steps = load(WORKFLOW)["jobs"]["cluster"]["steps"]
    logins = [s for s in steps if str(s.get("uses", "")).startswith(login_action)]
    assert logins, f"the cluster job has no {login_action.rstrip('@')} step for {cloud} stacks"
    only_there = f"env.CLOUD == '{cloud}'"
    assert all(s.get("if") == only_there for s in logins), f"{login_action} runs for other clouds too"
    kubeconfig = [s for s in steps if s.get("if") == f"env.CLOUD == '{cloud}'" and "kubeconfig" in
                  str(s.get("name", "")).lower()]
    assert kubeconfig, f"the cluster job builds no kubeconfig for {cloud} stacks"
