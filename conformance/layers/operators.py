"""Operators: what starts Ray and queues work is up.

- local: ``operators.ray-head`` starts the run's Ray head (KubeRay's stand-in) and asks its APIs.
- cluster: the KubeRay and Kueue CRDs are served and their controllers available; every queue of the stack
  is active.
"""

from __future__ import annotations

import time

import httpx
from park.components.manifests import kuberay, kueue
from park.conformance import judgements as judge
from park.conformance.context import RunContext
from park.conformance.kube import KubeCluster, judged
from park.conformance.layers.table import CheckTable
from park.conformance.local import POLL_S, LocalMachine
from park.conformance.model import CheckFailed, Passed

checks = CheckTable("operators")

KUBERAY_CRDS = {"rayclusters.ray.io": "v1", "rayjobs.ray.io": "v1", "rayservices.ray.io": "v1"}
KUEUE_CRDS = {
    f"{plural}.kueue.x-k8s.io": "v1beta2"
    for plural in ("clusterqueues", "localqueues", "resourceflavors", "workloads", "workloadpriorityclasses")
}


# --- operators.ray-head ---------------------------------------------------------------------------------


@checks.local("operators.ray-head")
def local_ray_head(machine: LocalMachine, ctx: RunContext) -> Passed:
    from ray.job_submission import JobSubmissionClient  # Ray is the workloads extra

    head = machine.head()
    deadline = time.monotonic() + 30
    nodes: list[dict] = []
    while time.monotonic() < deadline:
        answer = httpx.get(f"{head.dashboard_url}/api/v0/nodes", params={"detail": "1"}, timeout=10).json()
        nodes = [n for n in answer["data"]["result"]["result"] if n.get("state") == "ALIVE"]
        if nodes:
            break
        time.sleep(POLL_S)
    if not nodes:
        raise CheckFailed(
            f"the Ray head answers at {head.dashboard_url} but no node registered as ALIVE "
            f"within 30 s; see {head.temp_dir}/session_latest/logs/raylet.err"
        )
    resources = nodes[0].get("resources_total", {})
    jobs = JobSubmissionClient(head.dashboard_url).list_jobs()
    serve = httpx.get(f"{head.dashboard_url}/api/serve/applications/", timeout=10)
    if serve.status_code != 200:
        raise CheckFailed(
            f"the Serve REST API at {head.dashboard_url}/api/serve/applications/ answered "
            f"{serve.status_code}: {serve.text[:200]}"
        )
    version = httpx.get(f"{head.dashboard_url}/api/version", timeout=10).json()
    ctx.facts["ray_head_start_s"] = round(head.started_in_s or 0, 2)
    details = {
        "dashboard": head.dashboard_url,
        "ports": head.ports,
        "temp_dir": str(head.temp_dir),
        "resources": resources,
        "ray_version": version.get("ray_version"),
        "jobs_listed": len(jobs),
    }
    return Passed(
        f"Ray {version.get('ray_version')} head up in {head.started_in_s:.1f} s; {len(nodes)} node "
        f"alive with {resources.get('CPU', 0):g} CPU and {resources.get('GPU', 0):g} GPU; Jobs and "
        f"Serve APIs answer",
        details,
    )


# --- operators.kuberay, operators.kueue -----------------------------------------------------------------


@checks.cluster("operators.kuberay")
def cluster_kuberay(cluster: KubeCluster, ctx: RunContext) -> Passed:
    result = judge.judge_crds(
        cluster.api.list("apiextensions.k8s.io/v1", "CustomResourceDefinition"), KUBERAY_CRDS
    )
    deployment = cluster.api.get("apps/v1", "Deployment", kuberay.RELEASE_NAME, kuberay.NAMESPACE)
    operator = judge.judge_deployment(deployment, "KubeRay operator")
    result.problems += operator.problems
    result.facts["operator"] = operator.facts
    return judged(
        result,
        f"KubeRay CRDs served at ray.io/v1; operator {kuberay.NAMESPACE}/{kuberay.RELEASE_NAME} available",
    )


@checks.cluster("operators.kueue")
def cluster_kueue(cluster: KubeCluster, ctx: RunContext) -> Passed:
    result = judge.judge_crds(
        cluster.api.list("apiextensions.k8s.io/v1", "CustomResourceDefinition"), KUEUE_CRDS
    )
    deployment = cluster.api.get("apps/v1", "Deployment", "kueue-controller-manager", kueue.NAMESPACE)
    controller = judge.judge_deployment(deployment, "Kueue controller")
    queues = judge.judge_queues(
        cluster.spec,
        cluster.api.list("kueue.x-k8s.io/v1beta2", "ClusterQueue"),
        cluster.api.list("kueue.x-k8s.io/v1beta2", "LocalQueue"),
    )
    result.problems += controller.problems + queues.problems
    result.facts.update({"controller": controller.facts, **queues.facts})
    return judged(
        result,
        f"Kueue CRDs served at v1beta2; controller available; {len(cluster.spec.teams)} "
        f"ClusterQueues and LocalQueues active",
    )
