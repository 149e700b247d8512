"""What a real cluster on each cloud would judge, read from the cloud's documentation and the pinned charts:
NetworkPolicy enforcement, per-minor versions of the cluster autoscaler and the EKS add-ons, which system
components Prometheus can scrape, where dcgm-exporter finds GKE's NVIDIA driver, and the endpoint access
`pulumi up` needs. Stacks are the shipped ones (tests/schemas.py helpers), adapters run under Pulumi's mocks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi
import pytest
import yaml
from park.components import versions
from park.components.clouds import (
    CAPABILITIES,
    GPU_DRIVER_CONTAINER_DIR,
    KUBE_PROMETHEUS_SYSTEM_COMPONENTS,
    NETWORK_POLICY_DOCS,
    load_adapter,
)
from park.components.clouds import aws as aws_adapter
from park.components.clouds import kind as kind_adapter
from park.components.clouds.checks import SET_ALLOWED_CIDR, endpoint_access_problems, require_provisionable
from park.components.manifests import BUILDERS, ClusterFacts
from park.components.manifests import autoscaler, observability
from park.components.spec import SpecError, load_stack_file, resolve_stack_file
from pulumi_mocks import DeclaredList, Harness, install
from schemas import (
    TEST_ALLOWED_CIDR,
    pinned_chart,
    provisionable_variant,
    require_chart_dir,
    shipped_specs,
    shipped_variant,
)

SPECS = shipped_specs()
MINORS = [f"1.{m}" for m in range(versions.KUBERNETES_MIN[1], versions.KUBERNETES_MAX[1] + 1)]
ADDON = "aws:eks/addon:Addon"
GKE_CLUSTER = "gcp:container/cluster:Cluster"


def chart_dir(chart: versions.Chart) -> Path:
    return pinned_chart(chart)


def chart_values(chart: versions.Chart) -> dict:
    return yaml.safe_load((chart_dir(chart) / "values.yaml").read_text())


def applied_objects(spec) -> list[dict]:
    """Every object the platform's add-ons apply for ``spec`` (their own objects, not chart output)."""
    facts = ClusterFacts.for_spec(spec)
    return [dict(o) for build in BUILDERS.values() for o in build(spec, facts).objects]


def provision(stack_spec) -> tuple[Harness, object]:
    mocks = install(stack=f"contracts-{stack_spec.cloud}")
    harness = Harness(mocks)
    handle = load_adapter(stack_spec.cloud).provision(f"park-{stack_spec.cloud}", stack_spec, harness.parent)
    return harness, handle


def _eks_build(version: str) -> tuple[int, ...]:
    """``v1.20.1-eksbuild.3`` -> (1, 20, 1, 3), for comparing add-on versions."""
    return tuple(int(n) for n in re.findall(r"\d+", version))


# --- NetworkPolicy enforcement -------------------------------------------------------------------------


def _aws_enforces(declared: DeclaredList) -> None:
    """EKS User Guide, cni-network-policy-configure: the vpc-cni add-on enforces NetworkPolicy only with the
    configuration value ``"enableNetworkPolicy": "true"`` and VPC CNI v1.14.0-eksbuild.3 or later."""
    [cni] = [a for a in declared.of_type(ADDON) if a.inputs["addonName"] == "vpc-cni"]
    configuration = json.loads(cni.inputs.get("configurationValues") or "{}")
    assert configuration.get("enableNetworkPolicy") == "true", (
        f"{cni.urn}: vpc-cni runs without its network policy agent; configuration {configuration}")
    assert _eks_build(cni.inputs["addonVersion"]) >= (1, 14, 0, 3), (
        f"{cni.urn}: vpc-cni {cni.inputs['addonVersion']} predates network policy support")


def _gcp_enforces(declared: DeclaredList) -> None:
    """GKE Dataplane V2 (datapath provider ADVANCED_DATAPATH) always enforces NetworkPolicy; GKE's Calico
    network-policy add-on must not be enabled alongside it."""
    cluster = declared.one(GKE_CLUSTER)
    assert cluster.inputs.get("datapathProvider") == "ADVANCED_DATAPATH", (
        f"{cluster.urn}: legacy datapath without the network-policy add-on enforces no NetworkPolicy")
    calico = (cluster.inputs.get("addonsConfig") or {}).get("networkPolicyConfig") or {}
    assert calico.get("disabled", True), f"{cluster.urn}: Calico add-on enabled on top of Dataplane V2"
    assert not (cluster.inputs.get("networkPolicy") or {}).get("enabled"), (
        f"{cluster.urn}: Calico network policy enabled on top of Dataplane V2")


def _kind_enforces(spec) -> None:
    """kind v0.24.0 release notes (kubernetes-sigs/kind#842, #3612): kindnet enforces NetworkPolicy through
    kube-network-policies; a cluster config that disables the default CNI loses it."""
    assert tuple(int(n) for n in versions.KIND_VERSION.lstrip("v").split(".")) >= (0, 24, 0), (
        f"kind {versions.KIND_VERSION} predates kindnet network policies")
    networking = kind_adapter.kind_cluster_config(spec).get("networking") or {}
    assert not networking.get("disableDefaultCNI"), "the kind config drops kindnet, which enforces the policies"


@pytest.mark.parametrize("stack", sorted(SPECS))
@pulumi.runtime.test
def test_network_policy_enforcement_on_every_cloud_stack(stack):
    """Every shipped stack that applies NetworkPolicies has an enforcing datapath configured, read from what
    the adapter declares under mocks, not from the capability table alone. Sources: EKS
    https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy-configure.html (enableNetworkPolicy),
    GKE https://cloud.google.com/kubernetes-engine/docs/concepts/dataplane-v2 (network policy always on),
    kind https://github.com/kubernetes-sigs/kind/releases/tag/v0.24.0 (kindnet network policies)."""
    spec = provisionable_variant(stack)
    policies = [o for o in applied_objects(spec) if o["kind"] == "NetworkPolicy"]
    if not policies:
        pytest.skip(f"stack {stack} applies no NetworkPolicy")
    capabilities = CAPABILITIES[spec.cloud]
    assert capabilities.network_policy_datapath, f"{spec.cloud}: NetworkPolicies applied, nothing enforces them"
    assert spec.cloud in NETWORK_POLICY_DOCS, f"{spec.cloud}: enforcement declared without its documentation"
    if spec.cloud == "kind":
        _kind_enforces(spec)
        return None
    harness, _ = provision(spec)
    check = {"aws": _aws_enforces, "gcp": _gcp_enforces}[spec.cloud]
    return harness.settled().apply(check)


# --- versions per Kubernetes minor ---------------------------------------------------------------------


@pytest.mark.parametrize("minor", MINORS)
def test_cluster_autoscaler_runs_the_kubernetes_minor_of_the_stack(minor):
    """The cluster autoscaler supports only its own Kubernetes minor (kubernetes/autoscaler README, "Releases");
    the chart's default image.tag is its appVersion (cluster-autoscaler 9.50.1: v1.33.0) whatever the cluster."""
    spec = shipped_variant("aws", kubernetesVersion=minor)
    [release] = autoscaler.build(spec, ClusterFacts.for_spec(spec)).releases
    tag = release.values["image"]["tag"]
    assert re.fullmatch(rf"v{re.escape(minor)}\.\d+", tag), f"Kubernetes {minor} gets cluster-autoscaler {tag}"
    assert "tag" in chart_values(versions.CLUSTER_AUTOSCALER_CHART)["image"], "the chart reads no image.tag"


@pytest.mark.parametrize("minor", MINORS)
@pulumi.runtime.test
def test_every_eks_addon_is_pinned_for_the_stack_minor(minor):
    """Unpinned, EKS installs whatever its default is on the day (aws eks describe-addon-versions,
    defaultVersion), so two `pulumi up` of one program differ. Every aws.eks.Addon the adapter declares, the
    FSx CSI driver included, carries the pin for the stack's Kubernetes minor."""
    spec = provisionable_variant("aws", kubernetesVersion=minor,
                                 storage={"sharedFilesystem": {"capacityGib": 1200, "mountPath": "/mnt/lustre"}})
    harness, _ = provision(spec)

    def check(declared: DeclaredList) -> None:
        addons = declared.of_type(ADDON)
        names = {a.inputs["addonName"] for a in addons}
        assert {*aws_adapter.ADDONS_BEFORE_NODES, *aws_adapter.ADDONS_AFTER_NODES, aws_adapter.FSX_CSI_ADDON} <= names
        for addon in addons:
            name = addon.inputs["addonName"]
            assert addon.inputs.get("addonVersion"), f"{addon.urn}: no addon_version, EKS picks one"
            assert addon.inputs["addonVersion"] == versions.EKS_ADDON_VERSIONS[minor][name], (
                f"{addon.urn}: {addon.inputs['addonVersion']} is not the pin for Kubernetes {minor}")
        kube_proxy = next(a for a in addons if a.inputs["addonName"] == "kube-proxy")
        assert kube_proxy.inputs["addonVersion"].startswith(f"v{minor}."), (
            f"kube-proxy {kube_proxy.inputs['addonVersion']} on Kubernetes {minor}")

    return harness.settled().apply(check)


# --- what Prometheus can scrape --------------------------------------------------------------------------


def _chart_gates_on_enabled(component: str) -> list[str]:
    """Templates of kube-prometheus-stack 88.5.3 that render a ServiceMonitor or alert rules for ``component``,
    each required to depend on ``.Values.<component>.enabled``; returns their paths."""
    root = chart_dir(versions.KUBE_PROMETHEUS_STACK_CHART) / "templates"
    gated = []
    for template in sorted(root.rglob("*.yaml")):
        text = template.read_text()
        first_if = next((line for line in text.splitlines() if line.startswith("{{- if")), "")
        if f".Values.{component}." in first_if and ("kind: ServiceMonitor" in text or "PrometheusRule" in text):
            assert f".Values.{component}.enabled" in first_if, f"{template} renders without {component}.enabled"
            gated.append(str(template.relative_to(root)))
    return gated


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_no_scraper_for_a_system_component_the_cloud_hides(stack):
    """EKS and GKE manage the control plane (no controller-manager, scheduler or etcd target), EKS's
    kube-proxy serves metrics on 127.0.0.1:10249, GKE Dataplane V2 has no kube-proxy and GKE Standard runs
    kube-dns, not CoreDNS; kind keeps kubeadm's loopback binds for the first four and runs CoreDNS. A scraper
    left on becomes an always-down target and an alert that fires forever. The values switch each
    component's `enabled` key, which gates its ServiceMonitor and its rules in the pinned chart."""
    spec = SPECS[stack]
    values = observability.prometheus_stack_values(spec)
    chart = chart_values(versions.KUBE_PROMETHEUS_STACK_CHART)
    scrapable = CAPABILITIES[spec.cloud].scrapable_system_components
    for component in KUBE_PROMETHEUS_SYSTEM_COMPONENTS:
        assert "enabled" in chart[component], f"kube-prometheus-stack has no {component}.enabled"
        assert values[component]["enabled"] is (component in scrapable), (
            f"{stack}: {component} scraper {'off' if component in scrapable else 'on'}")
        assert _chart_gates_on_enabled(component), f"no ServiceMonitor or rules template found for {component}"
    if spec.cloud in ("aws", "gcp"):
        hidden = {"kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"}
        assert not hidden & {c for c in KUBE_PROMETHEUS_SYSTEM_COMPONENTS if values[c]["enabled"]}, stack


def _render(release, kubernetes_version: str):
    from park.components import charts

    return charts.render_release(release, kubernetes_version, require_chart_dir())


HIDDEN_JOBS = {  # component -> text in the names of its ServiceMonitor and PrometheusRules in the rendered chart
    "kubeControllerManager": "controller-manager",  # kube-controller-manager, kubernetes-system-controller-manager
    "kubeScheduler": "scheduler",  # kube-scheduler, kube-scheduler.rules, kubernetes-system-scheduler
    "kubeEtcd": "etcd",  # kube-etcd (monitor), etcd (rules)
    "kubeProxy": "kube-proxy",  # kube-proxy, kubernetes-system-kube-proxy
}


@pytest.mark.parametrize("stack", ["aws", "gcp"])
def test_rendered_chart_has_no_monitor_or_rules_for_hidden_components(stack):
    """The real kube-prometheus-stack 88.5.3, rendered with the stack's values by Helm's engine: no
    ServiceMonitor and no PrometheusRule for a control-plane component the managed cloud does not expose."""
    spec = SPECS[stack]
    [release] = [r for r in observability.build(spec, ClusterFacts.for_spec(spec)).releases
                 if r.name == observability.PROMETHEUS_RELEASE]
    rendered = _render(release, spec.kubernetes_version)
    for obj in rendered.objects:
        if obj["kind"] not in ("ServiceMonitor", "PrometheusRule"):
            continue
        name = obj["metadata"]["name"]
        for component, job in HIDDEN_JOBS.items():
            assert job not in name, f"{stack}: {obj['kind']} {name} scrapes or alerts on hidden {component}"


def test_kind_keeps_scraping_what_kind_exposes():
    """kind (kubeadm defaults) serves the API server, kubelets / cAdvisor and CoreDNS (:9153) to Prometheus:
    their ServiceMonitors stay in the rendered chart; the loopback-bound four do not."""
    spec = SPECS["kind"]
    [release] = [r for r in observability.build(spec, ClusterFacts.for_spec(spec)).releases
                 if r.name == observability.PROMETHEUS_RELEASE]
    monitors = {o["metadata"]["name"] for o in _render(release, spec.kubernetes_version).objects
                if o["kind"] == "ServiceMonitor"}
    for exposed in ("apiserver", "kubelet", "coredns"):
        assert any(name.endswith(f"-{exposed}") for name in monitors), f"kind lost its {exposed} scraper: {monitors}"
    assert not any(job in name for name in monitors for job in HIDDEN_JOBS.values()), monitors


# --- dcgm-exporter and GKE's NVIDIA driver ---------------------------------------------------------------


def test_dcgm_driver_values_are_keys_the_chart_reads():
    """dcgm-exporter 4.8.2 values.yaml declares extraHostVolumes, extraVolumeMounts and extraEnv (read by
    templates/daemonset.yaml); a list value replaces the chart's default mounts, so ours repeat them."""
    chart = chart_values(versions.DCGM_EXPORTER_CHART)
    for key in ("extraHostVolumes", "extraVolumeMounts", "extraEnv"):
        assert key in chart, f"dcgm-exporter chart has no {key}"
    assert chart["extraVolumeMounts"] == [dict(m) for m in observability.DCGM_CHART_VOLUME_MOUNTS], (
        "the chart's default extraVolumeMounts changed: update DCGM_CHART_VOLUME_MOUNTS")
    daemonset = (chart_dir(versions.DCGM_EXPORTER_CHART) / "templates" / "daemonset.yaml").read_text()
    for key in ("extraHostVolumes", "extraVolumeMounts", "extraEnv"):
        assert f".Values.{key}" in daemonset, f"templates/daemonset.yaml does not read {key}"


def _gpu_stack(cloud: str):
    return next(spec for spec in SPECS.values() if spec.cloud == cloud and spec.has_gpus)


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_dcgm_exporter_mounts_the_gke_driver_on_gcp_only(cloud):
    """GKE installs the NVIDIA driver under /home/kubernetes/bin/nvidia; GKE's DCGM exporter manifest
    (GoogleCloudPlatform/prometheus-engine examples/nvidia-dcgm/exporter.yaml) mounts it at /usr/local/nvidia
    with LD_LIBRARY_PATH=/usr/local/nvidia/lib64. EKS's NVIDIA AMI injects the driver through the container
    toolkit: no host path there. Checked on the DaemonSet the real chart renders when Helm is available."""
    spec = _gpu_stack(cloud)
    values = observability.dcgm_exporter_values(spec)
    host_dir = CAPABILITIES[cloud].gpu_driver_host_dir
    if cloud == "gcp":
        assert host_dir == "/home/kubernetes/bin/nvidia"
        assert {"name": observability.DRIVER_VOLUME, "hostPath": host_dir} in values["extraHostVolumes"]
    else:
        assert host_dir is None and "extraHostVolumes" not in values, values
    [release] = [r for r in observability.build(spec, ClusterFacts.for_spec(spec)).releases
                 if r.name == observability.DCGM_RELEASE]
    rendered = _render(release, spec.kubernetes_version)
    [daemonset] = [o for o in rendered.objects if o["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    [container] = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    if cloud == "gcp":
        assert host_paths.get(mounts.get(GPU_DRIVER_CONTAINER_DIR)) == "/home/kubernetes/bin/nvidia", (
            f"{GPU_DRIVER_CONTAINER_DIR} is not GKE's driver folder: mounts {mounts}, host paths {host_paths}")
        assert env.get("LD_LIBRARY_PATH") == f"{GPU_DRIVER_CONTAINER_DIR}/lib64", env
        assert "/etc/dcgm-exporter/default-counters.csv" in mounts, "the chart's counters file mount was lost"
    else:
        assert "/home/kubernetes/bin/nvidia" not in host_paths.values(), host_paths
        assert GPU_DRIVER_CONTAINER_DIR not in mounts and "LD_LIBRARY_PATH" not in env


# --- endpoint access: render out of the box, refuse `pulumi up` until set ------------------------------


def test_shipped_stacks_carry_no_documentation_cidr():
    """RFC 5737 / RFC 3849 ranges are for documentation: no client has them, so a shipped stack that lists
    one opens its endpoint to nobody (or to whoever routes it). Read from the YAML, not the parsed spec."""
    for path in sorted((resolve_stack_file("aws").parent).glob("Pulumi.*.yaml")):
        config = yaml.safe_load(path.read_text())["config"]
        for cidr in (config.get("park:security") or {}).get("allowedCidrs") or []:
            assert not any(cidr.startswith(p) for p in ("192.0.2.", "198.51.100.", "203.0.113.", "2001:db8:")), (
                f"{path.name} ships documentation range {cidr}")


def test_a_documentation_cidr_is_a_config_error_with_its_path():
    with pytest.raises(SpecError) as failure:
        shipped_variant("aws", security={"allowedCidrs": ["10.1.0.0/16", "203.0.113.0/24"]})
    [problem] = failure.value.problems
    assert problem.path == "security.allowedCidrs[1]" and "documentation" in problem.reason, problem
    # a range that merely contains a documentation range is a real choice (0.0.0.0/0 allows everyone)
    assert shipped_variant("aws", security={"allowedCidrs": ["0.0.0.0/0"]}).security.allowed_cidrs == ["0.0.0.0/0"]


def test_shipped_aws_renders_but_pulumi_up_asks_for_allowed_cidrs():
    """`park render aws` provisions nothing and works out of the box; `pulumi up` stops in the adapter, before
    declaring a resource, with the property path and the command that sets it."""
    spec = load_stack_file(resolve_stack_file("aws"))
    assert not spec.security.private_endpoint and not spec.security.allowed_cidrs
    [problem] = endpoint_access_problems(spec)
    assert problem.path == "security.allowedCidrs"
    install(stack="contracts-endpoint")
    with pytest.raises(pulumi.RunError) as failure:
        require_provisionable(spec)
    message = str(failure.value)
    assert "security.allowedCidrs: required before `pulumi up`" in message and SET_ALLOWED_CIDR in message, message
    assert not endpoint_access_problems(provisionable_variant("aws"))
    assert provisionable_variant("aws").security.allowed_cidrs == [TEST_ALLOWED_CIDR]


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_a_private_endpoint_needs_no_allowed_cidrs(cloud):
    """EKS private access / GKE private endpoint: the VPC reaches the API; allowedCidrs only add ranges."""
    spec = shipped_variant(cloud, security={"privateEndpoint": True})
    assert not endpoint_access_problems(spec)


@pulumi.runtime.test
def test_the_aws_adapter_declares_nothing_before_the_endpoint_check():
    mocks = install(stack="contracts-nothing")
    harness = Harness(mocks)
    with pytest.raises(pulumi.RunError, match="security.allowedCidrs"):
        aws_adapter.ADAPTER.provision("park-aws", load_stack_file(resolve_stack_file("aws")), harness.parent)

    def check(declared: DeclaredList) -> None:
        assert not [d for d in declared if d.type.startswith("aws:")], "aws resources declared before the check"

    return harness.settled().apply(check)



def test_pulumi_up_of_the_shipped_aws_stack_stops_at_allowed_cidrs():
    """The stack program itself (stacks/__main__.py, as `pulumi up` runs it) with the shipped aws config, under
    Pulumi's mocks: it stops with the property path and the command to set it."""
    import runpy

    from park.components.spec import project_root

    config = yaml.safe_load((project_root() / "stacks" / "Pulumi.aws.yaml").read_text())["config"]
    install(stack="contracts-pulumi-up")
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    try:
        with pytest.raises(pulumi.RunError) as failure:
            runpy.run_path(str(project_root() / "stacks" / "__main__.py"))
    finally:
        pulumi.runtime.set_all_config({})
    assert "security.allowedCidrs: required before `pulumi up`" in str(failure.value), str(failure.value)
    assert SET_ALLOWED_CIDR in str(failure.value)
