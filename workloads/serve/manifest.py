"""The RayService that runs the serving workload on KubeRay, queued through Kueue.

``serveConfigV2`` is :func:`~park.workloads.serve.config.serve_config` as YAML, byte for byte, so what the
tests deploy on a local Ray head is what KubeRay deploys. ``rayClusterConfig`` comes from the shared
:func:`~park.workloads.cluster.ray_cluster_spec`, sized so every model's replicas fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import yaml
from park.components import versions
from park.components.conventions import metadata
from park.components.spec import NodePool, Problem, SpecError, StackSpec, Team, serving_gpu_pool, time_slices
from park.workloads import cluster
from park.workloads.serve.app import bundle_gpus
from park.workloads.serve.config import serve_config

NAME = "park-serve"
REPLICA_CPUS = 1
"""CPUs each model replica reserves (``ServeAppArgs.replica_cpus``'s default)."""
CPU_SHM = "1Gi"
GPU_SHM = "4Gi"
"""vLLM passes tensors between its processes through /dev/shm; GPU engines move more."""
UPGRADE_STRATEGY = {"type": "NewCluster"}
"""A changed rayClusterConfig brings up a new cluster and moves traffic once it serves: no downtime."""


@dataclass(frozen=True)
class ServingPlan:
    """Where the replicas go and how many worker pods that takes."""

    pool: NodePool
    shape: dict
    """``worker_cpus``, ``worker_memory``, ``worker_gpus`` of one worker pod."""
    replicas_per_pod: int
    workers: int
    min_workers: int
    max_workers: int


def serving_pool(spec: StackSpec) -> NodePool:
    """The workers pool for the models: GPU models go to :func:`~park.components.spec.serving_gpu_pool`
    (the rule the spec check also uses: nodes that hold a replica's GPUs, on-demand before spot, then the
    fewest GPUs per node); CPU-only models go to the first CPU workers pool, if any."""
    workers = [p for p in spec.node_pools if p.role == "workers"]
    need = max(spec.model_gpus(m) for m in spec.models)
    if need > 0:
        pool = serving_gpu_pool(spec)
        if pool is None:
            raise SpecError(
                [
                    Problem(
                        "models", f"a replica needs {need:g} GPUs; no GPU workers pool has that many per node"
                    )
                ]
            )
        return pool
    cpu_pools = [p for p in workers if not p.has_gpus]
    return cpu_pools[0] if cpu_pools else cluster.default_worker_pool(spec)


def _replicas_per_pod(spec: StackSpec, pool: NodePool, shape: dict) -> int:
    """Replicas one worker pod holds, counted as Ray packs them: a replica takes ``max(1, int(gpus))``
    devices with one bundle of :func:`~park.workloads.serve.app.bundle_gpus` on each, and fractional
    bundles share a device only up to its 1 GPU. On a time-sliced pool the pod's one Ray GPU is the whole
    device but the bundles are scaled to the pod's slice, so the pods on a GPU together keep to it."""
    fits = int(shape["worker_cpus"] // REPLICA_CPUS)
    for model in spec.models:
        gpus = spec.model_gpus(model)
        if gpus > 0:
            bundle = bundle_gpus(gpus, time_slices(pool))
            per_device = math.floor(1 / bundle + 1e-9) if bundle <= 1 else 0  # above 1: outgrows a slice
            fits = min(fits, int(shape["worker_gpus"] // max(1, int(gpus))) * per_device)
    return fits


def plan(spec: StackSpec, team: Team | None = None) -> ServingPlan:
    """Worker pods for the models: one pod shape (a node, within the team's quota), as many pods as the
    replicas need between every model's minimum (autoscaler floor) and maximum (ceiling)."""
    pool = serving_pool(spec)
    total_max = sum(m.max_replicas for m in spec.models)
    shape = cluster.worker_shape(spec, pool, workers=1, team=team)
    per_pod = _replicas_per_pod(spec, pool, shape)
    if per_pod >= 1:  # size again now that the pod count is known, so all pods share the quota
        shape = cluster.worker_shape(spec, pool, workers=math.ceil(total_max / per_pod), team=team)
        per_pod = _replicas_per_pod(spec, pool, shape)
    if per_pod < 1:
        raise SpecError(
            [
                Problem(
                    "models",
                    f"a model replica does not fit a worker pod on pool {pool.name!r} "
                    f"({shape['worker_cpus']:g} CPUs, {shape['worker_gpus']:g} GPUs)",
                )
            ]
        )
    initial = sum(max(m.min_replicas, 1) for m in spec.models)
    return ServingPlan(
        pool=pool,
        shape=shape,
        replicas_per_pod=per_pod,
        workers=math.ceil(initial / per_pod),
        min_workers=math.ceil(sum(m.min_replicas for m in spec.models) / per_pod),
        max_workers=math.ceil(total_max / per_pod),
    )


def serve_config_yaml(spec: StackSpec) -> str:
    return yaml.safe_dump(serve_config(spec), sort_keys=False)


def build_rayservice(
    spec: StackSpec, *, team: Team | str | None = None, priority: str | None = None, name: str = NAME
) -> dict:
    """The serving RayService in ``team``'s namespace (default: the serving team, else the stack's first;
    see :func:`~park.workloads.cluster.team_for`), sized to that team's quota and labelled for its LocalQueue
    and ``priority`` (default: the team's). When the replicas may scale, the in-tree autoscaler is on and
    the RayService is a Kueue elastic job, each scale-up admitted as a workload slice (docs/architecture.md,
    "Serving under Kueue")."""
    chosen = cluster.team_for(spec, team, workload="serve")
    layout = plan(spec, chosen)
    gpu = layout.shape["worker_gpus"] > 0 and any(spec.model_gpus(m) > 0 for m in spec.models)
    shape = layout.shape if gpu else {**layout.shape, "worker_gpus": 0}
    cluster_spec = cluster.ray_cluster_spec(
        spec,
        pool=layout.pool,
        workers=layout.workers,
        **shape,
        shm_size=GPU_SHM if gpu else CPU_SHM,
        autoscaling=layout.max_workers > layout.min_workers,
        min_workers=layout.min_workers,
        max_workers=layout.max_workers,
    )
    labels = {
        **cluster.PART_OF_LABEL,
        "app.kubernetes.io/name": name,
        **cluster.kueue_labels(spec, chosen, priority),
    }
    return {
        "apiVersion": versions.RAY_API_VERSION,
        "kind": "RayService",
        "metadata": metadata(name, chosen.namespace_name, labels=labels,
                             annotations=cluster.kueue_annotations(cluster_spec)),
        "spec": {
            "serveConfigV2": serve_config_yaml(spec),
            "upgradeStrategy": dict(UPGRADE_STRATEGY),
            "rayClusterConfig": cluster_spec,
        },
    }
