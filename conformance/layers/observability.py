"""Observability: the metrics the workloads and GPUs produce reach Prometheus format, and on clusters
Prometheus itself. Runs last, so there are workload metrics to look for.

- local: ``observability.ray-metrics`` scrapes the run's Ray head (and Serve's and vLLM's metrics when this
  run served a model).
- cluster: Prometheus's own targets API and a query for dcgm-exporter's per-GPU series.
"""

from __future__ import annotations

import time

import httpx
from park.components.manifests import observability
from park.conformance import judgements as judge
from park.conformance.context import RunContext
from park.conformance.kube import KubeCluster, judged
from park.conformance.layers.table import CheckTable
from park.conformance.local import LocalMachine
from park.conformance.model import CheckFailed, NotApplicable, Passed

checks = CheckTable("observability")

GPU_METRICS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED")


# --- observability.ray-metrics --------------------------------------------------------------------------


@checks.local("observability.ray-metrics")
def local_ray_metrics(machine: LocalMachine, ctx: RunContext) -> Passed:
    """The head's Prometheus endpoint serves Ray's node metrics, and — when this run deployed the serving
    workload — Serve's per-replica health of that application and vLLM's engine metrics."""
    # prometheus_client comes with ray[default] (the workloads extra), like the head it scrapes.
    from prometheus_client.parser import text_string_to_metric_families

    head = machine.head()
    serve_app = ctx.facts.get("serve_application")
    deadline = time.monotonic() + 60
    families: dict[str, list] = {}
    missing: list[str] = ["ray_node_*"]
    while time.monotonic() < deadline:
        try:
            text = httpx.get(head.metrics_url, timeout=10).text
            families = {f.name: f.samples for f in text_string_to_metric_families(text) if f.samples}
        except httpx.HTTPError as err:
            ctx.log.info("metrics endpoint %s not ready: %s", head.metrics_url, err)
        missing = _missing_metrics(families, serve_app)
        if not missing:
            break
        time.sleep(2)
    ray_families = sorted(name for name in families if name.startswith("ray_"))
    details = {"ray_families": ray_families, "endpoint": head.metrics_url}
    if missing:
        raise CheckFailed(
            f"{head.metrics_url} lacks {', '.join(missing)} after 60 s ({len(ray_families)} Ray "
            f"metric families seen)",
            details,
        )
    served = ""
    if serve_app:
        vllm = [name for name in ray_families if name.startswith("ray_vllm")]
        served = (
            f"; Serve reports application {serve_app!r} healthy (ray_serve_deployment_replica_healthy) and "
            f"vLLM exports {len(vllm)} engine metric families"
        )
    return Passed(
        f"{head.metrics_url} serves {len(ray_families)} Ray metric families in Prometheus format{served}",
        details,
    )


def _missing_metrics(families: dict[str, list], serve_app: str | None) -> list[str]:
    missing = []
    if not any(name.startswith("ray_node_") for name in families):
        missing.append("ray_node_*")
    if serve_app:
        healthy = [
            s
            for s in families.get("ray_serve_deployment_replica_healthy", [])
            if s.labels.get("application") == serve_app and s.value == 1
        ]
        if not healthy:
            missing.append(f"ray_serve_deployment_replica_healthy{{application={serve_app!r}}} == 1")
        if not any(name.startswith("ray_vllm") for name in families):
            missing.append("ray_vllm_*")
    return missing


# --- observability.prometheus-targets, observability.gpu-metric -----------------------------------------


def prometheus(cluster: KubeCluster, path: str, query: dict[str, str] | None = None) -> dict:
    """GET ``path`` of the stack's Prometheus through the API server's service proxy."""
    if not observability.installs_prometheus(cluster.spec):
        raise NotApplicable("the stack turns Prometheus off (observability.prometheus: false)")
    return cluster.api.service_proxy(
        "GET",
        observability.NAMESPACE,
        observability.PROMETHEUS_SERVICE,
        observability.PROMETHEUS_PORT,
        path,
        query=query,
    )


@checks.cluster("observability.prometheus-targets")
def cluster_prometheus_targets(cluster: KubeCluster, ctx: RunContext) -> Passed:
    wanted = {}
    if cluster.spec.observability.ray_metrics:
        wanted["Ray"] = r"ray"
    if cluster.spec.observability.kueue_metrics:
        wanted["Kueue"] = r"kueue"
    if observability.installs_dcgm_exporter(cluster.spec):
        wanted["dcgm-exporter"] = r"dcgm"
    targets = prometheus(cluster, "api/v1/targets", {"state": "active"})
    result = judge.judge_prometheus_targets(targets, wanted)
    return judged(result, f"Prometheus scrapes {', '.join(wanted)} and the targets are up: {result.facts}")


@checks.cluster("observability.gpu-metric")
def cluster_gpu_metric(cluster: KubeCluster, ctx: RunContext) -> Passed:
    cluster.gpu_pool()
    result = judge.Judgement()
    for metric in GPU_METRICS:
        found = judge.judge_query_has_series(prometheus(cluster, "api/v1/query", {"query": metric}), metric)
        result.problems += found.problems
        result.facts.update(found.facts)
    return judged(result, f"Prometheus holds per-GPU {' and '.join(GPU_METRICS)} series")
