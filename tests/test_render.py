"""``park render`` through the real CLI (typer's CliRunner): YAML to stdout or one file per object, and a
clean exit 2 with one ``path: reason`` line per problem on invalid config."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from park.components.manifests import all_documents
from park.components.render import file_names
from schemas import shipped_specs
from typer.testing import CliRunner

from park.cli import app

SPECS = shipped_specs()
RUNNER = CliRunner()

BAD_STACK = """\
config:
  park:cloud: aws
  park:clusterName: bad
  park:region: us-west-2
  park:zones: [us-west-2a, us-west-2b]
  park:security: {allowedCidrs: [10.0.0.0/8]}
  park:nodePools:
    - {name: system, role: system, minNodes: 1}
    - {name: gpu, accelerator: nvidia-h200x}
  park:teams:
    - name: research
      quotas: [{pool: nowhere, gpus: 1}]
"""


def render(*args: str):
    return RUNNER.invoke(app, ["render", *args])


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_stdout_holds_every_object_the_builders_produce(stack):
    result = render(stack)
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert documents == all_documents(SPECS[stack]), "render must print exactly the builders' output"


def test_out_writes_one_readable_file_per_object_in_apply_order(tmp_path):
    result = render("kind", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    expected = all_documents(SPECS["kind"])
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == file_names(expected)
    assert files[0].name == "010-namespace-kuberay-system.yaml"
    assert "040-namespace-research.yaml" in [f.name for f in files]
    assert [yaml.safe_load(f.read_text()) for f in files] == expected


def test_out_replaces_an_earlier_render_but_keeps_other_files(tmp_path):
    (tmp_path / "999-configmap-gone.yaml").write_text("stale: true\n")
    (tmp_path / "README.md").write_text("mine\n")
    assert render("kind", "--out", str(tmp_path)).exit_code == 0
    names = {f.name for f in tmp_path.iterdir()}
    assert "999-configmap-gone.yaml" not in names
    assert "README.md" in names


def test_file_names_sort_in_apply_order_past_a_hundred_objects():
    docs = [{"kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": "ns"}} for i in range(150)]
    names = file_names(docs)
    assert names == sorted(names)
    assert names[0] == "0010-configmap-ns-c0.yaml"


def test_stack_given_as_a_path(tmp_path):
    source = Path(__file__).resolve().parents[1] / "stacks" / "Pulumi.gcp.yaml"
    copy = tmp_path / "Pulumi.mine.yaml"
    copy.write_text(source.read_text())
    result = render(str(copy))
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.stdout)) == all_documents(SPECS["gcp"])


def test_invalid_config_exits_2_with_one_path_line_per_problem(tmp_path):
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text(BAD_STACK)
    result = render(str(stack))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("nodePools[1].accelerator: unknown 'nvidia-h200x'") for line in lines), lines
    assert any(line.startswith("teams[0].quotas[0].pool: unknown pool 'nowhere'") for line in lines), lines
    assert "Traceback" not in result.output
    assert result.stdout == "", "nothing is rendered from an invalid config"


def test_unknown_stack_exits_2_naming_the_known_ones():
    result = render("no-such-stack")
    assert result.exit_code == 2
    assert "no stack 'no-such-stack'" in result.stderr and "kind" in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("park.workloads") is None, reason="park.workloads not installed")
def test_workloads_flag_appends_the_reference_workloads():
    from park.workloads import render_workloads

    result = render("kind", "--workloads")
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    platform = all_documents(SPECS["kind"])
    assert documents[:len(platform)] == platform
    appended = documents[len(platform):]
    assert appended == render_workloads(SPECS["kind"])
    assert appended and all(d["apiVersion"] == "ray.io/v1" for d in appended)


def test_console_script_runs_without_a_traceback(tmp_path):
    """The installed ``park`` entry point, end to end in a fresh process."""
    park = Path(sys.executable).with_name("park")
    if not park.exists():
        pytest.skip(f"no park console script beside {sys.executable}")
    done = subprocess.run([str(park), "render", "aws", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(all_documents(SPECS['aws']))} files" in done.stderr
