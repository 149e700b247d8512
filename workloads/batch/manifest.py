"""The RayJob that runs the batch-inference workload on a KubeRay cluster, queued through Kueue."""

from __future__ import annotations

from park.components.spec import NodePool, StackSpec, Team
from park.workloads import cluster, storage

NAME = "park-batch"
INPUT_FOLDER = "batch/input"
OUTPUT_FOLDER = "batch/output"
DEFAULT_ROWS = 10_000
RUNTIME_ENV = {
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",  # the optional LLM stage loads a model folder; never reach for a hub
}


def entrypoint(spec: StackSpec, *, rows: int = DEFAULT_ROWS, input_uri: str | None = None,
               output_uri: str | None = None, llm_model: str | None = None) -> list[str]:
    """The command the job runs; input and output default to folders in the stack's storage."""
    command = ["python", "-m", "park.workloads.batch",
               "--input-uri", input_uri or storage.join(spec.storage_uri, INPUT_FOLDER),
               "--output-uri", output_uri or storage.join(spec.storage_uri, OUTPUT_FOLDER),
               "--rows", str(rows)]
    if llm_model:
        command += ["--llm-model", llm_model]
    return command


def build_rayjob(spec: StackSpec, *, team: Team | str | None = None, priority: str | None = None,
                 pool: NodePool | None = None, worker_pods: int | None = None, rows: int = DEFAULT_ROWS,
                 llm_model: str | None = None, output_folder: str = OUTPUT_FOLDER, name: str = NAME,
                 size: cluster.WorkloadSize = "reference") -> dict:
    """The batch RayJob, queued for ``team`` (default: the research team, else the first; see
    :func:`~park.workloads.cluster.team_for`). Workers go to ``pool`` (default: the first GPU pool, else the
    first workers pool), ``worker_pods`` of them (default: two, or the pool's maximum if smaller), sized to a
    node and that team's quota.
    ``size="conformance"`` (what ``park conformance`` submits): the smallest shape that proves the workload,
    :func:`~park.workloads.cluster.sized_workers`: one GPU on the cheapest GPU pool, the submitter beside it.
    ``llm_model`` (a folder the pods can read, e.g. on kind ``/mnt/park-storage/models/tiny-llama``)
    adds the vLLM stage. A rerun overwrites ``output_folder``; give concurrent runs their own folder."""
    chosen = cluster.team_for(spec, team, workload="batch")
    pool, pods, shape = cluster.sized_workers(spec, size=size, pool=pool, worker_pods=worker_pods,
                                              team=chosen)
    cluster_spec = cluster.ray_cluster_spec(spec, pool=pool, workers=pods, **shape)
    command = entrypoint(spec, rows=rows, llm_model=llm_model,
                         output_uri=storage.join(spec.storage_uri, output_folder))
    return cluster.rayjob(spec, name=name, entrypoint=command, cluster_spec=cluster_spec, env=RUNTIME_ENV,
                          team=chosen, priority=priority,
                          submitter_pool=pool if size == "conformance" else None,
                          active_deadline_s=cluster.SHORT_DEADLINE_S)
