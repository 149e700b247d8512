"""The Platform component and its add-ons under Pulumi's mock engine.

The cloud adapter is replaced by :class:`HandleOnlyAdapter`, a test double that declares nothing but a
Kubernetes provider and one stand-in node group, and hands back a ClusterHandle with facts of its own
(so the tests can see those facts, not the spec's, reach the manifests). The full stacks with the real
adapters are in test_stacks.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from park.components import platform as platform_module
from park.components.addons import (
    ADDONS,
    AddonArgs,
    ClusterAutoscaler,
    Gpu,
    KubeRay,
    Kueue,
    Namespaces,
    Storage,
)
from park.components.clouds import CAPABILITIES, ClusterHandle
from park.components.manifests import BUILDERS, ClusterFacts
from park.components.platform import FIRST_ADDON, Platform
from pulumi.runtime.mocks import MockMonitor
from pulumi_mocks import Harness, RecordingMocks
from schemas import shipped_specs

SPECS = shipped_specs()
RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
ADAPTER_FACTS = ClusterFacts("s3://bucket-from-the-adapter", {"example.com/identity": "from-the-adapter"})


class DependencyMonitor(MockMonitor):
    """The mock monitor, also remembering each resource's explicit dependencies (URNs) and parent."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.dependencies: dict[str, set[str]] = {}

    def RegisterResource(self, request):  # the engine's gRPC method name
        response = super().RegisterResource(request)
        self.dependencies[response.urn] = set(request.dependencies)
        return response


@dataclass
class Engine:
    mocks: RecordingMocks
    monitor: DependencyMonitor

    def depends_on(self, urn: str) -> set[str]:
        return self.monitor.dependencies.get(urn, set())


@pytest.fixture
def engine() -> Engine:
    mocks = RecordingMocks()
    monitor = DependencyMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="park", stack="test", preview=False, monitor=monitor)
    return Engine(mocks, monitor)


class HandleOnlyAdapter:
    """Test double for a cloud adapter: a provider, a stand-in node group, and fixed facts."""

    def __init__(self, cloud: str):
        self.name = cloud
        self.capabilities = CAPABILITIES[cloud]
        self.node_group: pulumi.CustomResource | None = None

    def provision(self, name: str, spec, parent: pulumi.Resource) -> ClusterHandle:
        opts = pulumi.ResourceOptions(parent=parent)
        provider = k8s.Provider(f"{name}-k8s", kubeconfig='{"kind": "Config"}', opts=opts)
        self.node_group = pulumi.CustomResource("test:index:NodeGroup", f"{name}-nodes", {}, opts=opts)
        return ClusterHandle(
            provider=provider,
            kubeconfig=pulumi.Output.from_input('{"kind": "Config"}'),
            cluster_name=pulumi.Output.from_input(spec.cluster_name),
            storage_uri=pulumi.Output.from_input(ADAPTER_FACTS.storage_uri),
            ray_service_account_annotations=pulumi.Output.from_input(ADAPTER_FACTS.ray_service_account_annotations),
            depends_on=[self.node_group],
        )


def declare_platform(monkeypatch, stack: str, engine: Engine) -> tuple[Harness, Platform, HandleOnlyAdapter]:
    adapter = HandleOnlyAdapter(SPECS[stack].cloud)
    monkeypatch.setattr(platform_module, "load_adapter", lambda cloud: adapter)
    harness = Harness(engine.mocks)
    platform = Platform(SPECS[stack].cluster_name, SPECS[stack], pulumi.ResourceOptions(parent=harness.parent))
    return harness, platform, adapter


def addon_of(declared_name: str, platform_name: str) -> str:
    """``park-aws-kueue-objects`` -> ``kueue``."""
    rest = declared_name.removeprefix(f"{platform_name}-")
    return next(a.NAME for a in ADDONS if rest == a.NAME or rest.startswith(f"{a.NAME}-"))


@pytest.mark.parametrize("stack", sorted(SPECS))
@pulumi.runtime.test
def test_applied_objects_are_the_builders_output_from_the_adapter_facts(stack, engine, monkeypatch):
    harness, _, _ = declare_platform(monkeypatch, stack, engine)
    spec = SPECS[stack]

    def check(declared):
        groups = {addon_of(d.name, spec.cluster_name): d for d in declared.of_type(CONFIG_GROUP)
                  if d.name.endswith("-objects")}  # not the CRD groups (test_install_order.py)
        for addon, build in BUILDERS.items():
            expected = [dict(o) for o in build(spec, ADAPTER_FACTS).objects]
            if not expected:
                assert addon not in groups, f"{addon}: a ConfigGroup with nothing to apply"
                continue
            assert groups[addon].inputs["objs"] == expected, f"{groups[addon].urn} differs from the builder"
        namespaces = groups["namespaces"].inputs["objs"]
        config = next(o for o in namespaces if o["kind"] == "ConfigMap")
        assert config["data"]["PARK_STORAGE_URI"] == ADAPTER_FACTS.storage_uri, "adapter facts must reach manifests"
    return harness.settled().apply(check)


@pytest.mark.parametrize("stack", sorted(SPECS))
@pulumi.runtime.test
def test_helm_releases_are_the_builders_releases(stack, engine, monkeypatch):
    harness, _, _ = declare_platform(monkeypatch, stack, engine)
    spec = SPECS[stack]

    def check(declared):
        releases = {d.inputs["name"]: d for d in declared.of_type(RELEASE)}
        expected = [r for addon in BUILDERS.values() for r in addon(spec, ADAPTER_FACTS).releases]
        assert sorted(releases) == sorted(r.name for r in expected)
        for rel in expected:
            inputs = releases[rel.name].inputs
            assert inputs["namespace"] == rel.namespace and inputs["version"] == rel.chart.version
            assert inputs["values"] == rel.values, f"{releases[rel.name].urn}: values differ from the builder"
            assert inputs["createNamespace"] is False
            if rel.is_oci:
                assert inputs["chart"] == rel.chart.repo and "repositoryOpts" not in inputs
            else:
                assert inputs["chart"] == rel.chart.name and inputs["repositoryOpts"] == {"repo": rel.chart.repo}
    return harness.settled().apply(check)


@pulumi.runtime.test
def test_namespaces_then_operators_then_their_custom_resources(engine, monkeypatch):
    harness, _, _ = declare_platform(monkeypatch, "aws", engine)
    name = SPECS["aws"].cluster_name

    def check(declared):
        urn = {d.name: d.urn for d in declared}
        namespaces = urn[f"{name}-namespaces-objects"]
        node_group = urn[f"{name}-nodes"]
        for d in declared.of_type(RELEASE) + declared.of_type(CONFIG_GROUP):
            deps = engine.depends_on(d.urn)
            assert node_group in deps, f"{d.urn} does not wait for the node groups"
            if d.urn != namespaces:
                assert namespaces in deps, f"{d.urn} does not wait for the namespaces"
        kueue_objects = engine.depends_on(urn[f"{name}-kueue-objects"])
        assert urn[f"{name}-kueue-kueue"] in kueue_objects, "Kueue's queues must wait for the Kueue release"
        monitors = engine.depends_on(urn[f"{name}-observability-objects"])
        assert urn[f"{name}-observability-kube-prometheus-stack"] in monitors
        kuberay = engine.depends_on(urn[f"{name}-kuberay-kuberay-operator"])
        assert urn[f"{name}-observability-kube-prometheus-stack"] in kuberay, \
            "KubeRay's ServiceMonitor needs the Prometheus Operator CRDs first"
        assert urn[f"{name}-kueue-kueue"] not in engine.depends_on(urn[f"{name}-kuberay-kuberay-operator"])
    return harness.settled().apply(check)


@pulumi.runtime.test
def test_components_use_their_type_tokens_parents_and_the_cluster_provider(engine, monkeypatch):
    harness, platform, _ = declare_platform(monkeypatch, "gcp", engine)

    def check(platform_urn, declared):
        assert platform_urn.split("::")[2].endswith("park:index:Platform")
        for addon in ADDONS:
            (component,) = declared.of_type(addon.TYPE)
            assert "park:index:Platform$" in component.urn, f"{component.urn} is not a child of the Platform"
        provider = next(d for d in declared if d.type == "pulumi:providers:kubernetes")
        for d in declared.of_type(RELEASE) + declared.of_type(CONFIG_GROUP):
            assert d.provider.startswith(provider.urn), f"{d.urn} does not use the cluster's provider"
    return pulumi.Output.all(platform.urn, harness.settled()).apply(lambda v: check(*v))


@pulumi.runtime.test
def test_platform_outputs(engine, monkeypatch):
    _, platform, _ = declare_platform(monkeypatch, "kind", engine)
    spec = SPECS["kind"]

    def check(values: list[Any]) -> None:
        kubeconfig_secret, cluster, queues, storage, grafana, prometheus = values
        assert kubeconfig_secret is True, "the kubeconfig output must be a secret"
        assert cluster == spec.cluster_name
        assert queues == {"research": "research-queue", "serving": "serving-queue"}
        assert storage == ADAPTER_FACTS.storage_uri
        assert grafana == "monitoring/grafana:80"
        assert prometheus == "monitoring/kube-prometheus-prometheus:9090"

    return pulumi.Output.all(
        pulumi.Output.from_input(platform.kubeconfig.is_secret()), platform.cluster_name, platform.queue_names,
        platform.storage_uri, platform.grafana_service, platform.prometheus_service,
    ).apply(check)


@pytest.mark.parametrize("stack", ["aws", "gcp", "kind"])
@pulumi.runtime.test
def test_each_addon_has_outputs_of_its_own(stack, engine, monkeypatch):
    """What a reader of the stack (or another component) needs from each add-on, read from the add-on itself."""
    _, platform, _ = declare_platform(monkeypatch, stack, engine)
    spec = SPECS[stack]
    sharing = [p.name for p in spec.gpu_pools if p.gpu_sharing is not None]

    def check(values: list[Any]) -> None:
        namespaces, claims, time_sliced, operator_ns, queues, cluster_queues, autoscaler_account = values
        assert {t.namespace_name for t in spec.teams} <= set(namespaces), f"{stack}: team namespaces {namespaces}"
        assert {"kueue-system", "kuberay-system"} <= set(namespaces), namespaces
        kind = spec.cloud == "kind"
        assert claims == ([f"{t.namespace_name}/{c}" for t in spec.teams for c in claims_of(t)] if kind else []), claims
        assert bool(claims) == kind, f"{stack}: a claim per team namespace on kind's host folder, none elsewhere"
        # GKE time-slices through its node pools (its own device plugin); aws through the device plugin's config
        assert time_sliced == (sharing if spec.cloud == "aws" else []), f"{stack}: time-sliced {time_sliced}"
        assert operator_ns == "kuberay-system"
        assert queues == {t.name: t.local_queue for t in spec.teams}
        assert len(cluster_queues) == len(spec.teams)
        assert autoscaler_account == ("kube-system/cluster-autoscaler" if spec.cloud == "aws" else None)

    def claims_of(team) -> list[str]:
        return [o["metadata"]["name"] for o in BUILDERS["storage"](spec, ADAPTER_FACTS).objects
                if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["namespace"] == team.namespace_name]

    return pulumi.Output.all(
        platform.addon(Namespaces).namespaces, platform.addon(Storage).claims, platform.addon(Gpu).time_sliced_pools,
        platform.addon(KubeRay).operator_namespace, platform.addon(Kueue).queue_names,
        platform.addon(Kueue).cluster_queues, platform.addon(ClusterAutoscaler).service_account,
    ).apply(check)


@pulumi.runtime.test
def test_addon_alone_with_default_facts(engine):
    """An add-on used on its own (no facts given) applies the spec-derived facts, after what it waits for."""
    spec = SPECS["kind"]
    harness = Harness(engine.mocks)
    opts = pulumi.ResourceOptions(parent=harness.parent)
    provider = k8s.Provider("cluster", kubeconfig="{}", opts=opts)
    before = pulumi.CustomResource("test:index:Before", "before", {}, opts=opts)
    Kueue("queues", AddonArgs(spec=spec, provider=provider, depends_on=[before]), opts=opts)

    def check(declared):
        group = declared.one(CONFIG_GROUP, "queues-objects")
        assert group.inputs["objs"] == list(BUILDERS["kueue"](spec, ClusterFacts.for_spec(spec)).objects)
        release = declared.one(RELEASE, "queues-kueue")
        assert declared.one("test:index:Before").urn in engine.depends_on(release.urn)
        assert {release.urn, declared.one("test:index:Before").urn} <= engine.depends_on(group.urn)
    return harness.settled().apply(check)


def test_namespaces_come_first():
    assert ADDONS[0].NAME == FIRST_ADDON == "namespaces"


def test_each_addon_applies_its_own_builder_in_the_builders_order():
    """One table: each add-on class names its builder; ``BUILDERS`` (what ``park render`` writes) must list
    the same builders in the same apply order, or render and ``pulumi up`` would disagree."""
    assert [(a.NAME, a.build) for a in ADDONS] == list(BUILDERS.items())


def test_an_addon_before_the_one_serving_its_custom_resources_is_refused(engine, monkeypatch):
    """KubeRay's chart renders a ServiceMonitor; declared before observability, it could not wait for the
    Prometheus Operator CRDs (``depends_on`` names resources already declared), so the Platform says so."""
    by_name = {addon.NAME: addon for addon in ADDONS}
    reordered = tuple(by_name[name] for name in ("namespaces", "kuberay", "observability"))
    monkeypatch.setattr(platform_module, "ADDONS", reordered)
    with pytest.raises(RuntimeError, match="add-on kuberay creates .*ServiceMonitor.*move observability before kuberay"):
        declare_platform(monkeypatch, "kind", engine)
