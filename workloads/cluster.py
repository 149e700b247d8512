"""The RayCluster shape every reference workload runs on, built from the stack spec.

One builder serves the train and batch RayJobs and the serve RayService (its ``rayClusterConfig``), so
placement rules live in one place: the head runs on the system pool and takes no work; workers run on a
workers pool (GPU first), select it by :data:`~park.components.spec.POOL_LABEL`, tolerate its taints, run
as the Ray service account (which carries the cloud identity) and read the storage ConfigMap.

Everything here is a pure function of :class:`StackSpec` returning plain dicts, valid against the
KubeRay 1.7 CRDs.
"""

from __future__ import annotations

import json
import math
from typing import Literal

from kubernetes.utils.quantity import parse_quantity
from park.components import catalog, versions
from park.components.conventions import RAY_METRICS_PORT, metadata, tolerations_for
from park.components.manifests import storage as manifests_storage
from park.components.spec import (
    GPU_RESOURCE,
    POOL_LABEL,
    RAY_SERVICE_ACCOUNT,
    STORAGE_CONFIGMAP,
    NodePool,
    Problem,
    SpecError,
    StackSpec,
    Team,
)

METRICS_PORT = RAY_METRICS_PORT
"""Ray's Prometheus metrics port in every Ray pod; the observability add-on scrapes it."""
HEAD_PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000, "metrics": METRICS_PORT}
HEAD_CPUS = "1"
HEAD_MEMORY = "2Gi"
"""The head runs GCS, the dashboard and the job supervisor only (``num-cpus: 0``); this is enough for them."""
STORAGE_MOUNT_NAME = "park-storage"
SHM_VOLUME_NAME = "dshm"

RAY_UID = 1000
"""The ``ray`` user of the rayproject/ray images (and so of workloads/Dockerfile)."""
CONTAINER_SECURITY_CONTEXT = {
    # Meets Pod Security "restricted", which team namespaces warn about (they enforce "baseline").
    "runAsNonRoot": True,
    "runAsUser": RAY_UID,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY_CONTEXT = {
    # The same rules for the whole pod, so the containers KubeRay adds (the autoscaler sidecar, the workers'
    # wait-gcs-ready init container) run as the ray user with the runtime's seccomp profile too.
    "runAsNonRoot": True,
    "runAsUser": RAY_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
ELASTIC_JOB_ANNOTATION = "kueue.x-k8s.io/elastic-job"
"""Marks a Kueue-managed job as elastic (workload slicing): the only way Kueue v0.19.2 accepts a queued
RayJob / RayService / RayCluster whose in-tree autoscaler is on (pkg/controller/jobs/raycluster/common.go)."""

WORKLOAD_TEAMS = {"serve": "serving", "train": "research", "batch": "research", "posttrain": "research"}
"""The team each reference workload goes to by default, when the stack has a team of that name (else the
stack's first team): serving on the serving team (whose priority lets it preempt during spikes),
training and batch on the research team."""


def workload_image(spec: StackSpec, gpu: bool) -> str:
    """The park-stack workload image (workloads/Dockerfile) for GPU or CPU pods: the stack's
    ``workloads.image`` / ``workloads.gpuImage``, else the pins in components/versions.py."""
    return spec.workloads.reference(gpu)


def default_worker_pool(spec: StackSpec) -> NodePool:
    """The first GPU pool, else the first workers pool."""
    workers = [p for p in spec.node_pools if p.role == "workers"]
    gpu_workers = [p for p in workers if p.has_gpus]
    if gpu_workers:
        return gpu_workers[0]
    if workers:
        return workers[0]
    raise SpecError([Problem("nodePools", "no pool with role 'workers' to run Ray workers on")])


def gpu_pools_by_cost(spec: StackSpec) -> list[NodePool]:
    """GPU workers pools, cheapest way to prove something first: fewest GPUs per node, then on-demand before
    spot (a node reclaimed mid-check fails the check for a reason that is not the platform's), then the
    lower node price (unpriced last)."""
    def key(pool: NodePool) -> tuple:
        price = catalog.node_price(spec.cloud, spec.instance_type(pool), spec.region)
        quote = price and (price.spot if pool.spot else price.on_demand)
        return spec.gpus_per_node(pool), pool.spot, quote.usd_per_hour if quote else math.inf

    return sorted((p for p in spec.gpu_pools if p.role == "workers"), key=key)


def proving_pool(spec: StackSpec) -> NodePool:
    """Where ``size="conformance"`` workloads run: the first of :func:`gpu_pools_by_cost` (one GPU there
    proves the GPU path), else :func:`default_worker_pool` (a CPU stack)."""
    pools = gpu_pools_by_cost(spec)
    return pools[0] if pools else default_worker_pool(spec)


def system_pool(spec: StackSpec) -> NodePool:
    """The first system pool: where Ray heads run (validated specs always have one)."""
    pool = next((p for p in spec.node_pools if p.role == "system"), None)
    if pool is None:
        raise SpecError([Problem("nodePools", "needs a pool with role 'system' to run the Ray head")])
    return pool


def team_for(spec: StackSpec, team: Team | str | None, *, workload: str | None = None) -> Team:
    """A team of the spec by object or name. When None: the team :data:`WORKLOAD_TEAMS` names for
    ``workload`` (``serve``, ``train``, ``batch``) if the stack has it, else the stack's first team."""
    if team is None:
        preferred = WORKLOAD_TEAMS.get(workload or "")
        return next((t for t in spec.teams if t.name == preferred), spec.default_team)
    name = team if isinstance(team, str) else team.name
    found = next((t for t in spec.teams if t.name == name), None)
    if found is None:
        raise SpecError([Problem("teams", f"unknown team {name!r}; known: {', '.join(t.name for t in spec.teams)}")])
    return found


def kueue_labels(spec: StackSpec, team: Team | str | None = None, priority: str | None = None, *,
                 workload: str | None = None) -> dict[str, str]:
    """Labels that hand a RayJob / RayService to Kueue: the LocalQueue of ``team`` (default: see
    :func:`team_for`) and a WorkloadPriorityClass (``priority``, else the team default; no priority label
    when neither is set)."""
    chosen = team_for(spec, team, workload=workload)
    labels = {QUEUE_LABEL: chosen.local_queue}
    priority = priority or chosen.default_priority
    if priority is not None:
        if priority not in spec.priority_class_names:
            raise SpecError([Problem("priority", f"unknown priority class {priority!r}; "
                                                 f"known: {', '.join(spec.priority_class_names)}")])
        labels[PRIORITY_LABEL] = priority
    return labels


def kueue_annotations(cluster_spec: dict) -> dict[str, str]:
    """Annotations for a Kueue-managed Ray object running ``cluster_spec``: an autoscaling cluster is an
    elastic job, so each scale-up is admitted as a new workload slice (docs/architecture.md, "Serving under
    Kueue"); a fixed-size cluster needs none."""
    return {ELASTIC_JOB_ANNOTATION: "true"} if cluster_spec.get("enableInTreeAutoscaling") else {}


def cpu_quantity(cpus: float) -> str:
    """A CPU count as a Kubernetes quantity: whole numbers plain, fractions in millicores."""
    if cpus <= 0:
        raise ValueError(f"worker_cpus must be above 0, got {cpus}")
    return str(int(cpus)) if float(cpus).is_integer() else f"{round(cpus * 1000)}m"


def _checked_quantity(name: str, value: str) -> str:
    try:
        parse_quantity(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a Kubernetes quantity (examples: 4Gi, 512Mi)") from None
    return value


def _storage_volume(spec: StackSpec) -> tuple[list[dict], list[dict]]:
    """On kind the storage location is a host folder, offered in each team namespace as the claim
    ``park-storage`` (Pod Security ``baseline`` forbids hostPath in pods); mounted at the same path, the
    ``file://`` storage URI means the same thing in every pod. Clouds use object storage: nothing to mount."""
    if not manifests_storage.uses_host_path(spec):
        return [], []
    volume = {"name": STORAGE_MOUNT_NAME, "persistentVolumeClaim": {"claimName": manifests_storage.PVC_NAME}}
    return [volume], [{"name": STORAGE_MOUNT_NAME, "mountPath": spec.storage.local_path}]


def _unshared(document: dict) -> dict:
    """A copy in which no dict or list appears twice (YAML would write anchors and aliases for those;
    deepcopy keeps the sharing)."""
    return json.loads(json.dumps(document))


def _container(name: str, image: str, resources: dict, ports: dict[str, int], env: dict[str, str],
               mounts: list[dict]) -> dict:
    container = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": port_name, "containerPort": port} for port_name, port in ports.items()],
        "resources": resources,
        "envFrom": [{"configMapRef": {"name": STORAGE_CONFIGMAP}}],
        "volumeMounts": [{"name": SHM_VOLUME_NAME, "mountPath": "/dev/shm"}, *mounts],
        "securityContext": CONTAINER_SECURITY_CONTEXT,
    }
    if env:
        container["env"] = [{"name": key, "value": value} for key, value in sorted(env.items())]
    return container


def _pod_template(spec: StackSpec, pool: NodePool, container: dict, volumes: list[dict], shm_size: str,
                  *, api_token: bool = False) -> dict:
    """``api_token``: mount the Kubernetes API token; only the head of an autoscaling cluster needs it (KubeRay
    v1.7.0 ``common/pod.go`` adds the autoscaler sidecar there, which scales the RayCluster through the API).
    Cloud identity does not need it: EKS Pod Identity projects its own token, GKE uses the metadata server."""
    pod = {
        "serviceAccountName": RAY_SERVICE_ACCOUNT,
        "automountServiceAccountToken": api_token,
        "securityContext": POD_SECURITY_CONTEXT,
        "nodeSelector": {POOL_LABEL: pool.name},
        "containers": [container],
        "volumes": [{"name": SHM_VOLUME_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}}, *volumes],
    }
    taints = spec.node_taints(pool)
    if taints:
        pod["tolerations"] = tolerations_for(taints)
    return {"spec": pod}


def ray_cluster_spec(spec: StackSpec, *, pool: NodePool | None = None, workers: int, worker_cpus: float,
                     worker_memory: str, worker_gpus: float = 0, image: str | None = None,
                     env: dict[str, str] | None = None, shm_size: str = "1Gi", autoscaling: bool = False,
                     min_workers: int | None = None, max_workers: int | None = None) -> dict:
    """A RayCluster ``spec`` (rayVersion, headGroupSpec, workerGroupSpecs) for KubeRay 1.7.

    ``worker_gpus`` becomes a whole ``nvidia.com/gpu`` limit (rounded up: Kubernetes has no fractional
    GPUs; on a time-sliced pool one unit is one slice). With ``autoscaling`` the in-tree autoscaler scales
    the group between ``min_workers`` (default 0) and ``max_workers`` (default ``workers``).
    """
    pool = pool or default_worker_pool(spec)
    if pool.role != "workers":
        raise ValueError(f"pool {pool.name!r} has role {pool.role!r}; Ray workers run on a 'workers' pool")
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    if worker_gpus < 0:
        raise ValueError(f"worker_gpus must be 0 or more, got {worker_gpus}")
    if worker_gpus > 0 and not pool.has_gpus:
        raise ValueError(f"worker_gpus={worker_gpus:g} on pool {pool.name!r}, which has no GPUs")
    gpu_limit = math.ceil(worker_gpus)
    if gpu_limit > spec.gpu_slots_per_node(pool) and pool.has_gpus:
        raise ValueError(f"worker_gpus={worker_gpus:g} is above the {spec.gpu_slots_per_node(pool)} "
                         f"GPUs a node of pool {pool.name!r} offers")
    _checked_quantity("worker_memory", worker_memory)
    _checked_quantity("shm_size", shm_size)
    low = (0 if autoscaling else workers) if min_workers is None else min_workers
    high = workers if max_workers is None else max_workers
    if not low <= workers <= high:
        raise ValueError(f"need min_workers <= workers <= max_workers, got {low} <= {workers} <= {high}")

    env = dict(env or {})
    head_pool = system_pool(spec)
    storage_volumes, storage_mounts = _storage_volume(spec)

    head_image = image or workload_image(spec, gpu=False)
    head_resources = {"requests": {"cpu": HEAD_CPUS, "memory": HEAD_MEMORY},
                      "limits": {"cpu": HEAD_CPUS, "memory": HEAD_MEMORY}}
    head_container = _container("ray-head", head_image, head_resources, HEAD_PORTS, env, storage_mounts)

    worker_image = image or workload_image(spec, gpu=gpu_limit > 0)
    quantities = {"cpu": cpu_quantity(worker_cpus), "memory": worker_memory}
    if gpu_limit:
        quantities[GPU_RESOURCE] = str(gpu_limit)
    worker_resources = {"requests": dict(quantities), "limits": dict(quantities)}
    worker_container = _container("ray-worker", worker_image, worker_resources, {"metrics": METRICS_PORT},
                                  env, storage_mounts)

    cluster = {
        "rayVersion": versions.RAY_VERSION,
        "headGroupSpec": {
            # num-cpus 0: no tasks or actors on the head, so a busy workload cannot starve GCS.
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0",
                               "metrics-export-port": str(METRICS_PORT)},
            "template": _pod_template(spec, head_pool, head_container, storage_volumes, shm_size,
                                      api_token=autoscaling),
        },
        "workerGroupSpecs": [{
            "groupName": f"{pool.name}-workers",
            "replicas": workers,
            "minReplicas": low,
            "maxReplicas": high,
            "rayStartParams": {"metrics-export-port": str(METRICS_PORT)},
            "template": _pod_template(spec, pool, worker_container, storage_volumes, shm_size),
        }],
    }
    if autoscaling:
        cluster["enableInTreeAutoscaling"] = True
        cluster["autoscalerOptions"] = {"upscalingMode": "Default", "idleTimeoutSeconds": 60}
    return _unshared(cluster)


SUBMITTER_ALLOWANCE_GIB = 1
"""Memory left in a team's quota for the RayJob's submitter pod (K8sJobMode) when sizing workers."""


def node_allocatable(spec: StackSpec, pool: NodePool) -> tuple[float, float]:
    """CPUs and GiB of memory one node of ``pool`` leaves to pods: the node less room for the kubelet and
    daemonsets (10%, at least one CPU and 1 GiB)."""
    offering = spec.offering(pool)
    if offering is not None:
        vcpus, mem_gib = offering.vcpus, offering.memory_gib
    else:
        vcpus, mem_gib = catalog.cpu_shape(spec.instance_type(pool)) or catalog.cpu_shape("kind-node")
    return max(1.0, min(vcpus * 0.9, vcpus - 1.0)), max(1.0, min(mem_gib * 0.85, mem_gib - 1.0))


def worker_shape(spec: StackSpec, pool: NodePool, *, workers: int = 1, team: Team | None = None) -> dict:
    """Worker pod size for ``workers`` pods on ``pool``: ``{"worker_cpus", "worker_memory", "worker_gpus"}``.

    A pod takes at most one node, less room for the kubelet and daemonsets (10%, at least one CPU and 1 GiB),
    and when ``team`` has a quota on the pool, all pods together stay inside it (so Kueue can admit the
    job without borrowing). GPU pods take every GPU of a node, or one slice of a time-sliced GPU."""
    cpus, memory_gib = node_allocatable(spec, pool)
    gpus = 1 if pool.gpu_sharing is not None else spec.gpus_per_node(pool)
    quota = next((q for q in (team.quotas if team else []) if q.pool == pool.name), None)
    if quota is not None and workers > 0:
        quota_cpu = float(parse_quantity(quota.cpu))
        quota_mem_gib = float(parse_quantity(quota.memory)) / 2**30
        if quota_cpu > 0:
            cpus = min(cpus, quota_cpu / workers)
        if quota_mem_gib > 0:
            memory_gib = min(memory_gib, (quota_mem_gib - SUBMITTER_ALLOWANCE_GIB) / workers)
        if pool.has_gpus and quota.gpus:
            gpus = min(gpus, quota.gpus // workers)
    # Ray schedules whole CPUs best; round down, keep at least one
    return {"worker_cpus": float(max(1, math.floor(cpus))), "worker_memory": f"{max(1, math.floor(memory_gib))}Gi",
            "worker_gpus": float(gpus)}


WorkloadSize = Literal["reference", "conformance"]
"""``reference``: what ``park render --workloads`` writes (workers on :func:`default_worker_pool`, two pods
of a node each); ``conformance``: the smallest shape that still proves the layer (:func:`sized_workers`)."""
PROVING_CPUS = 2
"""CPUs a conformance train / batch cluster gets in all: the batch pipeline is sized so that two CPUs never
deadlock (workloads/batch/pipeline.py ``build_pipeline``)."""
PROVING_MEMORY_GIB = 8
"""Memory of one conformance worker pod: a Ray worker, PyTorch and a CUDA context, with room to spare."""


def sized_workers(spec: StackSpec, *, size: WorkloadSize = "reference", pool: NodePool | None = None,
                  worker_pods: int | None = None, team: Team | None = None) -> tuple[NodePool, int, dict]:
    """Pool, pod count and :func:`worker_shape` of a train or batch cluster.

    ``reference``: ``pool`` or :func:`default_worker_pool`, ``worker_pods`` or two (at most the pool's
    maxNodes), each pod a node within the team's quota. ``conformance``: ``pool`` or :func:`proving_pool`,
    as few pods as give :data:`PROVING_CPUS` CPUs (one, unless a node has fewer), each at most
    :data:`PROVING_MEMORY_GIB` and one GPU (one slice on a time-sliced pool)."""
    if size == "reference":
        pool = pool or default_worker_pool(spec)
        pods = worker_pods if worker_pods is not None else min(2, pool.max_nodes)
        return pool, pods, worker_shape(spec, pool, workers=pods, team=team)
    if size != "conformance":
        raise ValueError(f"size must be 'reference' or 'conformance', got {size!r}")
    pool = pool or proving_pool(spec)
    if worker_pods is None:
        whole = worker_shape(spec, pool, workers=1, team=team)
        worker_pods = min(max(1, math.ceil(PROVING_CPUS / whole["worker_cpus"])), pool.max_nodes)
    shape = worker_shape(spec, pool, workers=worker_pods, team=team)
    memory_gib = min(float(parse_quantity(shape["worker_memory"])) / 2**30, PROVING_MEMORY_GIB)
    shape = {"worker_cpus": float(min(shape["worker_cpus"], max(1, PROVING_CPUS // worker_pods))),
             "worker_memory": f"{math.floor(memory_gib)}Gi",
             "worker_gpus": float(min(shape["worker_gpus"], 1))}
    return pool, worker_pods, shape


# --- RayJob: the envelope the train and batch workloads share -----------------------------------

TTL_AFTER_FINISHED_S = 600
"""Keep a finished RayJob's cluster-less record this long for `kubectl describe` and log collection."""
SHORT_DEADLINE_S = 30 * 60
LONG_DEADLINE_S = 2 * 60 * 60
DEFAULT_BACKOFF_LIMIT = 2
"""Resubmissions of a failed job; each one resumes (train: from the latest checkpoint; batch: rewrites
the same output files)."""
PART_OF_LABEL = {"app.kubernetes.io/part-of": "park-stack"}


def runtime_env_yaml(env: dict[str, str]) -> str:
    """``runtimeEnvYAML`` of a RayJob: environment variables only (the code is in the image)."""
    import yaml

    return yaml.safe_dump({"env_vars": dict(sorted(env.items()))}, sort_keys=False)


def rayjob(spec: StackSpec, *, name: str, entrypoint: list[str], cluster_spec: dict, env: dict[str, str],
           team: Team | str | None = None, priority: str | None = None,
           active_deadline_s: int = LONG_DEADLINE_S, backoff_limit: int = DEFAULT_BACKOFF_LIMIT,
           submitter_pool: NodePool | None = None) -> dict:
    """A RayJob queued through Kueue: created suspended (Kueue un-suspends it on admission), its own
    RayCluster deleted when the job ends, the entrypoint submitted by a Kubernetes Job (K8sJobMode).

    ``submitter_pool``: pin the submitter pod there. Without it the submitter has no nodeSelector and Kueue
    gives it the first flavor of the queue with room (the first workers pool), which may be a pool with no
    node running."""
    import shlex

    chosen = team_for(spec, team)
    labels = {**PART_OF_LABEL, "app.kubernetes.io/name": name, **kueue_labels(spec, chosen, priority)}
    return {
        "apiVersion": versions.RAY_API_VERSION,
        "kind": "RayJob",
        "metadata": metadata(name, chosen.namespace_name, labels=labels,
                             annotations=kueue_annotations(cluster_spec)),
        "spec": {
            "entrypoint": shlex.join(entrypoint),
            "runtimeEnvYAML": runtime_env_yaml(env),
            "submissionMode": "K8sJobMode",
            "suspend": True,
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_S,
            "activeDeadlineSeconds": active_deadline_s,
            "backoffLimit": backoff_limit,
            "rayClusterSpec": _unshared(cluster_spec),
            **({"submitterPodTemplate": submitter_template(spec, submitter_pool, cluster_spec)}
               if submitter_pool is not None else {}),
        },
    }


SUBMITTER_CONTAINER = "ray-job-submitter"
SUBMITTER_RESOURCES = {"requests": {"cpu": "500m", "memory": "200Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
"""KubeRay v1.7.0 ``common/job.go`` ``GetDefaultSubmitterContainer``: its name and resources."""


def submitter_template(spec: StackSpec, pool: NodePool, cluster_spec: dict) -> dict:
    """KubeRay's default submitter pod (v1.7.0 ``common/job.go`` ``GetSubmitterTemplate``: the head's image,
    500m / 200Mi; KubeRay fills in the ``ray job submit`` command when the container has none), pinned to
    ``pool`` and tolerating its taints, with the restricted security settings of the Ray pods."""
    container = {"name": SUBMITTER_CONTAINER,
                 "image": cluster_spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"],
                 "resources": json.loads(json.dumps(SUBMITTER_RESOURCES)),
                 "securityContext": CONTAINER_SECURITY_CONTEXT}
    pod = {"restartPolicy": "Never", "automountServiceAccountToken": False,
           "securityContext": POD_SECURITY_CONTEXT, "nodeSelector": {POOL_LABEL: pool.name},
           "containers": [container]}
    taints = spec.node_taints(pool)
    if taints:
        pod["tolerations"] = tolerations_for(taints)
    return _unshared({"spec": pod})
