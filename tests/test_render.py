"""``park render`` through the real CLI (typer's CliRunner): YAML to stdout or one file per object, and a
clean exit 2 with one ``path: reason`` line per problem on invalid config. Charts come from the pinned
folder (``$PARK_CHART_DIR`` or ``../shared/charts``): CI has no network to chart repositories."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from park.components.manifests import all_documents
from schemas import require_chart_dir, shipped_specs
from typer.testing import CliRunner

from park.cli import app
from park.render import RECORD_FILE, OutFolderError, file_names, render_documents, write_directory

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
DOCUMENT_START = re.compile(r"^---\n", re.MULTILINE)


@functools.cache
def _parsed(text: str) -> tuple:
    """The documents of ``text``, parsed once per module: the tests here read the same objects again and again
    (a stack by name and by path, the platform part of --workloads, stdout and --out), and reading megabytes
    of CRDs costs seconds each time. Read-only: several tests share them."""
    return tuple(yaml.load_all(text, Loader=LOADER))


@pytest.fixture(autouse=True, scope="module")
def _forget_parsed_documents():
    yield
    _parsed.cache_clear()


def load_all(text: str) -> list:
    """Every document of a YAML stream; split at its document markers, so that each document is parsed once
    (a marker inside a value would leave pieces that do not parse, or parse to other documents)."""
    return [doc for piece in DOCUMENT_START.split(text) for doc in _parsed(piece)]


def load(text: str):
    """The one document of a file."""
    (document,) = _parsed(text)
    return document


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


@pytest.fixture(scope="module")
def kind_out(tmp_path_factory):
    """``park render kind --out NEW_FOLDER``, once for the tests that only read what it wrote: (result, folder)."""
    require_chart_dir()
    folder = tmp_path_factory.mktemp("render-kind-out")
    return render("kind", "--out", str(folder)), folder


def test_out_writes_one_readable_file_per_object_in_apply_order(kind_out):
    result, tmp_path = kind_out
    assert result.exit_code == 0, result.output
    expected = render_documents(SPECS["kind"])
    files = sorted(f for f in tmp_path.iterdir() if f.name != RECORD_FILE)
    assert [f.name for f in files] == file_names(expected)
    assert files[0].name == "0010-customresourcedefinition-alertmanagerconfigs.monitoring.coreos.com.yaml"
    assert any(f.name.endswith("-namespace-research.yaml") for f in files)
    assert [load(f.read_text()) for f in files] == expected


def digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (sub-folders too) -> sha256 of its bytes."""
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


def foreign_folder(folder: Path) -> dict[str, str]:
    """A folder a user already keeps things in, named the way render names its files (issue 11, item 1)."""
    (folder / "001-my-kustomization.yaml").write_text("apiVersion: kustomize.config.k8s.io/v1beta1\n")
    (folder / "999-team-secret.yaml").write_bytes(b"kind: Secret\ndata: {token: c2VjcmV0}\n\x00")
    (folder / "0010-customresourcedefinition-mine.yaml").write_text("mine\n")
    (folder / "README.md").write_text("mine\n")
    (folder / "overlays").mkdir()
    (folder / "overlays" / "100-patch.yaml").write_text("patch\n")
    return digests(folder)


def test_out_refuses_a_folder_of_foreign_files_and_leaves_them_byte_for_byte(tmp_path):
    before = foreign_folder(tmp_path)
    result = render("kind", "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and RECORD_FILE in lines[0] and "--force" in lines[0], lines
    assert "Traceback" not in result.output
    assert digests(tmp_path) == before, "nothing written, nothing removed"


def test_force_writes_beside_foreign_files_and_later_renders_keep_them_byte_for_byte(tmp_path):
    before = foreign_folder(tmp_path)
    del before["0010-customresourcedefinition-mine.yaml"]  # not a name render writes: stays too
    assert render("kind", "--out", str(tmp_path), "--force").exit_code == 0
    after = digests(tmp_path)
    assert {name: after[name] for name in before} == before
    assert set(after) - set(before) - {"0010-customresourcedefinition-mine.yaml"} == {
        RECORD_FILE, *file_names(render_documents(SPECS["kind"]))}
    again = render("kind", "--out", str(tmp_path))  # now recorded: no --force needed, still nothing of theirs
    assert again.exit_code == 0, again.output
    assert digests(tmp_path) == after


def test_out_records_each_file_it_wrote_under_a_name_kubectl_apply_skips(kind_out):
    """kubectl apply -f DIR reads every .json, .yaml and .yml file in DIR (kubernetes cli-runtime
    pkg/resource/visitor.go: FileExtensions, ignoreFile), so the record must have none of those."""
    result, tmp_path = kind_out
    assert result.exit_code == 0, result.output
    assert Path(RECORD_FILE).suffix not in {".json", ".yaml", ".yml"}
    record = json.loads((tmp_path / RECORD_FILE).read_text())
    assert record["stack"] == "kind" and record["park"]
    files = digests(tmp_path)
    assert {name: "sha256:" + files[name] for name in record["files"]} == record["files"]
    assert set(record["files"]) == set(files) - {RECORD_FILE}


CONFIG_MAPS = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": "ns"}}
               for i in range(4)]


def test_stale_files_of_the_previous_render_are_removed(tmp_path):
    write_directory(CONFIG_MAPS, tmp_path)
    (tmp_path / "notes.txt").write_text("mine\n")
    done = write_directory(CONFIG_MAPS[:2], tmp_path)
    assert sorted(done.removed) == file_names(CONFIG_MAPS)[2:]
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted([RECORD_FILE, "notes.txt",
                                                                 *file_names(CONFIG_MAPS[:2])])


def test_an_edited_file_the_stack_no_longer_makes_is_kept_and_named(tmp_path):
    write_directory(CONFIG_MAPS, tmp_path)
    edited = tmp_path / file_names(CONFIG_MAPS)[3]
    edited.write_text(edited.read_text() + "data: {mine: 'yes'}\n")
    content = edited.read_bytes()
    done = write_directory(CONFIG_MAPS[:2], tmp_path)
    assert done.kept_edited == [edited.name] and edited.read_bytes() == content
    assert file_names(CONFIG_MAPS)[2] in done.removed


def test_an_edited_file_render_would_overwrite_is_refused_unless_force(tmp_path):
    write_directory(CONFIG_MAPS, tmp_path)
    edited = tmp_path / file_names(CONFIG_MAPS)[0]
    edited.write_text("edited\n")
    before = digests(tmp_path)
    with pytest.raises(OutFolderError, match="edited since park render wrote it"):
        write_directory(CONFIG_MAPS[:1], tmp_path)
    assert digests(tmp_path) == before, "refused before removing or writing anything"
    write_directory(CONFIG_MAPS[:1], tmp_path, force=True)
    assert load(edited.read_text()) == CONFIG_MAPS[0]


def test_out_that_is_a_file_is_one_line_exit_2(tmp_path):
    target = tmp_path / "rendered"
    target.write_text("mine\n")
    result = render("kind", "--out", str(target))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: --out {target} exists and is not a folder"
    assert target.read_text() == "mine\n"


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
    assert any(line.startswith(f"{stack}:9: nodePools[1].accelerator (pool gpu): unknown 'nvidia-h200x'")
               for line in lines), lines
    assert any(line.startswith(f"{stack}:12: teams[0].quotas[0].pool (team research): unknown pool 'nowhere'")
               for line in lines), lines
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
