"""``park render`` through the real CLI (typer's CliRunner): YAML to stdout or one file per object, and a
clean exit 2 with one ``path: reason`` line per problem on invalid config. Charts come from the pinned
folder (``$PARK_CHART_DIR`` or ``../shared/charts``): CI has no network to chart repositories."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from park.components.manifests import all_documents
from park.components.render import file_names, render_documents
from schemas import require_chart_dir, shipped_specs
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


@pytest.fixture(autouse=True)
def _charts():
    """Every render here needs the pinned charts."""
    require_chart_dir()


LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the pure-Python loader takes a minute on the CRDs


def load_all(text: str) -> list:
    return list(yaml.load_all(text, Loader=LOADER))


def load(text: str):
    return yaml.load(text, Loader=LOADER)


def render(*args: str):
    return RUNNER.invoke(app, ["render", *args])


def subsequence(short: list, long: list) -> bool:
    rest = iter(long)
    return all(any(item == other for other in rest) for item in short)


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_stdout_holds_the_crds_then_every_object_in_apply_order(stack):
    result = render(stack)
    assert result.exit_code == 0, result.output
    documents = load_all(result.stdout)
    assert documents == render_documents(SPECS[stack]), "render must print exactly render_documents()"
    assert subsequence(all_documents(SPECS[stack]), documents), "park-stack's own objects, in their order"
    crds = [i for i, d in enumerate(documents) if d["kind"] == "CustomResourceDefinition"]
    assert crds == list(range(len(crds))) and crds, "CRDs come first, all of them"


def test_out_writes_one_readable_file_per_object_in_apply_order(tmp_path):
    result = render("kind", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    expected = render_documents(SPECS["kind"])
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == file_names(expected)
    assert files[0].name == "0010-customresourcedefinition-alertmanagerconfigs.monitoring.coreos.com.yaml"
    assert any(f.name.endswith("-namespace-research.yaml") for f in files)
    assert [load(f.read_text()) for f in files] == expected


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
    assert load_all(result.stdout) == render_documents(SPECS["gcp"])


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
    documents = load_all(result.stdout)
    platform = render_documents(SPECS["kind"])
    assert documents[:len(platform)] == platform
    appended = documents[len(platform):]
    assert appended == render_workloads(SPECS["kind"])
    assert appended and all(d["apiVersion"] == "ray.io/v1" for d in appended)


@pytest.mark.skipif(importlib.util.find_spec("park.workloads") is None, reason="park.workloads not installed")
def test_team_and_priority_send_every_workload_there():
    from park.workloads import render_workloads

    result = render("kind", "--workloads", "--team", "serving", "--priority", "low")
    assert result.exit_code == 0, result.output
    documents = load_all(result.stdout)
    workloads = [d for d in documents if d["apiVersion"] == "ray.io/v1"]
    assert workloads == render_workloads(SPECS["kind"], team="serving", priority="low")
    for doc in workloads:
        labels = doc["metadata"]["labels"]
        assert labels["kueue.x-k8s.io/priority-class"] == "low", f"{doc['kind']} ignores --priority"
        assert doc["metadata"]["namespace"] == "serving", f"{doc['kind']} ignores --team"


def test_unknown_team_exits_2_without_a_traceback():
    result = render("kind", "--workloads", "--team", "nobody")
    assert result.exit_code == 2, result.output
    assert "nobody" in result.stderr and "Traceback" not in result.output


def test_team_without_workloads_is_a_usage_error():
    result = render("kind", "--team", "serving")
    assert result.exit_code == 2
    assert "--workloads" in result.output


def test_missing_chart_is_one_line_naming_the_folder_and_the_fix(tmp_path):
    result = render("kind", "--charts", str(tmp_path))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(tmp_path) in lines[0] and "kube-prometheus-stack-" in lines[0] and "--charts" in lines[0]
    assert "Traceback" not in result.output and result.stdout == ""


def test_console_script_runs_without_a_traceback(tmp_path):
    """The installed ``park`` entry point, end to end in a fresh process (wall time measured here: about
    5 s of CPU for the aws stack, most of it reading and writing KubeRay's megabyte CRDs)."""
    park = Path(sys.executable).with_name("park")
    if not park.exists():
        pytest.skip(f"no park console script beside {sys.executable}")
    done = subprocess.run([str(park), "render", "aws", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(render_documents(SPECS['aws']))} files" in done.stderr
