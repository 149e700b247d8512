"""Every object park-stack builds, for every shipped stack, against the real schemas: CRDs strictly, core
objects with kubernetes-validate in strict mode. Plus proof that the validators can fail. (What the Helm
releases install is validated in test_helm_render.py.)"""

from __future__ import annotations

import copy

import pytest
from park.components import versions
from park.components.manifests import all_documents, build_all, kueue
from park.components.manifests.schemas import (
    SchemaDirMissing,
    SchemaNotFound,
    crd_index,
    kubernetes_validate_version,
    strict,
    validate_core_object,
    validate_custom_resource,
)
from schemas import (
    assert_valid_core_object,
    assert_valid_custom_resource,
    describe,
    is_core_object,
    is_custom_resource,
    require_schema_dir,
    shipped_specs,
)

SPECS = shipped_specs()
DOCUMENTS = [(stack, doc) for stack, spec in SPECS.items() for doc in all_documents(spec)]


def _ids(pairs):
    return [f"{stack}:{describe(doc)}".replace(" ", ":") for stack, doc in pairs]


CUSTOM = [(s, d) for s, d in DOCUMENTS if is_custom_resource(d)]
CORE = [(s, d) for s, d in DOCUMENTS if is_core_object(d)]


@pytest.mark.parametrize(("stack", "doc"), CUSTOM, ids=_ids(CUSTOM))
def test_custom_resource_matches_its_crd_strictly(stack, doc):
    assert_valid_custom_resource(doc)


@pytest.mark.parametrize(("stack", "doc"), CORE, ids=_ids(CORE))
def test_core_object_passes_kubernetes_validate_strict(stack, doc):
    assert_valid_core_object(doc, SPECS[stack].kubernetes_version)


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_stack_kubernetes_version_is_bundled_by_kubernetes_validate(stack):
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate comes with the dev extra")
    version, exact = kubernetes_validate_version(SPECS[stack].kubernetes_version)
    assert exact, f"kubernetes-validate has no {SPECS[stack].kubernetes_version} schemas; validated against {version}"


def test_nearest_bundled_version_is_used_when_the_exact_one_is_missing():
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate comes with the dev extra")
    assert kubernetes_validate_version("1.99")[1] is False
    assert kubernetes_validate_version("1.99")[0] == max(
        (kubernetes_validate_version(f"1.{m}")[0] for m in range(20, 40)), key=lambda v: int(v.split(".")[1]))


def test_every_kueue_kind_we_render_has_a_crd_here():
    folder = require_schema_dir()
    index = crd_index(folder)
    for kind in ("ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"):
        assert (versions.KUEUE_API_VERSION, kind) in index, f"no {kind} CRD in {folder}"


# --- the validators can fail -------------------------------------------------------------------------


def test_misspelled_field_in_a_custom_resource_is_caught():
    require_schema_dir()
    spec = SPECS["aws"]
    queue = kueue.cluster_queue(spec, spec.teams[0])
    assert validate_custom_resource(queue) == []
    broken = copy.deepcopy(queue)
    broken["spec"]["cohort"] = broken["spec"].pop("cohortName")  # the v1beta1 spelling
    problems = validate_custom_resource(broken)
    assert any("'cohort' was unexpected" in p and p.startswith("$.spec:") for p in problems), problems


def test_wrong_value_deep_in_a_custom_resource_is_reported_with_its_path():
    require_schema_dir()
    spec = SPECS["kind"]
    queue = kueue.cluster_queue(spec, spec.teams[0])
    queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] = "lots"
    queue["spec"]["preemption"]["withinClusterQueue"] = "Sometimes"
    problems = validate_custom_resource(queue)
    paths = [p.split(":")[0] for p in problems]
    assert "$.spec.resourceGroups[0].flavors[0].resources[0].nominalQuota" in paths
    assert "$.spec.preemption.withinClusterQueue" in paths


def test_namespace_scope_is_checked():
    require_schema_dir()
    local = kueue.local_queue(SPECS["kind"].teams[0])
    del local["metadata"]["namespace"]
    assert any("namespaced" in p for p in validate_custom_resource(local))
    flavor = kueue.resource_flavor(SPECS["kind"], SPECS["kind"].pool("cpu"))
    flavor["metadata"]["namespace"] = "research"
    assert any("cluster-scoped" in p for p in validate_custom_resource(flavor))


def test_unknown_kind_is_reported_not_guessed():
    require_schema_dir()
    with pytest.raises(SchemaNotFound, match="kueue.x-k8s.io/v1beta2 Queue"):
        validate_custom_resource({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Queue", "metadata": {"name": "q"}})


def test_strict_schema_closes_objects_but_keeps_preserved_ones_open():
    schema = strict({"type": "object", "properties": {
        "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
        "listed": {"type": "array", "items": {"type": "object", "properties": {"b": {"type": "integer"}}}},
        "mapped": {"type": "object", "additionalProperties": {"type": "string"}},
    }})
    assert schema["additionalProperties"] is False
    assert schema["properties"]["closed"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["open"]
    assert schema["properties"]["listed"]["items"]["additionalProperties"] is False
    assert schema["properties"]["mapped"]["additionalProperties"] == {"type": "string"}


def test_missing_schema_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(versions.CRD_SCHEMA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(SchemaDirMissing, match="nowhere.*PARK_CRD_SCHEMA_DIR"):
        validate_custom_resource({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue"})


def test_misspelled_field_in_a_core_object_is_caught():
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate comes with the dev extra")
    policy = next(d for _, d in CORE if d["kind"] == "NetworkPolicy")
    assert validate_core_object(policy, "1.33") == []
    broken = copy.deepcopy(policy)
    broken["spec"]["podSelectr"] = {}
    assert any("'podSelectr' was unexpected" in p for p in validate_core_object(broken, "1.33"))


# --- Helm releases ----------------------------------------------------------------------------------


PINNED = {"kuberay-operator": versions.KUBERAY_CHART, "kueue": versions.KUEUE_CHART,
          "kube-prometheus-stack": versions.KUBE_PROMETHEUS_STACK_CHART, "dcgm-exporter": versions.DCGM_EXPORTER_CHART,
          "nvidia-device-plugin": versions.NVIDIA_DEVICE_PLUGIN_CHART,
          "cluster-autoscaler": versions.CLUSTER_AUTOSCALER_CHART}


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_helm_releases_name_the_pinned_charts(stack):
    """The releases name exactly the pins of components/versions.py (what they render to is checked in
    test_helm_render.py, against the charts themselves)."""
    releases = [r for addon in build_all(SPECS[stack]) for r in addon.releases]
    assert releases, f"{stack} installs no Helm release"
    for rel in releases:
        assert rel.chart == PINNED[rel.name], f"release {rel.name} does not use the pinned chart"
