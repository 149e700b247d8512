"""Grafana dashboards for Ray and Kueue, written here from the metric names Ray and Kueue export.

Each dashboard is a plain dict in Grafana's dashboard JSON model (schemaVersion 39) with a Prometheus
datasource variable, so it works whatever the datasource is called. Grafana's dashboard sidecar loads
them from ConfigMaps labelled ``grafana_dashboard=1`` (see the observability add-on).
"""

from __future__ import annotations

from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39


def _panel(panel_id: int, title: str, exprs: dict[str, str], unit: str, x: int, y: int,
           width: int = 12, height: int = 8, kind: str = "timeseries") -> dict[str, Any]:
    """A panel with one query per legend entry (``legend -> PromQL``)."""
    targets = [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
               for i, (legend, expr) in enumerate(exprs.items())]
    return {
        "id": panel_id, "type": kind, "title": title, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": width, "h": height},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": targets,
    }


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]],
               tags: list[str]) -> dict[str, Any]:
    datasource_variable = {"name": "datasource", "type": "datasource", "query": "prometheus",
                           "label": "Data source", "hide": 0}
    return {
        "uid": uid, "title": title, "tags": ["park-stack", *tags], "editable": True,
        "schemaVersion": SCHEMA_VERSION, "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [datasource_variable, *variables]},
        "panels": panels,
    }


def _query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "query": query,
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*"}


def ray_cluster_dashboard() -> dict[str, Any]:
    """Node utilisation of every Ray cluster: CPU, memory, GPU and GPU memory, tasks and actors."""
    sel = 'ray_io_cluster=~"$cluster", namespace=~"$namespace"'
    panels = [
        _panel(1, "CPU utilisation by node", {"{{instance}}": f"avg by (instance) (ray_node_cpu_utilization{{{sel}}})"},
               "percent", 0, 0),
        _panel(2, "Memory used by node", {
            "{{instance}} used": f"sum by (instance) (ray_node_mem_used{{{sel}}})",
            "{{instance}} total": f"sum by (instance) (ray_node_mem_total{{{sel}}})",
        }, "bytes", 12, 0),
        _panel(3, "GPU utilisation by node", {
            "{{instance}} GPU {{GpuIndex}}": f"avg by (instance, GpuIndex) (ray_node_gpus_utilization{{{sel}}})",
        }, "percent", 0, 8),
        _panel(4, "GPU memory used by node", {
            "{{instance}}": f"sum by (instance) (ray_node_gram_used{{{sel}}}) * 1024 * 1024",
        }, "bytes", 12, 8),
        _panel(5, "Tasks by state", {"{{State}}": f"sum by (State) (ray_tasks{{{sel}}})"}, "short", 0, 16),
        _panel(6, "Actors by state", {"{{State}}": f"sum by (State) (ray_actors{{{sel}}})"}, "short", 12, 16),
    ]
    variables = [
        _query_variable("namespace", "Namespace", "label_values(ray_node_cpu_utilization, namespace)"),
        _query_variable("cluster", "Ray cluster", "label_values(ray_node_cpu_utilization, ray_io_cluster)"),
    ]
    return _dashboard("park-ray-cluster", "Ray cluster", panels, variables, ["ray"])


def ray_serve_dashboard() -> dict[str, Any]:
    """Ray Serve traffic: request rate, error rate, latency percentiles, ongoing requests, replica health."""
    sel = 'ray_io_cluster=~"$cluster", namespace=~"$namespace"'
    latency = f"sum by (le, application) (rate(ray_serve_http_request_latency_ms_bucket{{{sel}}}[5m]))"
    panels = [
        _panel(1, "HTTP requests per second", {
            "{{application}} {{route}}": f"sum by (application, route) (rate(ray_serve_num_http_requests_total{{{sel}}}[5m]))",
        }, "reqps", 0, 0),
        _panel(2, "HTTP errors per second", {
            "{{application}} {{error_code}}":
                f"sum by (application, error_code) (rate(ray_serve_num_http_error_requests_total{{{sel}}}[5m]))",
        }, "reqps", 12, 0),
        _panel(3, "HTTP latency", {
            "{{application}} p50": f"histogram_quantile(0.5, {latency})",
            "{{application}} p95": f"histogram_quantile(0.95, {latency})",
            "{{application}} p99": f"histogram_quantile(0.99, {latency})",
        }, "ms", 0, 8),
        _panel(4, "Ongoing HTTP requests", {
            "{{instance}}": f"sum by (instance) (ray_serve_num_ongoing_http_requests{{{sel}}})",
        }, "short", 12, 8),
        _panel(5, "Healthy replicas by deployment", {
            "{{application}} {{deployment}}":
                f"sum by (application, deployment) (ray_serve_deployment_replica_healthy{{{sel}}})",
        }, "short", 0, 16),
        _panel(6, "Queued requests by deployment", {
            "{{application}} {{deployment}}":
                f"sum by (application, deployment) (ray_serve_deployment_queued_queries{{{sel}}})",
        }, "short", 12, 16),
    ]
    variables = [
        _query_variable("namespace", "Namespace", "label_values(ray_serve_num_http_requests_total, namespace)"),
        _query_variable("cluster", "Ray cluster", "label_values(ray_serve_num_http_requests_total, ray_io_cluster)"),
    ]
    return _dashboard("park-ray-serve", "Ray Serve", panels, variables, ["ray", "serve"])


def kueue_dashboard() -> dict[str, Any]:
    """Kueue queues: pending and admitted workloads, quota usage against nominal quota, evictions."""
    sel = 'cluster_queue=~"$cluster_queue"'
    panels = [
        _panel(1, "Pending workloads", {
            "{{cluster_queue}} {{status}}": f"sum by (cluster_queue, status) (kueue_pending_workloads{{{sel}}})",
        }, "short", 0, 0),
        _panel(2, "Admitted active workloads", {
            "{{cluster_queue}}": f"sum by (cluster_queue) (kueue_admitted_active_workloads{{{sel}}})",
        }, "short", 12, 0),
        _panel(3, "Resource usage vs nominal quota", {
            "{{cluster_queue}} {{flavor}} {{resource}} used":
                f"sum by (cluster_queue, flavor, resource) (kueue_cluster_queue_resource_usage{{{sel}}})",
            "{{cluster_queue}} {{flavor}} {{resource}} quota":
                f"sum by (cluster_queue, flavor, resource) (kueue_cluster_queue_nominal_quota{{{sel}}})",
        }, "short", 0, 8, width=24),
        _panel(4, "Evictions per minute", {
            "{{cluster_queue}} {{reason}}":
                f"sum by (cluster_queue, reason) (rate(kueue_evicted_workloads_total{{{sel}}}[5m])) * 60",
        }, "short", 0, 16),
        _panel(5, "Admission wait time p90", {
            "{{cluster_queue}}": "histogram_quantile(0.9, sum by (le, cluster_queue) "
                                 f"(rate(kueue_admission_wait_time_seconds_bucket{{{sel}}}[5m])))",
        }, "s", 12, 16),
    ]
    variables = [_query_variable("cluster_queue", "ClusterQueue", "label_values(kueue_pending_workloads, cluster_queue)")]
    return _dashboard("park-kueue", "Kueue queues", panels, variables, ["kueue"])
