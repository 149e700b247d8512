"""Namespaces and their security: applied first, before any operator or custom resource.

Per team: a namespace under Pod Security admission (enforce ``baseline``, warn and audit ``restricted``),
the Ray service account carrying the cloud identity, network policies (deny by default; allow the
namespace itself, DNS, storage and the Kubernetes API, and let monitoring and the KubeRay operator in),
and the storage ConfigMap that workloads read with ``envFrom``.

Platform namespaces (operators, monitoring, GPU agents) are created here too, so every release installs
into a namespace that already carries the right Pod Security level.
"""

from __future__ import annotations

from typing import Any

from park.components.conventions import RAY_METRICS_PORT, RAY_SERVICE_ACCOUNT, STORAGE_CONFIGMAP
from park.components.manifests import gpu, kueue, observability, storage
from park.components.manifests.common import (
    KUBE_SYSTEM_NAMESPACE,
    KUBERAY_NAMESPACE,
    MONITORING_NAMESPACE,
    NAMESPACE_NAME_LABEL,
    AddonManifests,
    ClusterFacts,
    metadata,
)
from park.components.spec import StackSpec, Team

TEAM_LABEL = "park-stack.io/team"

# Keys of the storage ConfigMap; workloads load it with envFrom, so each key becomes an environment variable.
STORAGE_URI_KEY = "PARK_STORAGE_URI"
SHARED_FS_PATH_KEY = "PARK_SHARED_FS_PATH"
SHARED_FS_PVC_KEY = "PARK_SHARED_FS_PVC"
STORAGE_PVC_KEY = "PARK_STORAGE_PVC"
CLUSTER_NAME_KEY = "PARK_CLUSTER_NAME"

RAY_DASHBOARD_PORTS = (8265, 52365)
"""Ray dashboard (jobs and Serve REST API) and dashboard agent; the KubeRay operator calls both."""
DNS_PORT = 53
HTTPS_PORT = 443
KIND_API_SERVER_PORT = 6443
"""Policies see the API server's endpoint port after the ``kubernetes`` Service is resolved: 443 on EKS and
GKE, 6443 on kind."""


def pod_security_labels(enforce: str, warn: str = "restricted") -> dict[str, str]:
    return {
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": warn,
        "pod-security.kubernetes.io/warn-version": "latest",
        "pod-security.kubernetes.io/audit": warn,
        "pod-security.kubernetes.io/audit-version": "latest",
    }


def platform_namespaces(spec: StackSpec) -> dict[str, str]:
    """Namespace -> Pod Security level for every platform add-on the stack installs.

    Node agents (node-exporter, dcgm-exporter, the device plugin) need host access: ``privileged``.
    The operators run restricted-compliant pods; ``baseline`` is enforced and ``restricted`` warned.
    """
    levels = {KUBERAY_NAMESPACE: "baseline", kueue.NAMESPACE: "baseline"}
    if observability.installs_anything(spec):
        levels[MONITORING_NAMESPACE] = "privileged"
    if gpu.installs_device_plugin(spec):
        levels[gpu.NAMESPACE] = "privileged"
    return levels


def namespace(name: str, level: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    warn = "restricted" if level != "privileged" else "privileged"
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": metadata(name, labels={**pod_security_labels(level, warn), **(labels or {})})}


def ray_service_account(team: Team, facts: ClusterFacts) -> dict[str, Any]:
    """No API token by default: Ray pods reach their cloud identity without one, and the one pod that talks to
    the Kubernetes API (an autoscaling head) asks for it in its own spec."""
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": metadata(RAY_SERVICE_ACCOUNT, team.namespace_name,
                                 annotations=facts.ray_service_account_annotations),
            "automountServiceAccountToken": False}


def storage_configmap(spec: StackSpec, team: Team, facts: ClusterFacts) -> dict[str, Any]:
    data = {STORAGE_URI_KEY: facts.storage_uri, CLUSTER_NAME_KEY: spec.cluster_name}
    if spec.storage.shared_filesystem is not None:
        data[SHARED_FS_PATH_KEY] = spec.storage.shared_filesystem.mount_path
        data[SHARED_FS_PVC_KEY] = storage.SHARED_FS_PVC_NAME
    if storage.uses_host_path(spec):
        data[STORAGE_PVC_KEY] = storage.PVC_NAME
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(STORAGE_CONFIGMAP, team.namespace_name),
            "data": data}


# --- network policies ------------------------------------------------------------------------------


def _policy(name: str, ns: str, policy_types: list[str], ingress: list | None = None,
            egress: list | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {}, "policyTypes": policy_types}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata(name, ns),
            "spec": spec}


def _from_namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def network_policies(spec: StackSpec, team: Team) -> list[dict[str, Any]]:
    """Deny everything, then allow what a Ray workload needs, one named policy per reason."""
    ns = team.namespace_name
    anywhere = [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    policies = [
        _policy("default-deny-all", ns, ["Ingress", "Egress"]),
        # Ray head and workers talk on many dynamic ports (GCS, object manager, workers): allow the whole
        # namespace to itself rather than chase port ranges.
        _policy("allow-same-namespace", ns, ["Ingress", "Egress"],
                ingress=[{"from": [{"podSelector": {}}]}], egress=[{"to": [{"podSelector": {}}]}]),
        _policy("allow-dns-egress", ns, ["Egress"], egress=[{
            "to": [{**_from_namespace(KUBE_SYSTEM_NAMESPACE), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}],
        }]),
        # The Ray autoscaler and the RayJob submitter reach the Kubernetes API.
        _policy("allow-kube-api-egress", ns, ["Egress"],
                egress=[{"to": anywhere, "ports": _tcp(HTTPS_PORT, KIND_API_SERVER_PORT)}]),
        _policy("allow-kuberay-operator-ingress", ns, ["Ingress"],
                ingress=[{"from": [_from_namespace(KUBERAY_NAMESPACE)], "ports": _tcp(*RAY_DASHBOARD_PORTS)}]),
    ]
    if storage.uses_object_storage(spec):
        # S3 and GCS have no fixed address ranges: HTTPS to anywhere (also model hubs for served models).
        policies.append(_policy("allow-storage-egress", ns, ["Egress"],
                                egress=[{"to": anywhere, "ports": _tcp(HTTPS_PORT)}]))
    if observability.installs_prometheus(spec):
        policies.append(_policy("allow-monitoring-ingress", ns, ["Ingress"],
                                ingress=[{"from": [_from_namespace(MONITORING_NAMESPACE)],
                                          "ports": _tcp(RAY_METRICS_PORT)}]))
    return policies


def build(spec: StackSpec, facts: ClusterFacts) -> AddonManifests:
    objects: list[dict[str, Any]] = [namespace(name, level) for name, level in platform_namespaces(spec).items()]
    for team in spec.teams:
        objects.append(namespace(team.namespace_name, "baseline", labels={TEAM_LABEL: team.name}))
    for team in spec.teams:
        objects.append(ray_service_account(team, facts))
        objects.append(storage_configmap(spec, team, facts))
        objects.extend(network_policies(spec, team))
    return AddonManifests("namespaces", objects=tuple(objects))
