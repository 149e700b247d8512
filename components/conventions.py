"""Names every layer shares: node labels and taints, service accounts, namespaces, ports, object metadata.

A leaf: it imports no other park module, so the spec, the manifest builders, the cloud adapters, the workloads
and the conformance checks can all read one definition without importing each other.
"""

from __future__ import annotations

from typing import Any

# --- nodes ---------------------------------------------------------------------------------------

POOL_LABEL = "park-stack.io/pool"
"""Every node carries this label with its pool's name, on every cloud; Kueue flavors select on it."""
GPU_RESOURCE = "nvidia.com/gpu"
DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"
"""Node label naming the NVIDIA device plugin config (per-pool time-slicing) a node uses."""
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_DRIVER_CONTAINER_DIR = "/usr/local/nvidia"
"""Where GKE documents mounting the driver folder, with ``LD_LIBRARY_PATH=/usr/local/nvidia/lib64``."""

# --- service accounts and namespaces --------------------------------------------------------------

RAY_SERVICE_ACCOUNT = "park-ray"
"""The Kubernetes service account Ray pods run as in each team namespace; it carries the cloud identity."""
STORAGE_CONFIGMAP = "park-storage"
"""ConfigMap in each team namespace telling workloads where storage is."""
CLUSTER_AUTOSCALER_SERVICE_ACCOUNT = ("kube-system", "cluster-autoscaler")
"""(namespace, name) the cluster autoscaler runs as; on aws its Pod Identity association trusts exactly this."""
SYSTEM_NAMESPACES = frozenset({
    "default", "kube-system", "kube-public", "kube-node-lease", "kuberay-system", "kueue-system",
    "monitoring", "gpu-operator", "nvidia-device-plugin", "park-system", "local-path-storage",
})

# --- metrics ---------------------------------------------------------------------------------------

RAY_METRICS_PORT = 8080
"""Ray's metrics export port on head and workers (``metrics-export-port``); Prometheus scrapes it."""
KUBE_PROMETHEUS_SYSTEM_COMPONENTS = ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy", "coreDns")
"""kube-prometheus-stack 88.5.3 values keys whose ServiceMonitor and alert rules depend on the cluster
(templates/exporters/*/servicemonitor.yaml and templates/prometheus/rules-1.14/*, each gated on ``.enabled``).
The API server and kubelet scrapers are left on: every cluster serves those to Prometheus."""

# --- objects ---------------------------------------------------------------------------------------

MANAGED_BY_LABEL = {"app.kubernetes.io/managed-by": "park-stack"}


def metadata(name: str, namespace: str | None = None, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = {**MANAGED_BY_LABEL, **(labels or {})}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def tolerations_for(taints: list[dict[str, str]]) -> list[dict[str, str]]:
    """Tolerations that let a pod onto nodes carrying ``taints`` (one per key and effect, any value)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for taint in taints:
        key = (taint["key"], taint["effect"])
        if key not in seen:
            seen.add(key)
            out.append({"key": taint["key"], "operator": "Exists", "effect": taint["effect"]})
    return out
