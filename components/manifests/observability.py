"""Observability: kube-prometheus-stack, dcgm-exporter, scrape config for Ray and Kueue, Grafana dashboards.

Everything lives in the ``monitoring`` namespace. Prometheus selects every ServiceMonitor and PodMonitor
in every namespace (not only those carrying the chart's release label), so monitors shipped by other
charts (KubeRay, dcgm-exporter) are picked up as well. Grafana's dashboard sidecar loads the ConfigMaps
labelled ``grafana_dashboard=1``.

Objects here need the Prometheus Operator CRDs, which come with kube-prometheus-stack (its ``crds``
subchart): the Pulumi add-on applies them as their own resources, and everything rendering a monitor (these
objects, the dcgm-exporter and KubeRay charts) waits for them, an order derived from the rendered charts.
"""

from __future__ import annotations

import json
from typing import Any

from park.components import versions
from park.components.conventions import GPU_DRIVER_CONTAINER_DIR, KUBE_PROMETHEUS_SYSTEM_COMPONENTS
from park.components.manifests import dashboards
from park.components.manifests.common import (
    KUEUE_NAMESPACE,
    MONITORING_NAMESPACE,
    AddonManifests,
    ClusterFacts,
    HelmRelease,
    gpu_pool_affinity,
    gpu_pool_tolerations,
    metadata,
    system_pool_selector,
)
from park.components.spec import StackSpec

NAMESPACE = MONITORING_NAMESPACE
PROMETHEUS_RELEASE = "kube-prometheus-stack"
DCGM_RELEASE = "dcgm-exporter"
MONITORING_API_VERSION = "monitoring.coreos.com/v1"

FULLNAME = "kube-prometheus"
"""The chart's ``fullnameOverride``: fixes the Prometheus service name below."""
PROMETHEUS_SERVICE = f"{FULLNAME}-prometheus"
PROMETHEUS_PORT = 9090
PROMETHEUS_SERVICE_ACCOUNT = "park-prometheus"
"""Named explicitly so the RBAC granting access to Kueue's protected metrics endpoint can name it."""
GRAFANA_SERVICE = "grafana"
GRAFANA_PORT = 80
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
RAY_METRICS_PORT_NAME = "metrics"
"""Container port name of Ray's metrics endpoint (8080) on KubeRay head and worker pods."""
RAY_NODE_LABEL = {"ray.io/is-ray-node": "yes"}
"""Label KubeRay puts on every Ray head and worker pod."""
KUEUE_METRICS_SERVICE_LABELS = {"app.kubernetes.io/name": "kueue", "app.kubernetes.io/component": "metrics-service"}


def installs_prometheus(spec: StackSpec) -> bool:
    return spec.observability.prometheus


def installs_grafana(spec: StackSpec) -> bool:
    return spec.observability.prometheus and spec.observability.grafana


def installs_dcgm_exporter(spec: StackSpec) -> bool:
    """GPU metrics: only on stacks with GPU pools (never on kind, which has none)."""
    return spec.has_gpus and spec.observability.dcgm_exporter


def installs_anything(spec: StackSpec) -> bool:
    return installs_prometheus(spec) or installs_dcgm_exporter(spec)


def prometheus_address(spec: StackSpec) -> str | None:
    """``namespace/service:port`` of Prometheus, for port-forwarding and for the conformance checks."""
    return f"{NAMESPACE}/{PROMETHEUS_SERVICE}:{PROMETHEUS_PORT}" if installs_prometheus(spec) else None


def grafana_address(spec: StackSpec) -> str | None:
    return f"{NAMESPACE}/{GRAFANA_SERVICE}:{GRAFANA_PORT}" if installs_grafana(spec) else None


# --- releases --------------------------------------------------------------------------------------


def system_component_scrapers(spec: StackSpec) -> dict[str, dict[str, bool]]:
    """``{component: {"enabled": ...}}`` for the chart's system-component scrapers: on only where the cloud
    exposes the component (``CloudCapabilities.scrapable_system_components``). Off also drops the component's
    alert rules, which the chart gates on the same flag."""
    scrapable = spec.capabilities.scrapable_system_components
    return {component: {"enabled": component in scrapable} for component in KUBE_PROMETHEUS_SYSTEM_COMPONENTS}


def prometheus_stack_values(spec: StackSpec) -> dict[str, Any]:
    on_system_pool = {"nodeSelector": system_pool_selector(spec)}
    return {
        "fullnameOverride": FULLNAME,
        **system_component_scrapers(spec),
        "prometheusOperator": dict(on_system_pool),
        "prometheus": {
            "serviceAccount": {"create": True, "name": PROMETHEUS_SERVICE_ACCOUNT},
            "prometheusSpec": {
                **on_system_pool,
                "retention": spec.observability.retention,
                # An empty selector means "all" only with these off; otherwise the chart adds its release label.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "serviceMonitorNamespaceSelector": {},
                "podMonitorNamespaceSelector": {},
            },
        },
        "alertmanager": {"alertmanagerSpec": dict(on_system_pool)},
        "kube-state-metrics": dict(on_system_pool),
        # node-exporter belongs on every node, GPU nodes and their taints included.
        "prometheus-node-exporter": {"tolerations": [{"operator": "Exists"}]},
        "grafana": {
            "enabled": installs_grafana(spec),
            "fullnameOverride": GRAFANA_SERVICE,
            **on_system_pool,
            # The chart's default admin password is a public string; an empty one makes the Grafana chart
            # generate a random password (kept in the `grafana` Secret). Not null: Pulumi drops null values.
            "adminPassword": "",
            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard", "labelValue": "1",
                                       "searchNamespace": "ALL"}},
        },
    }


DCGM_CHART_VOLUME_MOUNTS = (
    {"name": "exporter-metrics-volume", "mountPath": "/etc/dcgm-exporter/default-counters.csv",
     "subPath": "default-counters.csv"},
)
"""The dcgm-exporter 4.8.2 chart's default ``extraVolumeMounts`` (its counters file); a list value replaces the
default, so values that add a mount repeat these."""
DRIVER_VOLUME = "nvidia-install-dir-host"


def gpu_driver_mount_values(spec: StackSpec) -> dict[str, Any]:
    """Chart values that give dcgm-exporter the cloud's NVIDIA driver where the container toolkit does not.

    GKE installs the driver under ``/home/kubernetes/bin/nvidia`` and documents mounting it at
    ``/usr/local/nvidia`` with ``LD_LIBRARY_PATH=/usr/local/nvidia/lib64`` and GPU ids by device name (GKE's
    device plugin names devices, not UUIDs): GoogleCloudPlatform/prometheus-engine
    examples/nvidia-dcgm/exporter.yaml, the manifest of GKE's "NVIDIA DCGM" exporter page.
    """
    host_dir = spec.capabilities.gpu_driver_host_dir
    if host_dir is None:
        return {}
    return {
        "extraHostVolumes": [{"name": DRIVER_VOLUME, "hostPath": host_dir}],
        "extraVolumeMounts": [*map(dict, DCGM_CHART_VOLUME_MOUNTS),
                              {"name": DRIVER_VOLUME, "mountPath": GPU_DRIVER_CONTAINER_DIR, "readOnly": True}],
        "extraEnv": [
            {"name": "LD_LIBRARY_PATH", "value": f"{GPU_DRIVER_CONTAINER_DIR}/lib64"},
            {"name": "DCGM_EXPORTER_KUBERNETES_GPU_ID_TYPE", "value": "device-name"},
        ],
    }


def dcgm_exporter_values(spec: StackSpec) -> dict[str, Any]:
    return {
        "affinity": gpu_pool_affinity(spec),
        "tolerations": gpu_pool_tolerations(spec),
        "serviceMonitor": {"enabled": installs_prometheus(spec), "interval": "15s"},
        **gpu_driver_mount_values(spec),
    }


# --- objects ---------------------------------------------------------------------------------------


def ray_pod_monitor(spec: StackSpec) -> dict[str, Any]:
    """Scrape Ray head and worker pods (port ``metrics``, 8080) in every team namespace."""
    return {
        "apiVersion": MONITORING_API_VERSION, "kind": "PodMonitor",
        "metadata": metadata("ray-pods", NAMESPACE),
        "spec": {
            "namespaceSelector": {"matchNames": [team.namespace_name for team in spec.teams]},
            "selector": {"matchLabels": dict(RAY_NODE_LABEL)},
            "podMetricsEndpoints": [{
                "port": RAY_METRICS_PORT_NAME,
                "path": "/metrics",
                "relabelings": [
                    {"sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"], "targetLabel": "ray_io_cluster"},
                    {"sourceLabels": ["__meta_kubernetes_pod_label_ray_io_node_type"],
                     "targetLabel": "ray_io_node_type"},
                ],
            }],
        },
    }


def kueue_service_monitor() -> dict[str, Any]:
    """Scrape Kueue's controller metrics (HTTPS on 8443, authorised by the Prometheus service account token)."""
    return {
        "apiVersion": MONITORING_API_VERSION, "kind": "ServiceMonitor",
        "metadata": metadata("kueue-controller", NAMESPACE),
        "spec": {
            "namespaceSelector": {"matchNames": [KUEUE_NAMESPACE]},
            "selector": {"matchLabels": dict(KUEUE_METRICS_SERVICE_LABELS)},
            "endpoints": [{
                "port": "https", "scheme": "https", "path": "/metrics",
                "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
                # Kueue serves metrics with its self-signed internal certificate.
                "tlsConfig": {"insecureSkipVerify": True},
            }],
        },
    }


def metrics_reader_rbac() -> list[dict[str, Any]]:
    """Kueue's metrics endpoint checks that the caller may GET /metrics; grant that to Prometheus."""
    name = "park-prometheus-metrics-reader"
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": metadata(name),
         "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": metadata(name),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": PROMETHEUS_SERVICE_ACCOUNT, "namespace": NAMESPACE}]},
    ]


def dashboard_configmap(name: str, dashboard: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(f"dashboard-{name}", NAMESPACE, labels=DASHBOARD_LABEL),
            "data": {f"{name}.json": json.dumps(dashboard, indent=1, sort_keys=True)}}


def build(spec: StackSpec, facts: ClusterFacts) -> AddonManifests:
    del facts
    releases: list[HelmRelease] = []
    objects: list[dict[str, Any]] = []
    if installs_prometheus(spec):
        releases.append(HelmRelease(PROMETHEUS_RELEASE, NAMESPACE, versions.KUBE_PROMETHEUS_STACK_CHART,
                                    prometheus_stack_values(spec)))
    if installs_dcgm_exporter(spec):
        releases.append(HelmRelease(DCGM_RELEASE, NAMESPACE, versions.DCGM_EXPORTER_CHART, dcgm_exporter_values(spec)))
    if installs_prometheus(spec):
        if spec.observability.ray_metrics:
            objects.append(ray_pod_monitor(spec))
        if spec.observability.kueue_metrics:
            objects += metrics_reader_rbac()
            objects.append(kueue_service_monitor())
    if installs_grafana(spec):
        if spec.observability.ray_metrics:
            objects.append(dashboard_configmap("ray-cluster", dashboards.ray_cluster_dashboard()))
            objects.append(dashboard_configmap("ray-serve", dashboards.ray_serve_dashboard()))
        if spec.observability.kueue_metrics:
            objects.append(dashboard_configmap("kueue", dashboards.kueue_dashboard()))
    return AddonManifests("observability", releases=tuple(releases), objects=tuple(objects))
