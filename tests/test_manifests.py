"""The manifest builders, tested as the pure functions they are: no mocks, no cluster."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from park.components import versions
from park.components.charts import custom_resource_kinds, render_release
from park.components.manifests import (
    BUILDERS,
    ClusterFacts,
    all_documents,
    build_all,
    gpu,
    kuberay,
    kueue,
    namespaces,
    observability,
    storage,
)
from park.components.manifests.common import NAMESPACE_NAME_LABEL
from park.components.spec import (
    DEVICE_PLUGIN_CONFIG_LABEL,
    GPU_RESOURCE,
    GPU_TAINT,
    POOL_LABEL,
    RAY_SERVICE_ACCOUNT,
    STORAGE_CONFIGMAP,
    StackSpec,
    config_from_stack_file,
    parse_spec,
    project_root,
)
from schemas import require_chart_dir, shipped_specs

SPECS = shipped_specs()


def spec_with(stack: str, **changes: Any) -> StackSpec:
    """A shipped stack's config with some top-level ``park:*`` keys replaced, validated."""
    config = config_from_stack_file(project_root() / "stacks" / f"Pulumi.{stack}.yaml")
    config.update(changes)
    return parse_spec(config)


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def by_name(docs: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    found = [d for d in kinds(docs, kind) if d["metadata"]["name"] == name
             and (namespace is None or d["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def release(spec: StackSpec, name: str):
    found = [r for addon in build_all(spec) for r in addon.releases if r.name == name]
    return found[0] if found else None


# --- Kueue -------------------------------------------------------------------------------------------


def test_one_flavor_per_workers_pool_selecting_it_and_tolerating_its_taints():
    spec = SPECS["aws"]
    flavors = {f["metadata"]["name"]: f for f in kinds(all_documents(spec), "ResourceFlavor")}
    workers = [p.name for p in spec.node_pools if p.role == "workers"]
    system_with_quota = [p.name for p in spec.node_pools if p.role == "system"
                         and any(q.pool == p.name for t in spec.teams for q in t.quotas)]
    assert system_with_quota, "the shipped aws stack gives teams quota on the system pool for Ray heads"
    assert sorted(flavors) == sorted(workers + system_with_quota), \
        "workers pools always get a flavor, a system pool only when a team has quota on it"
    for pool in spec.gpu_pools:
        flavor = flavors[pool.name]["spec"]
        assert flavor["nodeLabels"] == {POOL_LABEL: pool.name}
        assert {"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]} in flavor["tolerations"]


def test_flavor_tolerates_custom_pool_taints_and_cpu_flavor_has_none():
    pools = [
        {"name": "system", "role": "system", "minNodes": 1, "maxNodes": 1},
        {"name": "cpu", "minNodes": 0, "maxNodes": 2},
        {"name": "l4", "accelerator": "nvidia-l4", "maxNodes": 2,
         "taints": [{"key": "dedicated", "value": "ml", "effect": "NoExecute"}]},
    ]
    spec = spec_with("aws", nodePools=pools, teams=[{"name": "research", "quotas": [{"pool": "l4", "gpus": 2}]}])
    flavors = {f["metadata"]["name"]: f["spec"] for f in kinds(all_documents(spec), "ResourceFlavor")}
    assert "tolerations" not in flavors["cpu"]
    assert flavors["l4"]["tolerations"] == [
        {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    queue = kueue.cluster_queue(spec, spec.teams[0])
    assert [f["name"] for f in queue["spec"]["resourceGroups"][0]["flavors"]] == ["cpu", "l4"], \
        "CPU flavors come first so CPU-only work lands on CPU nodes"


def test_cluster_queues_carry_team_quotas_with_zero_where_the_team_has_none():
    spec = SPECS["aws"]
    docs = all_documents(spec)
    serving = by_name(docs, "ClusterQueue", "serving-cq")["spec"]
    group = serving["resourceGroups"][0]
    assert group["coveredResources"] == ["cpu", "memory", GPU_RESOURCE]
    quotas = {f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]} for f in group["flavors"]}
    assert quotas["l4-shared"] == {"cpu": "8", "memory": "32Gi", GPU_RESOURCE: 8}
    assert quotas["h100-spot"] == {"cpu": "0", "memory": "0", GPU_RESOURCE: 0}, "no quota on a pool -> zeros"
    research = by_name(docs, "ClusterQueue", "research-cq")["spec"]["resourceGroups"][0]
    research_h100 = next(f for f in research["flavors"] if f["name"] == "h100-spot")
    assert {r["name"]: r["nominalQuota"] for r in research_h100["resources"]}[GPU_RESOURCE] == 16


def test_every_flavor_lists_resources_in_covered_order():
    for stack, spec in SPECS.items():
        for queue in kinds(all_documents(spec), "ClusterQueue"):
            for group in queue["spec"]["resourceGroups"]:
                for flavor in group["flavors"]:
                    assert [r["name"] for r in flavor["resources"]] == group["coveredResources"], \
                        f"{stack}: {queue['metadata']['name']} flavor {flavor['name']} out of order"


def test_system_pool_gets_a_flavor_once_a_team_has_quota_there():
    spec = spec_with("kind", teams=[
        {"name": "research", "quotas": [{"pool": "cpu", "cpu": 1, "memory": "2Gi"},
                                        {"pool": "system", "cpu": 1, "memory": "2Gi"}]},
        {"name": "serving"}])
    assert [p.name for p in kueue.flavor_pools(spec)] == ["cpu", "system"], "system pools come last"
    serving = kueue.cluster_queue(spec, spec.teams[1])["spec"]["resourceGroups"][0]["flavors"]
    assert [f["resources"][0]["nominalQuota"] for f in serving] == ["0", "0"]
    research = kueue.cluster_queue(spec, spec.teams[0])["spec"]["resourceGroups"][0]["flavors"]
    assert research[1] == {"name": "system", "resources": [{"name": "cpu", "nominalQuota": "1"},
                                                           {"name": "memory", "nominalQuota": "2Gi"}]}


def test_cpu_only_stack_covers_no_gpus():
    queue = kueue.cluster_queue(SPECS["kind"], SPECS["kind"].teams[0])
    assert queue["spec"]["resourceGroups"][0]["coveredResources"] == ["cpu", "memory"]


def test_queues_share_one_cohort_and_preempt_as_specified():
    spec = SPECS["gcp"]
    queues = kinds(all_documents(spec), "ClusterQueue")
    assert {q["spec"]["cohortName"] for q in queues} == {spec.cluster_name}
    for queue in queues:
        assert queue["spec"]["preemption"] == {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any"}


def test_local_queue_per_team_namespace_points_at_its_cluster_queue():
    spec = spec_with("kind", teams=[{"name": "research", "namespace": "ml-research",
                                     "quotas": [{"pool": "cpu", "cpu": 1, "memory": "1Gi"}]}])
    local = by_name(all_documents(spec), "LocalQueue", "research-queue", "ml-research")
    assert local["spec"] == {"clusterQueue": "research-cq"}
    queue = by_name(all_documents(spec), "ClusterQueue", "research-cq")
    assert queue["spec"]["namespaceSelector"] == {"matchLabels": {NAMESPACE_NAME_LABEL: "ml-research"}}
    assert kueue.queue_names(spec) == {"research": "research-queue"}


def test_priority_classes_come_from_the_spec():
    spec = spec_with("kind", priorityClasses=[{"name": "urgent", "value": 5000, "description": "now"},
                                              {"name": "batch", "value": 1}],
                     teams=[{"name": "research", "defaultPriority": "batch"}])
    classes = {c["metadata"]["name"]: c for c in kinds(all_documents(spec), "WorkloadPriorityClass")}
    assert classes["urgent"]["value"] == 5000 and classes["urgent"]["description"] == "now"
    assert classes["batch"]["value"] == 1 and "description" not in classes["batch"]
    assert set(classes) == {"urgent", "batch"}


def test_kueue_controller_manages_ray_kinds_and_exports_queue_metrics():
    values = release(SPECS["aws"], kueue.RELEASE_NAME).values
    config = yaml.safe_load(values["managerConfig"]["controllerManagerConfigYaml"])
    assert {"ray.io/rayjob", "ray.io/raycluster", "ray.io/rayservice"} <= set(config["integrations"]["frameworks"])
    assert config["metrics"]["enableClusterQueueResources"] is True
    assert values["controllerManager"]["nodeSelector"] == {POOL_LABEL: "system"}
    assert release(SPECS["aws"], kueue.RELEASE_NAME).chart == versions.KUEUE_CHART


# --- GPU ---------------------------------------------------------------------------------------------


def test_device_plugin_time_slices_only_the_sharing_pool():
    spec = SPECS["aws"]
    values = release(spec, gpu.RELEASE_NAME).values
    configs = {name: yaml.safe_load(text) for name, text in values["config"]["map"].items()}
    assert values["config"]["default"] == gpu.DEFAULT_CONFIG
    assert set(configs) == {gpu.DEFAULT_CONFIG, "l4-shared"}, "one config per sharing pool, plus the default"
    slicing = configs["l4-shared"]["sharing"]["timeSlicing"]
    assert slicing["resources"] == [{"name": GPU_RESOURCE, "replicas": 4}]
    assert "sharing" not in configs[gpu.DEFAULT_CONFIG]
    assert spec.node_labels(spec.pool("l4-shared"))[DEVICE_PLUGIN_CONFIG_LABEL] == "l4-shared"
    assert DEVICE_PLUGIN_CONFIG_LABEL not in spec.node_labels(spec.pool("h100-spot"))


def test_device_plugin_runs_on_gpu_pools_and_tolerates_the_gpu_taint():
    spec = SPECS["aws"]
    values = release(spec, gpu.RELEASE_NAME).values
    term = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == [{"matchExpressions": [{"key": POOL_LABEL, "operator": "In", "values": ["h100-spot", "l4-shared"]}]}]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]


@pytest.mark.parametrize("stack", ["gcp", "kind"])
def test_no_device_plugin_where_the_cloud_has_one_or_there_are_no_gpus(stack):
    assert release(SPECS[stack], gpu.RELEASE_NAME) is None
    assert gpu.NAMESPACE not in [d["metadata"]["name"] for d in kinds(all_documents(SPECS[stack]), "Namespace")]


def test_stack_without_sharing_gets_no_plugin_config():
    pools = [{"name": "system", "role": "system", "minNodes": 1, "maxNodes": 1},
             {"name": "l4", "accelerator": "nvidia-l4", "maxNodes": 2}]
    spec = spec_with("aws", nodePools=pools, teams=[{"name": "research"}])
    assert "config" not in release(spec, gpu.RELEASE_NAME).values


# --- KubeRay -----------------------------------------------------------------------------------------


def test_kuberay_operator_on_system_pool_with_metrics():
    rel = release(SPECS["kind"], kuberay.RELEASE_NAME)
    assert (rel.namespace, rel.chart) == ("kuberay-system", versions.KUBERAY_CHART)
    assert rel.values["nodeSelector"] == {POOL_LABEL: "system"}
    assert rel.values["metrics"]["enabled"] is True


# --- observability -----------------------------------------------------------------------------------


def test_prometheus_selects_every_monitor_and_keeps_the_configured_retention():
    spec = spec_with("gcp", observability={"retention": "30d"})
    prometheus = release(spec, observability.PROMETHEUS_RELEASE).values["prometheus"]["prometheusSpec"]
    assert prometheus["retention"] == "30d"
    assert prometheus["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert prometheus["podMonitorSelectorNilUsesHelmValues"] is False


def test_grafana_off_means_no_dashboards_and_no_grafana_address():
    spec = spec_with("kind", observability={"grafana": False})
    values = release(spec, observability.PROMETHEUS_RELEASE).values
    assert values["grafana"]["enabled"] is False
    assert not [c for c in kinds(all_documents(spec), "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]]
    assert observability.grafana_address(spec) is None
    assert observability.prometheus_address(spec) == "monitoring/kube-prometheus-prometheus:9090"


def test_grafana_on_ships_ray_and_kueue_dashboards_as_labelled_json():
    dashboards = [c for c in kinds(all_documents(SPECS["kind"]), "ConfigMap")
                  if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert {d["metadata"]["name"] for d in dashboards} == {"dashboard-ray-cluster", "dashboard-ray-serve",
                                                           "dashboard-kueue"}
    exprs = []
    for cm in dashboards:
        (text,) = cm["data"].values()
        board = json.loads(text)
        assert board["panels"], f"{cm['metadata']['name']} has no panels"
        exprs += [t["expr"] for p in board["panels"] for t in p["targets"]]
    for metric in ("ray_node_cpu_utilization", "ray_node_gpus_utilization", "ray_serve_num_http_requests_total",
                   "kueue_pending_workloads"):
        assert any(metric in e for e in exprs), f"no panel queries {metric}"
    assert release(SPECS["kind"], observability.PROMETHEUS_RELEASE).values["grafana"]["sidecar"]["dashboards"][
        "enabled"] is True


def test_dcgm_exporter_only_on_gpu_stacks_and_with_a_service_monitor():
    assert release(SPECS["kind"], observability.DCGM_RELEASE) is None
    assert release(spec_with("aws", observability={"dcgmExporter": False}), observability.DCGM_RELEASE) is None
    values = release(SPECS["aws"], observability.DCGM_RELEASE).values
    assert values["serviceMonitor"]["enabled"] is True
    assert values["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_ray_pods_scraped_on_port_8080_across_team_namespaces():
    spec = SPECS["aws"]
    monitor = by_name(all_documents(spec), "PodMonitor", "ray-pods", "monitoring")["spec"]
    assert monitor["namespaceSelector"]["matchNames"] == [t.namespace_name for t in spec.teams]
    assert monitor["podMetricsEndpoints"][0]["port"] == observability.RAY_METRICS_PORT_NAME
    assert namespaces.RAY_METRICS_PORT == 8080


def test_kueue_metrics_monitor_and_rbac_name_the_prometheus_account():
    docs = all_documents(SPECS["aws"])
    monitor = by_name(docs, "ServiceMonitor", "kueue-controller", "monitoring")["spec"]
    assert monitor["namespaceSelector"] == {"matchNames": ["kueue-system"]}
    binding = kinds(docs, "ClusterRoleBinding")[0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": observability.PROMETHEUS_SERVICE_ACCOUNT,
                                    "namespace": "monitoring"}]
    values = release(SPECS["aws"], observability.PROMETHEUS_RELEASE).values
    assert values["prometheus"]["serviceAccount"]["name"] == observability.PROMETHEUS_SERVICE_ACCOUNT


def test_prometheus_off_installs_no_monitors():
    spec = spec_with("kind", observability={"prometheus": False, "grafana": False})
    docs = all_documents(spec)
    assert not [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com")]
    assert release(spec, observability.PROMETHEUS_RELEASE) is None
    assert release(spec, kuberay.RELEASE_NAME).values["metrics"]["serviceMonitor"]["enabled"] is False
    assert "monitoring" not in [d["metadata"]["name"] for d in kinds(docs, "Namespace")]


# --- namespaces and security -------------------------------------------------------------------------


def test_team_namespaces_enforce_baseline_and_warn_restricted():
    docs = all_documents(SPECS["aws"])
    for team in SPECS["aws"].teams:
        labels = by_name(docs, "Namespace", team.namespace_name)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
        assert labels["pod-security.kubernetes.io/warn"] == "restricted"
        assert labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_ray_service_account_carries_the_cloud_identity():
    gcp = by_name(all_documents(SPECS["gcp"]), "ServiceAccount", RAY_SERVICE_ACCOUNT, "research")
    assert gcp["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "park-gcp-ray@park-stack-demo.iam.gserviceaccount.com"}
    aws = by_name(all_documents(SPECS["aws"]), "ServiceAccount", RAY_SERVICE_ACCOUNT, "research")
    assert "annotations" not in aws["metadata"], "EKS Pod Identity binds outside Kubernetes"
    facts = ClusterFacts("s3://other", {"example.com/role": "x"})
    from_facts = namespaces.ray_service_account(SPECS["aws"].teams[0], facts)
    assert from_facts["metadata"]["annotations"] == {"example.com/role": "x"}, "facts, not the spec, decide"


def test_storage_configmap_tells_workloads_where_storage_is():
    docs = all_documents(SPECS["aws"])
    data = by_name(docs, "ConfigMap", STORAGE_CONFIGMAP, "serving")["data"]
    assert data[namespaces.STORAGE_URI_KEY] == "s3://park-aws-park-data"
    kind = by_name(all_documents(SPECS["kind"]), "ConfigMap", STORAGE_CONFIGMAP, "research")["data"]
    assert kind[namespaces.STORAGE_URI_KEY] == "file:///mnt/park-storage"
    assert kind[namespaces.STORAGE_PVC_KEY] == storage.PVC_NAME


def test_kind_storage_is_a_bound_claim_per_team_namespace():
    spec = SPECS["kind"]
    docs = all_documents(spec)
    for team in spec.teams:
        claim = by_name(docs, "PersistentVolumeClaim", storage.PVC_NAME, team.namespace_name)
        volume = by_name(docs, "PersistentVolume", claim["spec"]["volumeName"])
        assert volume["spec"]["hostPath"]["path"] == spec.storage.local_path
        assert volume["spec"]["claimRef"] == {"namespace": team.namespace_name, "name": storage.PVC_NAME}
    assert not kinds(all_documents(SPECS["aws"]), "PersistentVolume"), "clouds use buckets"


def test_shared_filesystem_becomes_a_claim_from_the_adapter_facts():
    spec = spec_with("aws", storage={"sharedFilesystem": {"capacityGib": 1200, "mountPath": "/mnt/shared"}})
    facts = ClusterFacts("s3://b", {}, {"kind": "fsx-lustre", "fileSystemId": "fs-123", "dnsName": "fs.example",
                                        "mountName": "abcd", "mountPath": "/mnt/shared"})
    objects = list(BUILDERS["storage"](spec, facts).objects)
    volume = by_name(objects, "PersistentVolume", storage.shared_volume_name(spec, spec.teams[0]))
    assert volume["spec"]["csi"] == {"driver": "fsx.csi.aws.com", "volumeHandle": "fs-123",
                                     "volumeAttributes": {"dnsname": "fs.example", "mountname": "abcd"}}
    assert by_name(objects, "PersistentVolumeClaim", storage.SHARED_FS_PVC_NAME, "research")
    rendered = by_name(all_documents(spec), "PersistentVolume", storage.shared_volume_name(spec, spec.teams[0]))
    assert rendered["spec"]["csi"]["volumeHandle"] == "<fsx-file-system-id>", "render shows a placeholder"


# A small NetworkPolicy evaluator (the semantics of networking.k8s.io/v1 for the selectors used here), so the
# tests below check what traffic the policies let through rather than how they are spelled.

@dataclass(frozen=True)
class Endpoint:
    namespace: str | None  # None: outside the cluster
    labels: dict[str, str] = field(default_factory=dict)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return other.namespace is None
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        ns_ok = _matches(peer["namespaceSelector"], {NAMESPACE_NAME_LABEL: other.namespace})
    else:
        ns_ok = other.namespace == policy_ns
    return ns_ok and _matches(peer.get("podSelector", {}), other.labels)


def _port_matches(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports)


def _side_allows(policies, pod: Endpoint, other: Endpoint, direction: str, port: int, protocol: str) -> bool:
    selecting = [p for p in policies if p["metadata"]["namespace"] == pod.namespace
                 and direction in p["spec"]["policyTypes"] and _matches(p["spec"]["podSelector"], pod.labels)]
    if not selecting:
        return True  # no policy isolates this pod in this direction
    key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peer_ok = any(_peer_matches(peer, pod.namespace, other) for peer in rule.get(peers, [])) \
                if peers in rule else True
            if peer_ok and _port_matches(rule, port, protocol):
                return True
    return False


def allowed(policies, source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP") -> bool:
    egress = source.namespace is None or _side_allows(policies, source, target, "Egress", port, protocol)
    ingress = target.namespace is None or _side_allows(policies, target, source, "Ingress", port, protocol)
    return egress and ingress


@pytest.fixture(scope="module")
def aws_policies():
    return kinds(all_documents(SPECS["aws"]), "NetworkPolicy")


RESEARCH = Endpoint("research", {"ray.io/node-type": "worker"})
SERVING = Endpoint("serving", {"ray.io/node-type": "head"})
INTERNET = Endpoint(None)


def test_network_policy_allows_all_traffic_inside_a_team_namespace(aws_policies):
    head = Endpoint("research", {"ray.io/node-type": "head"})
    for port in (6379, 8265, 10001, 45678):
        assert allowed(aws_policies, RESEARCH, head, port), f"worker -> head :{port} blocked inside the namespace"


def test_network_policy_isolates_team_namespaces(aws_policies):
    assert not allowed(aws_policies, SERVING, RESEARCH, 6379)
    assert not allowed(aws_policies, RESEARCH, SERVING, 8000)


def test_network_policy_allows_dns_storage_and_api_but_not_plain_http_out(aws_policies):
    dns = Endpoint("kube-system", {"k8s-app": "kube-dns"})
    assert allowed(aws_policies, RESEARCH, dns, 53, "UDP")
    assert allowed(aws_policies, RESEARCH, INTERNET, 443)
    assert not allowed(aws_policies, RESEARCH, INTERNET, 80)
    assert not allowed(aws_policies, RESEARCH, Endpoint("kube-system", {"app": "other"}), 53, "UDP")


def test_network_policy_lets_monitoring_scrape_and_the_operator_reach_the_dashboard(aws_policies):
    prometheus = Endpoint("monitoring", {"app": "prometheus"})
    operator = Endpoint("kuberay-system", {"app.kubernetes.io/name": "kuberay-operator"})
    assert allowed(aws_policies, prometheus, RESEARCH, 8080)
    assert not allowed(aws_policies, prometheus, RESEARCH, 6379)
    assert allowed(aws_policies, operator, SERVING, 8265)
    assert not allowed(aws_policies, operator, SERVING, 6379)


def test_kind_has_no_storage_egress_policy():
    names = {p["metadata"]["name"] for p in kinds(all_documents(SPECS["kind"]), "NetworkPolicy")}
    assert "allow-storage-egress" not in names and "allow-same-namespace" in names


# --- the whole: order and single source ------------------------------------------------------------


def test_addons_in_apply_order_with_namespaces_first():
    spec = SPECS["aws"]
    assert [a.name for a in build_all(spec)] == ["namespaces", "storage", "observability", "gpu", "kuberay", "kueue",
                                                 "autoscaler"]
    docs = all_documents(spec)
    namespaces_made = {d["metadata"]["name"]: i for i, d in enumerate(docs) if d["kind"] == "Namespace"}
    for i, doc in enumerate(docs):
        ns = doc["metadata"].get("namespace")
        if ns and ns != "kube-system":  # the one namespace every cluster starts with
            assert ns in namespaces_made and namespaces_made[ns] < i, f"{doc['kind']} {ns}: namespace comes later"


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_every_custom_resource_comes_after_the_release_that_provides_its_crd(stack):
    """Which CRDs a release provides and which custom resources a release or add-on creates come from the
    charts rendered by Helm's engine (park.components.charts), not from a list: in apply order (add-ons, and
    within one its releases then its objects) each custom resource kind is provided by an earlier release."""
    require_chart_dir()
    spec = SPECS[stack]
    provided_by: dict[tuple[str, str], str] = {}
    for addon in build_all(spec):
        for rel in addon.releases:
            rendered = render_release(rel, spec.kubernetes_version)
            used = custom_resource_kinds(rendered.install_objects())
            provided_by.update({kind: rel.name for kind in rendered.provided_kinds if kind not in provided_by})
            missing = sorted(used - provided_by.keys())
            assert not missing, f"release {rel.name} creates {missing} before any release provides their CRDs"
        missing = sorted(custom_resource_kinds(addon.objects) - provided_by.keys())
        assert not missing, f"add-on {addon.name} creates {missing} before any release provides their CRDs"
    assert provided_by[("monitoring.coreos.com", "ServiceMonitor")] == observability.PROMETHEUS_RELEASE
    assert provided_by[("kueue.x-k8s.io", "ClusterQueue")] == kueue.RELEASE_NAME
    assert provided_by[("ray.io", "RayJob")] == kuberay.RELEASE_NAME


def test_builders_are_pure():
    spec = SPECS["aws"]
    assert all_documents(spec) == all_documents(spec)
    facts = ClusterFacts.for_spec(spec)
    assert facts == ClusterFacts("s3://park-aws-park-data", {}, None)


@pytest.mark.parametrize(("stack", "installed"), [("aws", True), ("gcp", False), ("kind", False)])
def test_cluster_autoscaler_only_where_the_cloud_has_none(stack, installed):
    spec = SPECS[stack]
    found = release(spec, "cluster-autoscaler")
    assert (found is not None) == installed
    if installed:
        assert found.namespace == "kube-system"
        assert found.values["autoDiscovery"]["clusterName"] == spec.cluster_name
        assert found.values["rbac"]["serviceAccount"]["name"] == "cluster-autoscaler", \
            "the aws adapter's Pod Identity association trusts exactly this service account"
