"""The RayJob that runs the training workload on a KubeRay cluster, queued through Kueue."""

from __future__ import annotations

from park.components.spec import NodePool, StackSpec, Team
from park.workloads import cluster, storage

NAME = "park-train"
CHECKPOINT_FOLDER = "checkpoints"
DEFAULT_EPOCHS = 3
DEFAULT_MIN_ACCURACY = 0.5
"""Chance on glyph digits is 0.1; two CPU workers pass 0.6 after three epochs (see data.py)."""
RUNTIME_ENV = {
    "PYTHONUNBUFFERED": "1",
    "RAY_TRAIN_V2_ENABLED": "1",  # the code uses Ray Train V2 semantics (the default in Ray 2.60); say so
}


def entrypoint(spec: StackSpec, *, run_name: str = NAME, epochs: int = DEFAULT_EPOCHS, num_workers: int = 2,
               cpus_per_worker: float = 1, min_accuracy: float | None = DEFAULT_MIN_ACCURACY,
               storage_uri: str | None = None) -> list[str]:
    """The command the job runs; ``storage_uri`` defaults to the stack's storage plus ``checkpoints/``."""
    command = ["python", "-m", "park.workloads.train",
               "--storage-uri", storage_uri or storage.join(spec.storage_uri, CHECKPOINT_FOLDER),
               "--run-name", run_name, "--epochs", str(epochs), "--num-workers", str(num_workers),
               "--cpus-per-worker", f"{cpus_per_worker:g}", "--use-gpu", "auto"]
    if min_accuracy is not None:
        command += ["--min-accuracy", f"{min_accuracy:g}"]
    return command


def build_rayjob(spec: StackSpec, *, team: Team | str | None = None, priority: str | None = None,
                 pool: NodePool | None = None, worker_pods: int | None = None, run_name: str = NAME,
                 epochs: int = DEFAULT_EPOCHS, min_accuracy: float | None = DEFAULT_MIN_ACCURACY,
                 name: str = NAME, size: cluster.WorkloadSize = "reference") -> dict:
    """The training RayJob, queued for ``team`` (default: the research team, else the first; see
    :func:`~park.workloads.cluster.team_for`). Workers go to ``pool`` (default: the first GPU pool, else the
    first workers pool), ``worker_pods`` of them (default: two, or the pool's maximum if smaller), sized to a
    node and that team's quota.
    ``size="conformance"`` (what ``park conformance`` submits): the smallest shape that proves the workload,
    :func:`~park.workloads.cluster.sized_workers`: one GPU on the cheapest GPU pool, the submitter beside it.
    One Ray Train worker per GPU on GPU pools, one per pod on CPU pools.

    Reruns under the same ``run_name`` resume from its latest checkpoint: give each conformance run its own
    name, keep it for retries (``backoffLimit``)."""
    chosen = cluster.team_for(spec, team, workload="train")
    pool, pods, shape = cluster.sized_workers(spec, size=size, pool=pool, worker_pods=worker_pods,
                                              team=chosen)
    gpus_per_pod = int(shape["worker_gpus"])
    train_workers_per_pod = max(1, gpus_per_pod)
    cpus_per_worker = max(1, int(shape["worker_cpus"]) // train_workers_per_pod)
    cluster_spec = cluster.ray_cluster_spec(spec, pool=pool, workers=pods, **shape)
    command = entrypoint(spec, run_name=run_name, epochs=epochs, num_workers=pods * train_workers_per_pod,
                         cpus_per_worker=cpus_per_worker, min_accuracy=min_accuracy)
    return cluster.rayjob(spec, name=name, entrypoint=command, cluster_spec=cluster_spec, env=RUNTIME_ENV,
                          team=chosen, priority=priority,
                          submitter_pool=pool if size == "conformance" else None,
                          active_deadline_s=cluster.LONG_DEADLINE_S)
