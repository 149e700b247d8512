"""Scheduling: Kueue admits work through a team's queue, all of a gang or none of it, and by priority.

Cluster only (the local target has no queue): small Jobs and CPU-only RayJobs, each pinned to a pool and
deleted when its check ends.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kubernetes.utils.quantity import parse_quantity
from park.components.manifests.common import tolerations_for
from park.components.spec import POOL_LABEL, NodePool
from park.conformance import judgements as judge
from park.conformance.checks import BY_NAME
from park.conformance.context import RunContext
from park.conformance.kube import KubeCluster, judged, wait_until
from park.conformance.kube_api import KubeError
from park.conformance.layers.table import CheckTable
from park.conformance.model import CheckFailed, NotApplicable, Passed
from park.workloads import cluster as builders

checks = CheckTable("scheduling")


def job(
    cluster: KubeCluster,
    what: str,
    cpu: str,
    memory: str,
    parallelism: int = 1,
    priority: str | None = None,
    seconds: int = 5,
    active_deadline_s: int | None = None,
    pool: NodePool | None = None,
) -> dict:
    """A suspended Job for the team's LocalQueue, pinned to ``pool`` (default: :func:`admission_pool`):
    unpinned, Kueue would give it the first flavor with room, which may be a pool with no node running."""
    pool = pool or admission_pool(cluster)
    labels = builders.kueue_labels(cluster.spec, cluster.team, priority or cluster.ctx.options.priority)
    resources = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}
    placement: dict[str, Any] = {"nodeSelector": {POOL_LABEL: pool.name}}
    if cluster.spec.node_taints(pool):
        placement["tolerations"] = tolerations_for(cluster.spec.node_taints(pool))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": cluster.object_name(what), "namespace": cluster.namespace, "labels": labels},
        "spec": {
            "suspend": True,
            "parallelism": parallelism,
            "completions": parallelism,
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 600,
            **({"activeDeadlineSeconds": active_deadline_s} if active_deadline_s else {}),
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    **placement,
                    "containers": [
                        {
                            "name": "sleep",
                            "image": cluster.image(gpu=False),
                            "command": ["python", "-c", f"import time; time.sleep({seconds})"],
                            "securityContext": builders.CONTAINER_SECURITY_CONTEXT,
                            "resources": resources,
                        }
                    ],
                }
            },
        },
    }


def tiny_rayjob(cluster: KubeCluster, what: str, workers: int, worker_cpus: float = 1) -> dict:
    """A RayJob of ``workers`` CPU-only workers on the proving pool, its submitter pinned there too."""
    pool = cluster.proving_pool()
    spec = builders.ray_cluster_spec(
        cluster.spec, pool=pool, workers=workers, worker_cpus=worker_cpus, worker_memory="1Gi"
    )
    return builders.rayjob(
        cluster.spec,
        name=cluster.object_name(what),
        entrypoint=["python", "-c", "import ray; ray.init(); print(ray.cluster_resources())"],
        cluster_spec=spec,
        env={},
        team=cluster.team,
        priority=cluster.ctx.options.priority,
        active_deadline_s=600,
        submitter_pool=pool,
    )


# --- scheduling.queue-admission -------------------------------------------------------------------------


def admission_pool(cluster: KubeCluster) -> NodePool:
    """Where the small admission Job runs: the system pool when the team has quota there (Ray heads need
    it anyway, and its nodes always run), else the proving pool."""
    system = builders.system_pool(cluster.spec)
    if any(q.pool == system.name for q in cluster.team.quotas):
        return system
    return cluster.proving_pool()


def admission_job(cluster: KubeCluster) -> dict:
    return job(cluster, "admit", "100m", "128Mi")


@checks.cluster("scheduling.queue-admission", creates=lambda cluster: [admission_job(cluster)])
def cluster_queue_admission(cluster: KubeCluster, ctx: RunContext) -> Passed:
    admit = admission_job(cluster)
    cluster.create(admit)
    name = admit["metadata"]["name"]

    def admitted() -> tuple[bool, str]:
        return judge.admission_state(cluster.workload_of("Job", name))

    wait_until(
        admitted, cluster.time_left(120), f"Workload of Job {name} admitted by {cluster.team.local_queue}"
    )

    def completed() -> tuple[bool, str]:
        live = cluster.api.get("batch/v1", "Job", name, cluster.namespace) or {}
        return bool(live.get("status", {}).get("succeeded")), json.dumps(live.get("status", {}))[:300]

    wait_until(completed, cluster.time_left(240), f"Job {name} completed")
    cluster.release(admit)
    return Passed(
        f"Job {name} was admitted through LocalQueue {cluster.namespace}/{cluster.team.local_queue} and "
        f"ran to completion"
    )


# --- scheduling.gang-admission --------------------------------------------------------------------------


def gang_cohort_cpus(cluster: KubeCluster) -> float:
    """CPUs every team together has on the proving pool: a RayJob needing more can never be admitted."""
    pool = cluster.proving_pool()
    return sum(
        float(parse_quantity(q.cpu)) for t in cluster.spec.teams for q in t.quotas if q.pool == pool.name
    )


def gang_rayjobs(cluster: KubeCluster) -> tuple[dict, dict]:
    """The RayJob bigger than the cohort (never admitted: no pod) and the 2-worker one that fits."""
    oversized = tiny_rayjob(cluster, "gang-big", workers=int(gang_cohort_cpus(cluster)) + 2)
    return oversized, tiny_rayjob(cluster, "gang-fit", workers=2)


def _planned_gang(cluster: KubeCluster) -> list[tuple[dict, str]]:
    oversized, fitting = gang_rayjobs(cluster)
    return [(oversized, "bigger than the cohort: Kueue admits none of it, no pod runs"), (fitting, "")]


@checks.cluster("scheduling.gang-admission", creates=_planned_gang)
def cluster_gang_admission(cluster: KubeCluster, ctx: RunContext) -> Passed:
    cohort_cpus = gang_cohort_cpus(cluster)
    oversized, fitting = gang_rayjobs(cluster)
    cluster.create(oversized)
    big_name = oversized["metadata"]["name"]
    time.sleep(min(30.0, cluster.time_left(30)))  # give Kueue time to (wrongly) admit it
    held = judge.judge_gang_held(
        cluster.workload_of("RayJob", big_name),
        cluster.api.list("v1", "Pod", cluster.namespace, f"ray.io/cluster={big_name}"),
    )
    if not held.ok:
        raise CheckFailed("; ".join(held.problems), held.facts)
    cluster.api.delete(oversized)
    cluster.create(fitting)
    fit_name = fitting["metadata"]["name"]
    try:
        wait_until(
            lambda: judge.admission_state(cluster.workload_of("RayJob", fit_name)),
            cluster.time_left(300),
            f"Workload of RayJob {fit_name} admitted",
        )
        gang = judge.judge_gang_admission(cluster.workload_of("RayJob", fit_name))
    finally:
        cluster.release(fitting)
    return judged(
        gang,
        f"a RayJob needing {int(cohort_cpus) + 2} workers (more than the cohort's "
        f"{cohort_cpus:g} CPUs) got no pod; a 2-worker RayJob was admitted whole: "
        f"{gang.facts['assigned']}",
    )


# --- scheduling.preemption ------------------------------------------------------------------------------


def preemption_jobs(cluster: KubeCluster) -> tuple[dict, dict, str, str]:
    """A low- and a high-priority Job, each asking for 80% of the team's CPU quota on the proving pool
    (so only one fits), pinned there; with the CPU each asks and the quota."""
    pool = cluster.proving_pool()
    quota = next((q for q in cluster.team.quotas if q.pool == pool.name), None)
    priorities = sorted(cluster.spec.priority_classes, key=lambda p: p.value)
    if quota is None or len(priorities) < 2:
        raise NotApplicable(
            f"team {cluster.team.name} has no quota on pool {pool.name}, or the stack has fewer "
            f"than two priority classes"
        )
    cpus = float(parse_quantity(quota.cpu))
    cpu = builders.cpu_quantity(cpus * 0.8)
    # The low Job must not outlive this check: it sleeps, and may run, no longer than the check may take.
    lifetime = int(BY_NAME["scheduling.preemption"].timeout_s)
    low = job(
        cluster,
        "low",
        cpu,
        "256Mi",
        priority=priorities[0].name,
        seconds=lifetime,
        active_deadline_s=lifetime,
        pool=pool,
    )
    high = job(cluster, "high", cpu, "256Mi", priority=priorities[-1].name, seconds=5, pool=pool)
    return low, high, cpu, str(quota.cpu)


@checks.cluster("scheduling.preemption", creates=lambda cluster: list(preemption_jobs(cluster)[:2]))
def cluster_preemption(cluster: KubeCluster, ctx: RunContext) -> Passed:
    low, high, cpu, quota_cpu = preemption_jobs(cluster)
    priorities = sorted(cluster.spec.priority_classes, key=lambda p: p.value)
    try:
        cluster.create(low)
        wait_until(
            lambda: judge.admission_state(cluster.workload_of("Job", low["metadata"]["name"])),
            cluster.time_left(120),
            "low-priority Job admitted",
        )
        cluster.create(high)

        def preempted() -> tuple[bool, str]:
            verdict = judge.judge_preemption(
                cluster.workload_of("Job", low["metadata"]["name"]),
                cluster.workload_of("Job", high["metadata"]["name"]),
            )
            return verdict.ok, "; ".join(verdict.problems)

        wait_until(preempted, cluster.time_left(300), "preemption of the low-priority Job")
    finally:
        # Pass or fail, give the quota back: once the high Job ends Kueue would re-admit the low one,
        # and it would hold most of the team's quota while the workload checks wait behind it.
        holding = delete_and_release(cluster, [low, high])
    if holding:
        raise CheckFailed(f"the preemption Jobs were deleted but still hold quota: {holding}")
    return Passed(
        f"a {priorities[-1].name}-priority Job preempted a {priorities[0].name}-priority Job holding "
        f"{cpu} CPU of team {cluster.team.name}'s {quota_cpu}"
    )


def delete_and_release(cluster: KubeCluster, jobs: list[dict], timeout_s: float = 60.0) -> str:
    """Delete ``jobs`` now and wait until Kueue no longer counts their Workloads against the quota.
    Returns what still holds quota after ``timeout_s`` (empty when all is released); never raises."""
    for each in jobs:
        try:
            cluster.api.delete(each)
        except KubeError as err:
            cluster.ctx.log.warning("could not delete Job %s: %s", each["metadata"]["name"], err)

    def released() -> tuple[bool, str]:
        holding = [
            each["metadata"]["name"]
            for each in jobs
            if judge.holds_quota(
                cluster.workload_of("Job", each["metadata"]["name"], each["metadata"]["namespace"])
            )
        ]
        return not holding, ", ".join(holding)

    try:
        wait_until(released, max(1.0, min(timeout_s, cluster.ctx.remaining_s())), "quota released")
    except (CheckFailed, KubeError) as err:
        cluster.ctx.log.warning("preemption Jobs still hold quota: %s", err)
        return str(err)
    return ""
