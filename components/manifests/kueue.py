"""Kueue: the controller release, then the queueing model derived from the spec (API kueue.x-k8s.io/v1beta2).

- one ResourceFlavor per workers pool (and per system pool some team has a quota on), selecting the pool
  by :data:`~park.components.spec.POOL_LABEL` and adding tolerations for the pool's taints to admitted pods
  (so workloads need not spell GPU tolerations);
- one ClusterQueue per team, all in one cohort named after the cluster, covering cpu, memory and
  ``nvidia.com/gpu`` (when the stack has GPU pools), every flavor listed with the team's nominal quota on
  that pool (0 where it has none, so it can only borrow there), preempting lower priority work in the
  queue and reclaiming lent quota from anyone in the cohort;
- one LocalQueue per team namespace, and a WorkloadPriorityClass per priority class.

A system pool runs the operators and monitoring; it gets a flavor only when a team has a quota on it (for
example for Ray head pods placed there), so no queue admits work onto it by accident. In each queue CPU
workers pools come first, then GPU pools, then system pools: a pod that selects no pool lands on the
cheapest fitting nodes first. (Pods that select a pool by its label only match that pool's flavor.)
"""

from __future__ import annotations

from typing import Any

import yaml
from park.components import versions
from park.components.manifests.common import (
    KUEUE_NAMESPACE,
    NAMESPACE_NAME_LABEL,
    AddonManifests,
    ClusterFacts,
    HelmRelease,
    metadata,
    system_pool_selector,
    tolerations_for,
)
from park.components.spec import GPU_RESOURCE, POOL_LABEL, NodePool, StackSpec, Team

NAMESPACE = KUEUE_NAMESPACE
RELEASE_NAME = "kueue"
API_VERSION = versions.KUEUE_API_VERSION
FRAMEWORKS = ("batch/job", "ray.io/rayjob", "ray.io/raycluster", "ray.io/rayservice")
"""Workload kinds Kueue manages. RayService is a top-level Kueue integration since v0.17 (Kueue PR #9430)."""
METRICS_PORT = 8443


def manager_config() -> dict[str, Any]:
    """Kueue's controller configuration (config.kueue.x-k8s.io/v1beta2), replacing the chart's default.

    Keeps the chart's probe, metrics, webhook and leader-election settings, turns on per-ClusterQueue
    resource metrics and lists the integrations the stack uses.
    """
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": f":{METRICS_PORT}", "enableClusterQueueResources": True},
        "webhook": {"port": 9443},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        "integrations": {"frameworks": list(FRAMEWORKS)},
    }


def controller_values(spec: StackSpec) -> dict[str, Any]:
    return {
        "controllerManager": {"nodeSelector": system_pool_selector(spec)},
        "managerConfig": {"controllerManagerConfigYaml": yaml.safe_dump(manager_config(), sort_keys=False)},
        # The chart's own ServiceMonitor grants scrape rights to kube-prometheus' `prometheus-k8s` account,
        # which kube-prometheus-stack does not use; the observability add-on ships the monitor and RBAC.
        "enablePrometheus": False,
    }


# --- the queueing model ----------------------------------------------------------------------------


def flavor_pools(spec: StackSpec) -> list[NodePool]:
    """Pools that get a ResourceFlavor, in queue order: CPU workers pools, GPU pools, then system pools
    that some team has a quota on."""
    workers = [p for p in spec.node_pools if p.role == "workers"]
    with_quota = {q.pool for team in spec.teams for q in team.quotas}
    system = [p for p in spec.node_pools if p.role == "system" and p.name in with_quota]
    return [p for p in workers if not p.has_gpus] + [p for p in workers if p.has_gpus] + system


def covered_resources(spec: StackSpec) -> list[str]:
    return ["cpu", "memory"] + ([GPU_RESOURCE] if spec.has_gpus else [])


def resource_flavor(spec: StackSpec, pool: NodePool) -> dict[str, Any]:
    body: dict[str, Any] = {"nodeLabels": {POOL_LABEL: pool.name}}
    taints = spec.node_taints(pool)
    if taints:
        body["tolerations"] = tolerations_for(taints)
    return {"apiVersion": API_VERSION, "kind": "ResourceFlavor", "metadata": metadata(pool.name), "spec": body}


def nominal_quotas(spec: StackSpec, team: Team, pool: NodePool) -> dict[str, str | int]:
    """The team's quota on one pool by resource name; zero where the team has none."""
    quota = next((q for q in team.quotas if q.pool == pool.name), None)
    values: dict[str, str | int] = {
        "cpu": str(quota.cpu) if quota else "0",
        "memory": str(quota.memory) if quota else "0",
    }
    if spec.has_gpus:
        values[GPU_RESOURCE] = quota.gpus if quota else 0
    return values


def cohort_name(spec: StackSpec) -> str:
    return spec.cluster_name


def cluster_queue(spec: StackSpec, team: Team) -> dict[str, Any]:
    resources = covered_resources(spec)
    flavors = []
    for pool in flavor_pools(spec):
        quotas = nominal_quotas(spec, team, pool)
        flavors.append({"name": pool.name,
                        "resources": [{"name": r, "nominalQuota": quotas[r]} for r in resources]})
    body: dict[str, Any] = {
        "cohortName": cohort_name(spec),
        # Only the team's own namespace may submit to its queue.
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: team.namespace_name}},
        "queueingStrategy": "BestEffortFIFO",
        "preemption": {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any"},
    }
    if flavors:
        body["resourceGroups"] = [{"coveredResources": resources, "flavors": flavors}]
    return {"apiVersion": API_VERSION, "kind": "ClusterQueue", "metadata": metadata(team.cluster_queue),
            "spec": body}


def local_queue(team: Team) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "LocalQueue",
            "metadata": metadata(team.local_queue, team.namespace_name),
            "spec": {"clusterQueue": team.cluster_queue}}


def priority_classes(spec: StackSpec) -> list[dict[str, Any]]:
    out = []
    for pc in spec.priority_classes:
        obj: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "WorkloadPriorityClass",
                               "metadata": metadata(pc.name), "value": pc.value}
        if pc.description:
            obj["description"] = pc.description
        out.append(obj)
    return out


def queue_names(spec: StackSpec) -> dict[str, str]:
    """Team name -> the LocalQueue its workloads name in ``kueue.x-k8s.io/queue-name``."""
    return {team.name: team.local_queue for team in spec.teams}


def build(spec: StackSpec, facts: ClusterFacts) -> AddonManifests:
    del facts
    release = HelmRelease(RELEASE_NAME, NAMESPACE, versions.KUEUE_CHART, controller_values(spec))
    objects: list[dict[str, Any]] = [resource_flavor(spec, pool) for pool in flavor_pools(spec)]
    objects += priority_classes(spec)
    objects += [cluster_queue(spec, team) for team in spec.teams]
    objects += [local_queue(team) for team in spec.teams]
    return AddonManifests("kueue", releases=(release,), objects=tuple(objects))
