"""Kueue v0.19.2's admission rules for RayJob, RayService and RayCluster, as pure functions, applied to every
reference workload of every shipped stack.

A schema test cannot see these: the objects are valid KubeRay resources, and Kueue's validating webhook
rejects them at ``kubectl apply`` time. Each rule below restates one check of the webhook at the tag, with
the field path Kueue reports (for a RayService Kueue names the cluster spec by its Go field,
``spec.rayClusterSpec``, although the JSON key is ``rayClusterConfig``). Each rule is shown to reject a
hand-built bad object (a table of named cases, in the style of Kueue's own webhook tests) before it judges
the rendered workloads.

Assumes the stack's Kueue configuration (``components/manifests/kueue.py``): ``manageJobsWithoutQueueName``
unset (false), so only objects with a queue-name label are validated; the ElasticJobsViaWorkloadSlices
gate at its default (Beta, on since v0.18, pkg/features/kube_features.go); TopologyAwareScheduling
validations concern TAS annotations, which no park-stack workload uses.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from park.workloads import render_workloads
from schemas import shipped_specs

SPECS = shipped_specs()
"""Every shipped stack (stacks/Pulumi.<stack>.yaml) by name."""
STACKS = sorted(SPECS)

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MAX_EXEC_TIME_LABEL = "kueue.x-k8s.io/max-exec-time-seconds"
ELASTIC_JOB_ANNOTATION = "kueue.x-k8s.io/elastic-job"
MAX_POD_SETS = 18
"""pkg/controller/jobframework/constants.go MaxPodSets at v0.19.2 (raised from 8 to 10, then 18)."""
HEAD_GROUP_NAME = "head"
SUBMISSION_K8S_JOB = "K8sJobMode"

Error = tuple[str, str]
"""(field path as Kueue reports it, reason)."""


# --- the rules -------------------------------------------------------------------------------------


def is_managed(obj: dict) -> bool:
    """Kueue validates a Ray object only when it names a queue (manageJobsWithoutQueueName is false).
    rayjob_webhook.go / rayservice_webhook.go / raycluster_webhook.go ``validateCreate``."""
    return bool(obj.get("metadata", {}).get("labels", {}).get(QUEUE_LABEL))


def is_elastic(obj: dict) -> bool:
    """pkg/workloadslicing/workloadslicing.go ``Enabled``: gate on (default) and the annotation exactly "true"."""
    return obj.get("metadata", {}).get("annotations", {}).get(ELASTIC_JOB_ANNOTATION) == "true"


def ray_cluster_spec_rules(obj: dict, cluster: dict, path: str) -> list[Error]:
    """pkg/controller/jobs/raycluster/common.go ``ValidateCreate`` (v0.19.2), shared by RayJob and RayService:
    in-tree autoscaling only for an elastic job (workload slicing), at most 18 PodSets (head + worker
    groups), no worker group named ``head``."""
    errors: list[Error] = []
    if cluster.get("enableInTreeAutoscaling") and not is_elastic(obj):
        errors.append((f"{path}.enableInTreeAutoscaling",
                       "a kueue managed job should only use autoscaling when workload slicing is enabled"))
    groups = cluster.get("workerGroupSpecs") or []
    if len(groups) + 1 > MAX_POD_SETS:
        errors.append((f"{path}.workerGroupSpecs", f"must have at most {MAX_POD_SETS} items"))
    for index, group in enumerate(groups):
        if group.get("groupName") == HEAD_GROUP_NAME:
            errors.append((f"{path}.workerGroupSpecs[{index}].groupName", '"head" is reserved for the head group'))
    return errors


def job_metadata_rules(obj: dict) -> list[Error]:
    """pkg/controller/jobframework/validation.go ``ValidateJobOnCreate`` (v0.19.2): the queue name is a
    DNS-1123 subdomain (it names a LocalQueue), a max-exec-time label is a positive integer. (The
    elastic-job annotation is accepted on Job, RayCluster, RayJob and RayService: supportedElasticJobGVKs.)"""
    import re

    errors: list[Error] = []
    labels = obj.get("metadata", {}).get("labels", {})
    queue = labels.get(QUEUE_LABEL)
    subdomain = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    if queue is not None and (len(queue) > 253 or not re.fullmatch(subdomain, queue)):  # "" included
        errors.append((f"metadata.labels[{QUEUE_LABEL}]", "must be a lowercase RFC 1123 subdomain"))
    if MAX_EXEC_TIME_LABEL in labels:
        value = labels[MAX_EXEC_TIME_LABEL]
        if not value.lstrip("-").isdigit() or int(value) <= 0:
            errors.append((f"metadata.labels[{MAX_EXEC_TIME_LABEL}]", "should be greater than 0"))
    return errors


def rayjob_rules(job: dict) -> list[Error]:
    """pkg/controller/jobs/rayjob/rayjob_webhook.go ``validateCreate`` (v0.19.2): a managed RayJob brings its
    own cluster (no ``clusterSelector`` with a ``rayClusterSpec``; one of them is required; a selector alone
    is not managed), deletes it when done (``shutdownAfterJobFinishes``), and passes the RayCluster rules.
    The Workload's PodSets (the cluster's, plus the submitter in K8sJobMode) are at most 18: the Workload
    CRD's ``spec.podSets`` maxItems, which the webhook does not check for the submitter."""
    errors = job_metadata_rules(job)
    if not is_managed(job):
        return errors
    spec = job.get("spec", {})
    cluster = spec.get("rayClusterSpec")
    if spec.get("clusterSelector") and cluster is not None:
        return [*errors, ("spec.clusterSelector", "a kueue managed job should not use an existing cluster")]
    if spec.get("clusterSelector"):
        return errors
    if cluster is None:
        return [*errors, ("spec.rayClusterSpec",
                          "rayClusterSpec is required for Kueue-managed jobs that don't use clusterSelector")]
    if not spec.get("shutdownAfterJobFinishes", False):
        errors.append(("spec.shutdownAfterJobFinishes", "a kueue managed job should delete the cluster after finishing"))
    errors += ray_cluster_spec_rules(job, cluster, "spec.rayClusterSpec")
    pod_sets = len(cluster.get("workerGroupSpecs") or []) + 1 + (spec.get("submissionMode") == SUBMISSION_K8S_JOB)
    if pod_sets > MAX_POD_SETS and len(cluster.get("workerGroupSpecs") or []) + 1 <= MAX_POD_SETS:
        errors.append(("spec.podSets", f"the Workload would have {pod_sets} PodSets; at most {MAX_POD_SETS}"))
    return errors


def rayservice_rules(service: dict) -> list[Error]:
    """pkg/controller/jobs/rayservice/rayservice_webhook.go ``validateCreate`` (v0.19.2): a managed
    RayService's ``rayClusterConfig`` passes the RayCluster rules (reported under ``spec.rayClusterSpec``)."""
    errors = job_metadata_rules(service)
    if is_managed(service):
        cluster = service.get("spec", {}).get("rayClusterConfig") or {}
        errors += ray_cluster_spec_rules(service, cluster, "spec.rayClusterSpec")
    return errors


def raycluster_rules(ray_cluster: dict) -> list[Error]:
    """pkg/controller/jobs/raycluster/raycluster_webhook.go ``validateCreate`` (v0.19.2): the common rules
    with paths under ``spec``; an elastic RayCluster may autoscale, except when MultiKueue manages it. (The
    elastic ``schedulingGates`` it also demands are added by Kueue's own defaulting webhook, which runs
    first, so a submitted object need not carry them.)"""
    errors = job_metadata_rules(ray_cluster)
    if not is_managed(ray_cluster):
        return errors
    spec = ray_cluster.get("spec", {})
    errors += ray_cluster_spec_rules(ray_cluster, spec, "spec")
    if is_elastic(ray_cluster) and spec.get("enableInTreeAutoscaling") \
            and spec.get("managedBy") == "kueue.x-k8s.io/multikueue":
        errors.append(("spec.enableInTreeAutoscaling",
                       "in-tree autoscaling is not supported for a MultiKueue-managed elastic RayCluster"))
    return errors


RULES: dict[str, Callable[[dict], list[Error]]] = {
    "RayJob": rayjob_rules, "RayService": rayservice_rules, "RayCluster": raycluster_rules,
}


def admission_errors(obj: dict) -> list[Error]:
    return RULES[obj["kind"]](obj)


# --- hand-built objects -----------------------------------------------------------------------------


def cluster_spec(groups: int = 1, **changes) -> dict:
    head = {"template": {"spec": {"containers": [{"name": "ray-head", "image": "ray"}]}}}
    workers = [{"groupName": f"group-{i}", "replicas": 1, "minReplicas": 1, "maxReplicas": 1,
                "template": {"spec": {"containers": [{"name": "ray-worker", "image": "ray"}]}}}
               for i in range(groups)]
    return {"headGroupSpec": head, "workerGroupSpecs": workers, **changes}


def meta(labels: dict | None = None, annotations: dict | None = None, managed: bool = True) -> dict:
    queue = {QUEUE_LABEL: "research-queue"} if managed else {}
    out = {"name": "probe", "namespace": "research", "labels": {**queue, **(labels or {})}}
    if annotations:
        out["annotations"] = annotations
    return out


def rayjob(cluster: dict | None = None, meta_changes: dict | None = None, **spec_changes) -> dict:
    spec = {"entrypoint": "python -V", "submissionMode": SUBMISSION_K8S_JOB, "shutdownAfterJobFinishes": True,
            "rayClusterSpec": cluster if cluster is not None else cluster_spec(), **spec_changes}
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": meta(**(meta_changes or {})), "spec": spec}


def rayservice(cluster: dict | None = None, meta_changes: dict | None = None) -> dict:
    return {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": meta(**(meta_changes or {})),
            "spec": {"serveConfigV2": "applications: []", "rayClusterConfig": cluster or cluster_spec()}}


def raycluster(cluster: dict | None = None, meta_changes: dict | None = None) -> dict:
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": meta(**(meta_changes or {})),
            "spec": cluster or cluster_spec()}


def renamed_head(cluster: dict) -> dict:
    changed = copy.deepcopy(cluster)
    changed["workerGroupSpecs"][0]["groupName"] = HEAD_GROUP_NAME
    return changed


ELASTIC = {"annotations": {ELASTIC_JOB_ANNOTATION: "true"}}
UNMANAGED = {"managed": False}

CASES: dict[str, tuple[dict, list[str]]] = {
    # name: (object, expected field paths of the errors, in order)
    "valid rayjob": (rayjob(), []),
    "rayjob autoscaling without elastic annotation": (
        rayjob(cluster_spec(enableInTreeAutoscaling=True)), ["spec.rayClusterSpec.enableInTreeAutoscaling"]),
    "rayjob autoscaling as elastic job": (rayjob(cluster_spec(enableInTreeAutoscaling=True), ELASTIC), []),
    "rayjob elastic annotation must be exactly true": (
        rayjob(cluster_spec(enableInTreeAutoscaling=True), {"annotations": {ELASTIC_JOB_ANNOTATION: "yes"}}),
        ["spec.rayClusterSpec.enableInTreeAutoscaling"]),
    "rayjob too many worker groups": (rayjob(cluster_spec(groups=18)), ["spec.rayClusterSpec.workerGroupSpecs"]),
    "rayjob 17 worker groups and a submitter overflow the Workload": (
        rayjob(cluster_spec(groups=17)), ["spec.podSets"]),
    "rayjob 17 worker groups without a submitter pod": (
        rayjob(cluster_spec(groups=17), submissionMode="HTTPMode"), []),
    "rayjob worker group named head": (
        rayjob(renamed_head(cluster_spec())), ["spec.rayClusterSpec.workerGroupSpecs[0].groupName"]),
    "rayjob keeps its cluster": (rayjob(shutdownAfterJobFinishes=False), ["spec.shutdownAfterJobFinishes"]),
    "rayjob cluster selector with cluster spec": (rayjob(clusterSelector={"ray.io/cluster": "x"}),
                                                   ["spec.clusterSelector"]),
    "rayjob cluster selector alone is not managed": (
        {**rayjob(), "spec": {"entrypoint": "x", "clusterSelector": {"ray.io/cluster": "x"}}}, []),
    "rayjob neither selector nor cluster spec": (
        {**rayjob(), "spec": {"entrypoint": "x", "shutdownAfterJobFinishes": True}}, ["spec.rayClusterSpec"]),
    "rayjob bad queue name": (rayjob(meta_changes={"labels": {QUEUE_LABEL: "Research_Queue"}}),
                              [f"metadata.labels[{QUEUE_LABEL}]"]),
    "rayservice empty queue name": (rayservice(meta_changes={"labels": {QUEUE_LABEL: ""}}),
                                    [f"metadata.labels[{QUEUE_LABEL}]"]),
    "rayjob non-positive max exec time": (rayjob(meta_changes={"labels": {MAX_EXEC_TIME_LABEL: "0"}}),
                                          [f"metadata.labels[{MAX_EXEC_TIME_LABEL}]"]),
    "unmanaged rayjob may autoscale and keep its cluster": (
        rayjob(cluster_spec(enableInTreeAutoscaling=True), UNMANAGED, shutdownAfterJobFinishes=False), []),
    "valid rayservice": (rayservice(), []),
    "rayservice autoscaling without elastic annotation": (
        rayservice(cluster_spec(enableInTreeAutoscaling=True)), ["spec.rayClusterSpec.enableInTreeAutoscaling"]),
    "rayservice autoscaling as elastic job": (rayservice(cluster_spec(enableInTreeAutoscaling=True), ELASTIC), []),
    "rayservice too many worker groups": (rayservice(cluster_spec(groups=18)),
                                          ["spec.rayClusterSpec.workerGroupSpecs"]),
    "rayservice 17 worker groups": (rayservice(cluster_spec(groups=17)), []),
    "rayservice worker group named head": (
        rayservice(renamed_head(cluster_spec())), ["spec.rayClusterSpec.workerGroupSpecs[0].groupName"]),
    "unmanaged rayservice may autoscale": (rayservice(cluster_spec(enableInTreeAutoscaling=True), UNMANAGED), []),
    "valid raycluster": (raycluster(), []),
    "raycluster autoscaling without elastic annotation": (
        raycluster(cluster_spec(enableInTreeAutoscaling=True)), ["spec.enableInTreeAutoscaling"]),
    "raycluster autoscaling as elastic job": (raycluster(cluster_spec(enableInTreeAutoscaling=True), ELASTIC), []),
    "raycluster elastic autoscaling under MultiKueue": (
        raycluster(cluster_spec(enableInTreeAutoscaling=True, managedBy="kueue.x-k8s.io/multikueue"), ELASTIC),
        ["spec.enableInTreeAutoscaling"]),
    "raycluster too many worker groups": (raycluster(cluster_spec(groups=18)), ["spec.workerGroupSpecs"]),
    "raycluster worker group named head": (
        raycluster(renamed_head(cluster_spec())), ["spec.workerGroupSpecs[0].groupName"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_table(name):
    """Each rule rejects its bad object at the field path Kueue v0.19.2 reports, and nothing else: see
    rayjob_webhook_test.go / rayservice_webhook_test.go / raycluster_webhook_test.go at the tag."""
    obj, expected_paths = CASES[name]
    assert [path for path, _ in admission_errors(obj)] == expected_paths


# --- the shipped workloads ----------------------------------------------------------------------------


def shipped_workloads() -> list[tuple[str, dict]]:
    return [(stack, doc) for stack in STACKS for doc in render_workloads(SPECS[stack])]


@pytest.mark.parametrize(("stack", "workload"), shipped_workloads(),
                         ids=lambda value: value if isinstance(value, str) else value["kind"] + "-"
                         + value["metadata"]["name"])
def test_shipped_workload_passes_kueue_admission(stack, workload):
    """Every reference workload of every shipped stack is accepted by Kueue v0.19.2's validating webhook
    for its kind (pkg/controller/jobs/{rayjob,rayservice,raycluster}/*_webhook.go and
    pkg/controller/jobs/raycluster/common.go at the tag), and is managed by Kueue at all."""
    assert is_managed(workload), "no queue-name label: Kueue would not queue it"
    assert admission_errors(workload) == []


@pytest.mark.parametrize("stack", STACKS)
def test_autoscaling_workloads_are_elastic_jobs(stack):
    """The converse holds too: the elastic-job annotation is set exactly where the in-tree autoscaler is
    on. (An elastic workload without autoscaling only adds scheduling gates to wait on;
    pkg/controller/jobs/rayservice/rayservice_webhook.go ``Default`` at v0.19.2.)"""
    for doc in render_workloads(SPECS[stack]):
        cluster = doc["spec"].get("rayClusterSpec") or doc["spec"]["rayClusterConfig"]
        assert is_elastic(doc) == bool(cluster.get("enableInTreeAutoscaling")), doc["metadata"]["name"]
