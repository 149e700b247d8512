"""The kind adapter: the pure kind-config builder, `park kind-config`, and the handle under Pulumi mocks."""

from __future__ import annotations

import functools

import sys

import pulumi
import pytest
import yaml
from park.components import spec as specs
from park.components import versions
from park.components.clouds import kind as adapter
from park.components.clouds import load_adapter
from schemas import shipped_variant
from pulumi_mocks import DeclaredList, Harness, install
from typer.testing import CliRunner

from park.cli import app

STACK_FILE = specs.resolve_stack_file("kind")
SHIPPED = specs.load_stack_file(STACK_FILE)


variant = functools.partial(shipped_variant, "kind")
"""The shipped kind spec with some park:* keys replaced."""


def workers_by_pool(config: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for node in config["nodes"]:
        if node["role"] == "worker":
            found.setdefault(node["labels"]["park-stack.io/pool"], []).append(node)
    return found


# --- the kind config ------------------------------------------------------------------------------


def test_shipped_profile_gets_one_worker_per_min_node_of_each_pool():
    config = adapter.kind_cluster_config(SHIPPED)
    assert (config["kind"], config["apiVersion"], config["name"]) == (
        "Cluster",
        "kind.x-k8s.io/v1alpha4",
        "park-kind",
    )
    assert [n["role"] for n in config["nodes"]].count("control-plane") == 1
    assert {pool: len(nodes) for pool, nodes in workers_by_pool(config).items()} == {"system": 1, "cpu": 2}


def test_every_node_runs_the_pinned_image_and_mounts_the_storage_folder():
    config = adapter.kind_cluster_config(variant(storage={"localPath": "/data/park"}))
    pinned = versions.KIND_NODE_IMAGES["1.33"]
    assert pinned.startswith("kindest/node:v1.33.") and "@sha256:" in pinned, (
        f"image not pinned by digest: {pinned}"
    )
    for i, node in enumerate(config["nodes"]):
        assert node["image"] == pinned, f"node {i} runs {node['image']}"
        assert node["extraMounts"] == [{"hostPath": "/data/park", "containerPath": "/data/park"}], f"node {i}"


def test_pool_labels_and_taints_reach_the_kind_nodes():
    spec = variant(
        nodePools=[
            {"name": "system", "role": "system", "minNodes": 1, "maxNodes": 1},
            {
                "name": "batch",
                "minNodes": 1,
                "maxNodes": 1,
                "labels": {"tier": "batch"},
                "taints": [{"key": "batch-only", "value": "yes", "effect": "NoSchedule"}],
            },
        ],
        teams=[{"name": "research"}],
    )
    workers = workers_by_pool(adapter.kind_cluster_config(spec))
    [batch], [system] = workers["batch"], workers["system"]
    assert batch["labels"] == {"tier": "batch", "park-stack.io/pool": "batch"}
    [patch] = [yaml.safe_load(p) for p in batch["kubeadmConfigPatches"]]
    assert patch == {
        "kind": "JoinConfiguration",
        "nodeRegistration": {"taints": [{"key": "batch-only", "value": "yes", "effect": "NoSchedule"}]},
    }
    assert "kubeadmConfigPatches" not in system, "an untainted pool got a taint patch"


def test_yaml_round_trips_without_anchors():
    text = adapter.kind_cluster_config_yaml(SHIPPED)
    assert "&id" not in text and "*id" not in text, "repeated nodes were written as YAML aliases"
    assert yaml.safe_load(text) == adapter.kind_cluster_config(SHIPPED)


def test_a_pool_without_nodes_and_an_unpinned_version_are_reported_together(monkeypatch):
    monkeypatch.delitem(versions.KIND_NODE_IMAGES, "1.33")
    with pytest.raises(specs.SpecError) as raised:
        variant(
            nodePools=[
                {"name": "system", "role": "system", "minNodes": 1, "maxNodes": 1},
                {"name": "cpu", "minNodes": 0, "maxNodes": 2},
            ]
        )
    paths = {p.path for p in raised.value.problems}
    assert paths == {"kubernetesVersion", "nodePools[1].minNodes"}, raised.value


def test_node_image_can_be_overridden_for_every_version(monkeypatch):
    monkeypatch.setenv("PARK_KIND_NODE_IMAGE", "registry.local/kindest/node:v1.33.99")
    config = adapter.kind_cluster_config(SHIPPED)
    assert {n["image"] for n in config["nodes"]} == {"registry.local/kindest/node:v1.33.99"}


# --- park kind-config ------------------------------------------------------------------------------


def test_cli_writes_the_config_file(tmp_path):
    out = tmp_path / "kind.yaml"
    result = CliRunner().invoke(app, ["kind-config", "kind", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text()) == adapter.kind_cluster_config(SHIPPED)
    assert "kind create cluster --config" in result.stderr


def test_cli_prints_to_stdout_without_out():
    result = CliRunner().invoke(app, ["kind-config", str(STACK_FILE)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == adapter.kind_cluster_config(SHIPPED)


def test_cli_refuses_a_cloud_stack_with_exit_2():
    result = CliRunner().invoke(app, ["kind-config", "aws"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "cloud: this stack is for aws, not kind"
    assert "Traceback" not in result.output


def test_cli_lists_every_problem_of_a_bad_stack_file_on_stderr(tmp_path):
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "config": {
                    "park:cloud": "kind",
                    "park:clusterName": "Bad_Name",
                    "park:nodePools": [{"name": "system", "role": "system", "minNodes": 1, "spot": True}],
                    "park:teams": [{"name": "research"}],
                }
            }
        )
    )
    result = CliRunner().invoke(app, ["kind-config", str(bad)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith(f"{bad}:3: clusterName:") for line in lines), lines  # FILE:LINE: path: reason
    assert "Traceback" not in result.output


# --- the adapter under mocks --------------------------------------------------------------------------


@pytest.fixture
def mocks():
    return install(stack="kind")


@pytest.fixture
def kubeconfig_file(tmp_path, monkeypatch):
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "other",
                "clusters": [
                    {"name": "kind-park-kind", "cluster": {"server": "https://127.0.0.1:40000"}},
                    {"name": "other", "cluster": {"server": "https://other"}},
                ],
                "contexts": [
                    {
                        "name": "kind-park-kind",
                        "context": {"cluster": "kind-park-kind", "user": "kind-park-kind"},
                    },
                    {"name": "other", "context": {"cluster": "other", "user": "other"}},
                ],
                "users": [
                    {"name": "kind-park-kind", "user": {"client-key-data": "S0VZ"}},
                    {"name": "other", "user": {"token": "t"}},
                ],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pulumi.runtime.test
def test_handle_uses_the_existing_context_and_declares_no_cloud(mocks, kubeconfig_file):
    harness = Harness(mocks)
    handle = adapter.ADAPTER.provision("park-kind", SHIPPED, harness.parent)

    def check(declared: DeclaredList, kubeconfig: str, storage_uri: str, annotations: dict, secret: bool):
        provider = declared.one("pulumi:providers:kubernetes")
        assert provider.inputs["context"] == "kind-park-kind", (
            f"{provider.urn} context {provider.inputs['context']}"
        )
        assert provider.inputs["enableServerSideApply"] == "true", f"{provider.urn} without server-side apply"
        assert [d.type for d in declared] == ["park:kind:KindCluster", "pulumi:providers:kubernetes"], (
            f"kind declared {declared.types}"
        )
        config = yaml.safe_load(kubeconfig)
        assert config["current-context"] == "kind-park-kind"
        assert [c["name"] for c in config["clusters"]] == ["kind-park-kind"], "other clusters leaked in"
        assert [u["name"] for u in config["users"]] == ["kind-park-kind"], "other users leaked in"
        assert secret, "the kubeconfig holds a client key and must be a secret Output"
        assert storage_uri == "file:///mnt/park-storage"
        assert annotations == {}
        assert handle.depends_on == [] and handle.shared_filesystem is None

    return pulumi.Output.all(
        harness.settled(),
        handle.kubeconfig,
        handle.storage_uri,
        handle.ray_service_account_annotations,
        pulumi.Output.from_input(handle.kubeconfig.is_secret()),
    ).apply(lambda v: check(*v))


def test_kubeconfig_for_a_missing_context_is_empty(tmp_path):
    assert adapter.kubeconfig_for_context("kind-nope", [tmp_path / "absent", tmp_path]) == ""


@pulumi.runtime.test
def test_kind_adapter_needs_no_cloud_sdk(monkeypatch):
    monkeypatch.delitem(sys.modules, "park.components.clouds.kind")
    monkeypatch.setitem(sys.modules, "pulumi_aws", None)
    monkeypatch.setitem(sys.modules, "pulumi_gcp", None)
    assert load_adapter("kind").name == "kind"
