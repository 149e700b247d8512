"""Admissibility: every reference workload of every shipped stack fits its team's ClusterQueue, borrowing
from the cohort included, on an empty cluster, counted the way Kueue v0.19.2 counts.

A workload that cannot fit is never rejected: Kueue leaves it pending forever ("insufficient quota ...
> maximum capacity"), which no schema test sees. The model below restates, from the source at the tag:

- PodSets (pkg/controller/jobs/raycluster/common.go ``BuildPodSets``): the head (count 1) plus, when
  ``enableInTreeAutoscaling`` is on, the autoscaler sidecar KubeRay injects, 500m CPU / 512Mi unless
  ``autoscalerOptions.resources`` says otherwise (``defaultAutoscalerResources``); one PodSet per worker
  group, count ``replicas`` (default 1) times ``numOfHosts`` (``effectiveWorkerCount``).
- RayJob (pkg/controller/jobs/rayjob/rayjob_controller.go ``PodSets``): in K8sJobMode the submitter Job is a
  PodSet of its own, ``submitterPodTemplate`` or the default container requesting 500m CPU / 200Mi
  (``defaultSubmitterResources``); in SidecarMode that container joins the head PodSet.
- Pod requests: containers summed, each resource's request falling back to its limit, the maximum with any
  init container, plus the pod overhead (Kueue's pod resource totals).
- Flavors (pkg/scheduler/flavorassigner/flavorassigner.go ``findFlavorForPodSets`` /
  ``checkFlavorForPodSets``): in the queue's order, a flavor is a candidate when the pod tolerates its
  ``nodeTaints`` and its nodeSelector, restricted to the flavor's label keys, matches the flavor's
  ``nodeLabels``; all resources of a PodSet in one resource group take the same flavor; a PodSet fits when
  this workload's earlier PodSets on the flavor plus its own requests stay within the potential capacity
  (pkg/cache/scheduler/resource_node.go ``potentialAvailable``: the queue's nominal quota plus what the
  rest of the cohort lends, capped by ``borrowingLimit``); a requested resource the queue does not cover
  makes it unschedulable.

The inputs are the RENDERED ResourceFlavors, ClusterQueues, LocalQueues and WorkloadPriorityClasses
(``park.components.manifests.all_documents``), not the spec. Autoscaled groups are checked at their
ceiling too: under workload slicing each scale-up is a new slice admitted whole (Kueue
site/content/en/docs/concepts/elastic_workload.md), so an unreachable ``maxReplicas`` leaves the
autoscaler's pods gated forever.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from kubernetes.utils.quantity import parse_quantity
from park.components.manifests import all_documents
from park.workloads import render_workloads
from schemas import shipped_specs

SPECS = shipped_specs()
"""Every shipped stack (stacks/Pulumi.<stack>.yaml) by name."""
STACKS = sorted(SPECS)

KUEUE_GROUP = "kueue.x-k8s.io/"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
AUTOSCALER_REQUESTS = {"cpu": "500m", "memory": "512Mi"}
"""raycluster/common.go ``defaultAutoscalerResources`` (v0.19.2)."""
SUBMITTER_REQUESTS = {"cpu": "500m", "memory": "200Mi"}
"""rayjob/rayjob_controller.go ``defaultSubmitterResources`` requests (limits 1 / 1Gi; quota counts requests)."""

Quantities = dict[str, Decimal]


class NotAdmissible(AssertionError):
    """Kueue would never admit the workload on an empty cluster; the message says why."""


@dataclass
class PodSet:
    name: str
    count: int
    pod: dict
    requests: Quantities = field(init=False)

    def __post_init__(self) -> None:
        self.requests = pod_requests(self.pod)

    def total(self) -> Quantities:
        return {name: value * self.count for name, value in self.requests.items()}


# --- PodSets -----------------------------------------------------------------------------------------


def _container_requests(container: dict) -> Quantities:
    resources = container.get("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    return {name: parse_quantity(requests.get(name, limits.get(name))) for name in {*limits, *requests}}


def _add(total: Quantities, more: Quantities) -> Quantities:
    return {name: total.get(name, Decimal(0)) + more.get(name, Decimal(0)) for name in {*total, *more}}


def pod_requests(pod: dict) -> Quantities:
    """What one pod counts against quota: containers summed, the max with each init container, overhead."""
    total: Quantities = {}
    for container in pod.get("containers", []):
        total = _add(total, _container_requests(container))
    for container in pod.get("initContainers", []):
        init = _container_requests(container)
        total = {name: max(total.get(name, Decimal(0)), init.get(name, Decimal(0))) for name in {*total, *init}}
    overhead = {name: parse_quantity(value) for name, value in pod.get("overhead", {}).items()}
    return _add(total, overhead)


def ray_cluster_pod_sets(cluster: dict, *, at_ceiling: bool = False) -> list[PodSet]:
    """raycluster/common.go ``BuildPodSets``; ``at_ceiling`` counts autoscaled groups at ``maxReplicas``."""
    head = copy.deepcopy(cluster["headGroupSpec"]["template"]["spec"])
    autoscaling = bool(cluster.get("enableInTreeAutoscaling"))
    if autoscaling:
        resources = (cluster.get("autoscalerOptions") or {}).get("resources") or {
            "requests": AUTOSCALER_REQUESTS, "limits": AUTOSCALER_REQUESTS}
        head["containers"].append({"name": "autoscaler", "resources": resources})
    sets = [PodSet("head", 1, head)]
    for group in cluster.get("workerGroupSpecs") or []:
        replicas = group.get("replicas", 1)
        if at_ceiling and autoscaling:
            replicas = group.get("maxReplicas", replicas)
        hosts = group.get("numOfHosts", 1)
        sets.append(PodSet(group["groupName"], replicas * max(1, hosts), group["template"]["spec"]))
    return sets


def workload_pod_sets(obj: dict, *, at_ceiling: bool = False) -> list[PodSet]:
    """The PodSets of the Workload Kueue creates for a RayJob, RayService or RayCluster."""
    if obj["kind"] == "RayService":
        return ray_cluster_pod_sets(obj["spec"]["rayClusterConfig"], at_ceiling=at_ceiling)
    if obj["kind"] == "RayCluster":
        return ray_cluster_pod_sets(obj["spec"], at_ceiling=at_ceiling)
    spec = obj["spec"]
    sets = ray_cluster_pod_sets(spec["rayClusterSpec"], at_ceiling=at_ceiling)
    submitter_container = {"name": "ray-job-submitter",
                           "resources": {"requests": SUBMITTER_REQUESTS, "limits": {"cpu": "1", "memory": "1Gi"}}}
    mode = spec.get("submissionMode", "K8sJobMode")
    if mode == "K8sJobMode":
        template = (spec.get("submitterPodTemplate") or {}).get("spec") or {"containers": [submitter_container]}
        sets.append(PodSet("submitter", 1, template))
    elif mode == "SidecarMode":
        sets[0].pod["containers"].append(submitter_container)
        sets[0].requests = pod_requests(sets[0].pod)
    return sets


# --- the queueing model --------------------------------------------------------------------------------


@dataclass
class Queues:
    """The rendered Kueue objects of one stack."""

    flavors: dict[str, dict]
    cluster_queues: dict[str, dict]
    local_queues: dict[tuple[str, str], dict]
    priority_classes: set[str]

    @classmethod
    def of(cls, documents: list[dict]) -> Queues:
        kueue = [d for d in documents if d["apiVersion"].startswith(KUEUE_GROUP)]

        def named(kind: str) -> list[dict]:
            return [d for d in kueue if d["kind"] == kind]

        return cls(
            flavors={d["metadata"]["name"]: d for d in named("ResourceFlavor")},
            cluster_queues={d["metadata"]["name"]: d for d in named("ClusterQueue")},
            local_queues={(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in named("LocalQueue")},
            priority_classes={d["metadata"]["name"] for d in named("WorkloadPriorityClass")},
        )

    def cluster_queue_for(self, obj: dict) -> dict:
        """LocalQueue named by the queue label in the object's namespace -> its ClusterQueue, which must
        select that namespace; the priority class named must exist."""
        meta = obj["metadata"]
        namespace, labels = meta["namespace"], meta.get("labels", {})
        local = self.local_queues.get((namespace, labels.get(QUEUE_LABEL)))
        if local is None:
            raise NotAdmissible(f"no LocalQueue {labels.get(QUEUE_LABEL)!r} in namespace {namespace!r}")
        queue = self.cluster_queues.get(local["spec"]["clusterQueue"])
        if queue is None:
            raise NotAdmissible(f"LocalQueue {namespace}/{local['metadata']['name']} points at a missing ClusterQueue")
        wanted = queue["spec"].get("namespaceSelector", {}).get("matchLabels", {})
        if any({NAMESPACE_NAME_LABEL: namespace}.get(k) != v for k, v in wanted.items()):
            raise NotAdmissible(f"ClusterQueue {queue['metadata']['name']} does not select namespace {namespace}")
        priority = labels.get(PRIORITY_LABEL)
        if priority is not None and priority not in self.priority_classes:
            raise NotAdmissible(f"no WorkloadPriorityClass {priority!r}")
        return queue

    @staticmethod
    def _quotas(queue: dict) -> dict[tuple[str, str], dict]:
        out = {}
        for group in queue["spec"].get("resourceGroups", []):
            for flavor in group["flavors"]:
                for resource in flavor["resources"]:
                    out[flavor["name"], resource["name"]] = resource
        return out

    def potential(self, queue: dict, flavor: str, resource: str) -> Decimal:
        """resource_node.go ``potentialAvailable`` on an empty cluster: own nominal quota plus what every other
        queue of the cohort lends (its lendingLimit, else its nominal quota), capped by borrowingLimit."""
        own = self._quotas(queue).get((flavor, resource))
        if own is None:
            return Decimal(0)
        nominal = parse_quantity(own["nominalQuota"])
        cohort = queue["spec"].get("cohortName")
        if not cohort:
            return nominal
        lent = Decimal(0)
        for other in self.cluster_queues.values():
            if other is queue or other["spec"].get("cohortName") != cohort:
                continue
            theirs = self._quotas(other).get((flavor, resource))
            if theirs is not None:
                lendable = parse_quantity(theirs["nominalQuota"])
                if "lendingLimit" in theirs:
                    lendable = min(lendable, parse_quantity(theirs["lendingLimit"]))
                lent += lendable
        if "borrowingLimit" in own:
            lent = min(lent, parse_quantity(own["borrowingLimit"]))
        return nominal + lent

    def flavor_matches(self, flavor_name: str, pod: dict) -> bool:
        """flavorassigner.go ``checkFlavorForPodSets``: taints tolerated, nodeSelector (on the flavor's label
        keys only) matched. Required node affinity is not modelled: no park-stack pod uses it."""
        assert "affinity" not in pod, "extend the model: Kueue also matches required node affinity"
        flavor = self.flavors[flavor_name]["spec"]
        tolerations = [*pod.get("tolerations", []), *flavor.get("tolerations", [])]
        for taint in flavor.get("nodeTaints", []):
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not any(
                    _tolerates(t, taint) for t in tolerations):
                return False
        labels = flavor.get("nodeLabels", {})
        return all(labels[key] == value for key, value in pod.get("nodeSelector", {}).items() if key in labels)

    def assign(self, queue: dict, pod_sets: list[PodSet]) -> dict[str, str]:
        """PodSet name -> flavor, first fit in queue order, earlier PodSets' usage counted; raises
        :class:`NotAdmissible` naming the PodSet that fits nowhere."""
        groups = queue["spec"].get("resourceGroups", [])
        used: dict[tuple[str, str], Decimal] = {}
        chosen: dict[str, str] = {}
        for pod_set in pod_sets:
            total = {name: value for name, value in pod_set.total().items() if value > 0}
            covered = {r for g in groups for r in g["coveredResources"]}
            missing = sorted(set(total) - covered)
            if missing:
                raise NotAdmissible(f"PodSet {pod_set.name}: resource {missing[0]} unavailable in ClusterQueue "
                                    f"{queue['metadata']['name']}")
            for group in groups:
                wanted = {r: v for r, v in total.items() if r in group["coveredResources"]}
                if not wanted:
                    continue
                reasons = []
                for flavor in (f["name"] for f in group["flavors"]):
                    if not self.flavor_matches(flavor, pod_set.pod):
                        reasons.append(f"{flavor}: doesn't match node selector or taints")
                        continue
                    short = [f"{r} {used.get((flavor, r), 0) + v} > {self.potential(queue, flavor, r)}"
                             for r, v in wanted.items()
                             if used.get((flavor, r), 0) + v > self.potential(queue, flavor, r)]
                    if short:
                        reasons.append(f"{flavor}: insufficient quota ({', '.join(short)})")
                        continue
                    for r, v in wanted.items():
                        used[flavor, r] = used.get((flavor, r), 0) + v
                    chosen[pod_set.name] = flavor
                    break
                else:
                    raise NotAdmissible(f"PodSet {pod_set.name} x{pod_set.count} fits no flavor of ClusterQueue "
                                        f"{queue['metadata']['name']}: {'; '.join(reasons)}")
        return chosen


def _tolerates(toleration: dict, taint: dict) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint["key"]
    return toleration.get("key") == taint["key"] and toleration.get("value", "") == taint.get("value", "")


def admit(queues: Queues, obj: dict, *, at_ceiling: bool = False) -> dict[str, str]:
    return queues.assign(queues.cluster_queue_for(obj), workload_pod_sets(obj, at_ceiling=at_ceiling))


# --- the model, on hand-built objects ---------------------------------------------------------------------


def container(cpu: str, memory: str, gpus: int = 0) -> dict:
    quantities = {"cpu": cpu, "memory": memory, **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {"name": "c", "resources": {"requests": dict(quantities), "limits": dict(quantities)}}


def probe_rayjob(*, autoscaling: bool = False, replicas: int = 2, max_replicas: int = 2, mode: str = "K8sJobMode",
                 worker_pool: str = "gpu", hosts: int = 1) -> dict:
    cluster = {
        "headGroupSpec": {"template": {"spec": {"nodeSelector": {"pool": "system"},
                                                "containers": [container("1", "2Gi")]}}},
        "workerGroupSpecs": [{"groupName": "workers", "replicas": replicas, "minReplicas": 0,
                              "maxReplicas": max_replicas, "numOfHosts": hosts,
                              "template": {"spec": {"nodeSelector": {"pool": worker_pool},
                                                    "containers": [container("4", "16Gi", gpus=1)]}}}],
    }
    if autoscaling:
        cluster["enableInTreeAutoscaling"] = True
    return {"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": "probe", "namespace": "team-a", "labels": {QUEUE_LABEL: "a-queue"}},
            "spec": {"submissionMode": mode, "rayClusterSpec": cluster}}


def probe_queues(*, a_gpus: int = 2, b_gpus: int = 2, borrowing_limit: int | None = None,
                 taint: bool = False) -> Queues:
    def flavor(name: str) -> dict:
        spec: dict = {"nodeLabels": {"pool": name}}
        if taint and name == "gpu":
            spec["nodeTaints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
        return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": name},
                "spec": spec}

    def queue(name: str, gpus: int) -> dict:
        gpu_quota: dict = {"name": "nvidia.com/gpu", "nominalQuota": gpus}
        if borrowing_limit is not None:
            gpu_quota["borrowingLimit"] = borrowing_limit
        return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": f"{name}-cq"},
                "spec": {"cohortName": "c", "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: f"team-{name}"}},
                         "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu"], "flavors": [
                             {"name": "gpu", "resources": [{"name": "cpu", "nominalQuota": "16"},
                                                           {"name": "memory", "nominalQuota": "64Gi"}, gpu_quota]},
                             {"name": "system", "resources": [{"name": "cpu", "nominalQuota": "2"},
                                                              {"name": "memory", "nominalQuota": "4Gi"},
                                                              {"name": "nvidia.com/gpu", "nominalQuota": 0}]}]}]}}

    local = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
             "metadata": {"name": "a-queue", "namespace": "team-a"}, "spec": {"clusterQueue": "a-cq"}}
    return Queues.of([flavor("gpu"), flavor("system"), queue("a", a_gpus), queue("b", b_gpus), local])


def test_pod_sets_count_head_workers_and_submitter_as_kueue_does():
    """rayjob_controller.go ``PodSets`` and raycluster/common.go ``BuildPodSets`` (v0.19.2): head, one set per
    worker group (replicas x numOfHosts), the K8sJobMode submitter last at 500m / 200Mi."""
    sets = workload_pod_sets(probe_rayjob(replicas=3, hosts=2))
    assert [(s.name, s.count) for s in sets] == [("head", 1), ("workers", 6), ("submitter", 1)]
    assert sets[2].requests == {"cpu": Decimal("0.5"), "memory": Decimal(200 * 2**20)}
    assert sets[0].requests == {"cpu": Decimal(1), "memory": Decimal(2 * 2**30)}


def test_autoscaling_adds_the_sidecar_to_the_head():
    """raycluster/common.go ``autoscalerContainer`` (v0.19.2): 500m / 512Mi on the head, unless
    ``autoscalerOptions.resources`` overrides them."""
    (head, *_) = workload_pod_sets(probe_rayjob(autoscaling=True))
    assert head.requests == {"cpu": Decimal("1.5"), "memory": Decimal(2 * 2**30 + 512 * 2**20)}
    job = probe_rayjob(autoscaling=True)
    job["spec"]["rayClusterSpec"]["autoscalerOptions"] = {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}
    assert workload_pod_sets(job)[0].requests == {"cpu": Decimal(2), "memory": Decimal(3 * 2**30)}


def test_sidecar_mode_puts_the_submitter_in_the_head():
    """rayjob_controller.go ``addSidecarSubmitterToHeadPodSet`` (v0.19.2)."""
    sets = workload_pod_sets(probe_rayjob(mode="SidecarMode"))
    assert [s.name for s in sets] == ["head", "workers"]
    assert sets[0].requests["cpu"] == Decimal("1.5")


def test_ceiling_counts_autoscaled_groups_at_max_replicas():
    assert workload_pod_sets(probe_rayjob(autoscaling=True, replicas=1, max_replicas=4), at_ceiling=True)[1].count == 4
    assert workload_pod_sets(probe_rayjob(replicas=1, max_replicas=4), at_ceiling=True)[1].count == 1


@pytest.mark.parametrize(("name", "queues", "job", "expected"), [
    ("fits its nominal quota", probe_queues(), probe_rayjob(), {"head": "system", "workers": "gpu", "submitter": "gpu"}),
    ("borrows from the cohort", probe_queues(a_gpus=1, b_gpus=1), probe_rayjob(), {"workers": "gpu"}),
    ("cohort too small", probe_queues(a_gpus=1, b_gpus=0), probe_rayjob(), "PodSet workers x2 fits no flavor"),
    ("borrowing limit caps the cohort", probe_queues(a_gpus=1, b_gpus=4, borrowing_limit=0), probe_rayjob(),
     "nvidia.com/gpu 2 > 1"),
    ("node selector matches no flavor", probe_queues(), probe_rayjob(worker_pool="elsewhere"),
     "gpu: doesn't match node selector"),
    ("untolerated flavor taint", probe_queues(taint=True), probe_rayjob(), "gpu: doesn't match node selector or taints"),
    ("autoscaler ceiling beyond the cohort", probe_queues(a_gpus=2, b_gpus=1),
     probe_rayjob(autoscaling=True, replicas=1, max_replicas=4), "nvidia.com/gpu 4 > 3"),
])
def test_flavor_assignment_model(name, queues, job, expected):
    """flavorassigner.go ``findFlavorForPodSets`` / ``fitsResourceQuota`` and resource_node.go
    ``potentialAvailable`` (v0.19.2), on hand-built queues: what fits, where, and why not."""
    if isinstance(expected, dict):
        assignment = admit(queues, job, at_ceiling=True)
        assert expected.items() <= assignment.items(), name
    else:
        with pytest.raises(NotAdmissible, match=expected.replace("(", r"\(").replace(")", r"\)")):
            admit(queues, job, at_ceiling=True)


def test_resources_the_queue_does_not_cover_are_unschedulable():
    queues = probe_queues()
    for queue in queues.cluster_queues.values():
        queue["spec"]["resourceGroups"][0]["coveredResources"].remove("nvidia.com/gpu")
    with pytest.raises(NotAdmissible, match="resource nvidia.com/gpu unavailable"):
        admit(queues, probe_rayjob())


def test_wrong_namespace_or_queue_is_not_admissible():
    queues = probe_queues()
    job = probe_rayjob()
    job["metadata"]["labels"][QUEUE_LABEL] = "b-queue"
    with pytest.raises(NotAdmissible, match="no LocalQueue 'b-queue'"):
        admit(queues, job)
    job = probe_rayjob()
    job["metadata"]["labels"][PRIORITY_LABEL] = "urgent"
    with pytest.raises(NotAdmissible, match="no WorkloadPriorityClass 'urgent'"):
        admit(queues, job)


# --- the shipped stacks ----------------------------------------------------------------------------------


def shipped_cases() -> list[tuple[str, str]]:
    return [(stack, doc["metadata"]["name"]) for stack in STACKS for doc in render_workloads(SPECS[stack])]


@pytest.mark.parametrize(("stack", "workload"), shipped_cases())
@pytest.mark.parametrize("size", ["initial", "ceiling"])
def test_shipped_workload_fits_its_team_queue_on_an_empty_cluster(stack, workload, size):
    """Kueue v0.19.2 would admit the workload (and, when it autoscales, its largest slice) through the
    rendered LocalQueue -> ClusterQueue of its namespace, with the rendered flavors."""
    spec = SPECS[stack]
    queues = Queues.of(all_documents(spec))
    (doc,) = [d for d in render_workloads(spec) if d["metadata"]["name"] == workload]
    admit(queues, doc, at_ceiling=size == "ceiling")
