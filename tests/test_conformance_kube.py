"""The kubernetes target's logic against recorded API responses (tests/fixtures/k8s/).

The responses are replayed under the official ``kubernetes`` client: a stand-in for urllib3's pool manager
answers each request from a fixture file, so the client's URL building, auth headers and JSON handling run
for real — only the network is replaced. No test here pretends a cluster exists; the one test that wants
a live cluster skips, saying why, when none is reachable.
"""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path

import pytest
import urllib3
from park.components.spec import load_stack_file, resolve_stack_file
from park.conformance import judgements as judge
from park.conformance.checks import BY_NAME, select
from park.conformance.context import RunContext, RunOptions
from park.conformance.kube import TargetUnavailable
from park.conformance.kube_api import KubeApi, KubeError, collection_path
from park.conformance.layers import accelerators, scheduling, workloads
from park.conformance.layers.storage import cluster_storage
from park.conformance.model import CheckFailed, NotApplicable, Status
from park.conformance.runner import Runner
from park.conformance.targets import KubernetesTarget

FIXTURES = Path(__file__).parent / "fixtures" / "k8s"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class ReplayPoolManager:
    """Answers the client's HTTP requests from recorded responses: {(method, path): (status, body)}."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, dict | str]]):
        self.routes = routes
        self.requests: list[tuple[str, str, dict]] = []
        self.bodies: list[str] = []

    def request(self, method, url, **kwargs):
        path = urllib3.util.parse_url(url).path
        query = urllib3.util.parse_url(url).query
        self.requests.append((method, path + (f"?{query}" if query else ""), kwargs.get("headers", {})))
        if kwargs.get("body") is not None and method == "POST":
            self.bodies.append(kwargs["body"])
        status, body = self.routes.get(
            (method, path),
            (
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": f"{path} not found",
                    "reason": "NotFound",
                    "code": 404,
                },
            ),
        )
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return urllib3.HTTPResponse(
            body=io.BytesIO(data),
            status=status,
            reason="OK" if status < 400 else "Error",
            headers={"Content-Type": "application/json"},
            preload_content=False,
        )


def replay_api(routes) -> tuple[KubeApi, ReplayPoolManager]:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = "https://park-kind-control-plane.invalid:6443"
    configuration.api_key = {"BearerToken": "recorded-token"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    api_client = client.ApiClient(configuration)
    pool = ReplayPoolManager(routes)
    api_client.rest_client.pool_manager = pool
    return KubeApi(api_client), pool


KIND_ROUTES = {
    ("GET", "/version"): (200, fixture("version.json")),
    ("GET", "/api/v1/nodes"): (200, fixture("nodes-kind.json")),
    ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"): (200, fixture("crds.json")),
    ("GET", "/apis/apps/v1/namespaces/kuberay-system/deployments/kuberay-operator"): (
        200,
        fixture("deployment-kuberay-operator.json"),
    ),
    ("GET", "/apis/apps/v1/namespaces/kueue-system/deployments/kueue-controller-manager"): (
        200,
        fixture("deployment-kueue-controller-manager.json"),
    ),
    ("GET", "/apis/kueue.x-k8s.io/v1beta2/clusterqueues"): (200, fixture("clusterqueues-kind.json")),
    ("GET", "/apis/kueue.x-k8s.io/v1beta2/localqueues"): (200, fixture("localqueues-kind.json")),
    ("GET", "/api/v1/namespaces/monitoring/services/kube-prometheus-prometheus:9090/proxy/api/v1/targets"): (
        200,
        fixture("prometheus-targets.json"),
    ),
}


@pytest.fixture()
def kind_spec():
    return load_stack_file(resolve_stack_file("kind"))


@pytest.fixture()
def aws_spec():
    return load_stack_file(resolve_stack_file("aws"))


def make_target(spec, routes=None, **options) -> tuple[KubernetesTarget, ReplayPoolManager]:
    api, pool = replay_api(routes if routes is not None else KIND_ROUTES)
    ctx = RunContext(RunOptions(target="kubernetes", stack="kind", **options))
    return KubernetesTarget(ctx, api, spec, "stacks/Pulumi.kind.yaml", fixture("version.json")), pool


# --- the client path ------------------------------------------------------------------------------


def test_requests_carry_the_token_and_hit_the_rest_paths_of_each_kind():
    api, pool = replay_api(KIND_ROUTES)
    nodes = api.list("v1", "Node")
    assert [n["metadata"]["name"] for n in nodes["items"]] == [
        "park-kind-control-plane",
        "park-kind-worker",
        "park-kind-worker2",
    ]
    method, path, headers = pool.requests[-1]
    assert (method, path) == ("GET", "/api/v1/nodes")
    assert {k.lower(): v for k, v in headers.items()}["authorization"] == "Bearer recorded-token"
    assert collection_path("ray.io/v1", "RayJob", "research") == "/apis/ray.io/v1/namespaces/research/rayjobs"
    assert (
        collection_path("kueue.x-k8s.io/v1beta2", "ClusterQueue")
        == "/apis/kueue.x-k8s.io/v1beta2/clusterqueues"
    )


def test_a_missing_object_is_none_and_a_forbidden_list_names_the_server_message():
    api, _ = replay_api({("GET", "/api/v1/nodes"): (403, fixture("status-forbidden.json"))})
    assert api.get("apps/v1", "Deployment", "kuberay-operator", "kuberay-system") is None
    with pytest.raises(KubeError, match=r"403 .*cannot list resource \"nodes\""):
        api.list("v1", "Node")


def test_service_proxy_keeps_slashes_and_query():
    api, pool = replay_api(
        {
            ("GET", "/api/v1/namespaces/monitoring/services/prom:9090/proxy/api/v1/query"): (
                200,
                fixture("prometheus-query-gpu-util.json"),
            )
        }
    )
    answer = api.service_proxy(
        "GET", "monitoring", "prom", 9090, "api/v1/query", {"query": "DCGM_FI_DEV_GPU_UTIL"}
    )
    assert answer["data"]["result"][0]["metric"]["modelName"] == "NVIDIA L4"
    assert pool.requests[-1][1].endswith("proxy/api/v1/query?query=DCGM_FI_DEV_GPU_UTIL")


# --- judgements -----------------------------------------------------------------------------------


def test_nodes_pass_on_the_recorded_kind_cluster_and_fail_when_a_worker_is_not_ready(kind_spec):
    nodes = fixture("nodes-kind.json")
    assert judge.judge_nodes(kind_spec, nodes).ok
    broken = copy.deepcopy(nodes)
    ready = next(c for c in broken["items"][2]["status"]["conditions"] if c["type"] == "Ready")
    ready["status"] = "False"
    verdict = judge.judge_nodes(kind_spec, broken)
    assert verdict.problems == [
        "pool 'cpu' has 1 Ready node(s), below minNodes 2 (not Ready: park-kind-worker2)"
    ]


def test_labels_and_taints_follow_the_stack(aws_spec):
    nodes = fixture("nodes-aws.json")
    assert judge.judge_labels_taints(aws_spec, nodes).ok
    untainted = copy.deepcopy(nodes)
    del untainted["items"][2]["spec"]["taints"]
    verdict = judge.judge_labels_taints(aws_spec, untainted)
    assert verdict.problems == [
        (
            "node ip-10-0-13-140.us-west-2.compute.internal (pool l4-shared) lacks taint "
            "nvidia.com/gpu=present:NoSchedule"
        )
    ]


def test_time_sliced_gpus_must_be_advertised_times_the_replicas(aws_spec):
    nodes = fixture("nodes-aws.json")
    assert judge.judge_gpus_allocatable(aws_spec, nodes).ok  # 1 L4 x 4 time-slicing replicas = 4
    unsliced = copy.deepcopy(nodes)
    unsliced["items"][2]["status"]["allocatable"]["nvidia.com/gpu"] = "1"
    verdict = judge.judge_gpus_allocatable(aws_spec, unsliced)
    assert "advertises 1 nvidia.com/gpu, expected 4" in verdict.problems[0]


def test_crds_must_be_established_and_serve_the_pinned_version():
    from park.conformance.layers.operators import KUBERAY_CRDS, KUEUE_CRDS

    crds = fixture("crds.json")
    assert judge.judge_crds(crds, {**KUBERAY_CRDS, **KUEUE_CRDS}).ok
    old = copy.deepcopy(crds)
    old["items"] = [c for c in old["items"] if c["metadata"]["name"] != "workloads.kueue.x-k8s.io"]
    next(c for c in old["items"] if c["metadata"]["name"] == "rayjobs.ray.io")["spec"]["versions"][0][
        "served"
    ] = False
    problems = judge.judge_crds(old, {**KUBERAY_CRDS, **KUEUE_CRDS}).problems
    assert "CRD workloads.kueue.x-k8s.io is not installed" in problems
    assert "CRD rayjobs.ray.io serves v1alpha1, not v1" in problems


def test_gang_judgements_on_recorded_workloads():
    fit = judge.judge_gang_admission(fixture("workload-rayjob-admitted.json"))
    assert fit.ok and fit.facts["assigned"] == {"head": 1, "cpu-workers": 2, "submitter": 1}
    partial = fixture("workload-rayjob-admitted.json")
    partial["status"]["admission"]["podSetAssignments"][1]["count"] = 1
    assert judge.judge_gang_admission(partial).problems == [
        (
            "Workload research/rayjob-park-conf-gang-fit-8f3c1 pod set cpu-workers: 1 of 2 admitted "
            "(not all-or-nothing)"
        )
    ]
    held = judge.judge_gang_held(fixture("workload-rayjob-pending.json"), fixture("pods-empty.json"))
    assert held.ok and "insufficient quota" in held.facts["pending_reason"]
    leaked = fixture("pods-empty.json")
    leaked["items"] = [{"metadata": {"name": "gang-big-head-x"}, "status": {"phase": "Running"}}]
    assert (
        "1 pod(s) of the oversized RayJob exist"
        in judge.judge_gang_held(fixture("workload-rayjob-pending.json"), leaked).problems[0]
    )


def test_admission_state_quotes_kueue(tmp_path):
    assert judge.admission_state(fixture("workload-rayjob-admitted.json"))[0] is True
    admitted_now, said = judge.admission_state(fixture("workload-rayjob-pending.json"))
    assert not admitted_now
    assert said.endswith(
        "QuotaReserved=False: couldn't assign flavors to pod set cpu-workers: insufficient quota "
        "for cpu in flavor cpu, request > maximum capacity (6 > 4)"
    )
    assert "no Workload yet" in judge.admission_state(None)[1]


def test_prometheus_targets_and_gpu_series():
    targets = fixture("prometheus-targets.json")
    wanted = {"Ray": "ray", "Kueue": "kueue", "dcgm-exporter": "dcgm"}
    assert judge.judge_prometheus_targets(targets, wanted).ok
    down = copy.deepcopy(targets)
    for target in down["data"]["activeTargets"]:
        if "dcgm" in target["scrapePool"]:
            target["health"], target["lastError"] = "down", "connection refused"
    assert judge.judge_prometheus_targets(down, wanted).problems == [
        "all 1 Prometheus target(s) for dcgm-exporter are down: connection refused"
    ]
    assert judge.judge_query_has_series(fixture("prometheus-query-gpu-util.json"), "DCGM_FI_DEV_GPU_UTIL").ok
    assert not judge.judge_query_has_series(fixture("prometheus-query-empty.json"), "DCGM_FI_DEV_GPU_UTIL").ok


def test_nvidia_smi_listing_and_chat_answer():
    listing = (
        "GPU 0: NVIDIA L4 (UUID: GPU-6a1f3c2e-91b4-4c70-8d2a-0f5e7b9c1d34)\n"
        "GPU 1: NVIDIA L4 (UUID: GPU-0b7e51d2-77aa-4f0e-a1c3-5e2d9f8b6c10)\n"
    )
    assert [g["uuid"][-4:] for g in judge.parse_nvidia_smi_list(listing)] == ["1d34", "6c10"]
    assert judge.judge_chat_completion(fixture("chat-completion.json"), "tiny-llama").ok
    wrong = judge.judge_chat_completion(fixture("chat-completion.json"), "qwen2.5-0.5b-instruct")
    assert wrong.problems == ["answer names model 'tiny-llama', not the served 'qwen2.5-0.5b-instruct'"]


# --- target checks over replayed responses ------------------------------------------------------


def test_read_only_layers_pass_on_the_recorded_kind_cluster(kind_spec):
    target, _ = make_target(kind_spec)
    runner = Runner(
        target.ctx, target, select(["infrastructure", "operators", "observability.prometheus-targets"])
    )
    results = {r.name: r for r in runner.run_all()}
    assert results["infrastructure.nodes"].status is Status.PASSED, results["infrastructure.nodes"].reason
    assert (
        results["infrastructure.nodes"].reason
        == "Ready nodes per pool (ready/min-max): system 1/1-1, cpu 2/2-2"
    )
    assert results["infrastructure.node-labels-taints"].status is Status.PASSED
    assert results["operators.kuberay"].status is Status.PASSED
    assert results["operators.kueue"].status is Status.PASSED
    # kind has no GPU pools: GPU checks do not apply; the local-only checks do not apply either
    assert results["infrastructure.gpus-allocatable"].status is Status.NOT_APPLICABLE
    assert results["infrastructure.host"].status is Status.NOT_APPLICABLE
    assert results["operators.ray-head"].status is Status.NOT_APPLICABLE
    # the kind stack keeps dcgm-exporter off (no GPUs): Ray and Kueue targets are enough
    assert results["observability.prometheus-targets"].status is Status.PASSED


def test_a_stopped_kueue_controller_fails_operators_kueue_and_skips_what_needs_it(kind_spec):
    stopped = copy.deepcopy(KIND_ROUTES)
    deployment = fixture("deployment-kueue-controller-manager.json")
    deployment["status"].update({"readyReplicas": 0, "availableReplicas": 0})
    deployment["status"]["conditions"][0].update(
        {
            "status": "False",
            "reason": "MinimumReplicasUnavailable",
            "message": "Deployment does not have minimum availability.",
        }
    )
    stopped[("GET", "/apis/apps/v1/namespaces/kueue-system/deployments/kueue-controller-manager")] = (
        200,
        deployment,
    )
    target, _ = make_target(kind_spec, stopped)
    runner = Runner(target.ctx, target, select(["operators.kueue", "scheduling.queue-admission"]))
    results = {r.name: r for r in runner.run_all()}
    assert results["operators.kueue"].status is Status.FAILED
    assert (
        "kueue-system/kueue-controller-manager is not Available (Deployment does not have minimum "
        "availability.)" in results["operators.kueue"].reason
    )
    assert results["scheduling.queue-admission"].status is Status.SKIPPED
    assert results["scheduling.queue-admission"].reason.startswith("needs operators.kueue, which failed")


@pytest.mark.parametrize("keep", [False, True])
def test_a_probe_pod_is_deleted_when_its_check_ends_unless_keep(aws_spec, monkeypatch, keep):
    """Before, probe pods slept 900 s until the end of the run, holding a GPU (on gcp the only one of the
    node) while the workloads waited for another node."""
    from types import SimpleNamespace

    target, pool = make_target(aws_spec, keep=keep)
    listing = "GPU 0: NVIDIA L4 (UUID: GPU-6a1f3c2e-91b4-4c70-8d2a-0f5e7b9c1d30)\n"
    host = SimpleNamespace(run=lambda command: SimpleNamespace(rc=0, stdout=listing, stderr=""))
    monkeypatch.setattr(target, "run_pod", lambda pod, timeout_s=0: host)
    passed = accelerators.cluster_gpu_visible(target, target.ctx)
    assert "on pool l4-shared sees exactly one" in passed.summary
    deleted = ("DELETE", f"/api/v1/namespaces/research/pods/{target.object_name('gpu')}")
    assert (deleted in [r[:2] for r in pool.requests]) is not keep


def test_gpu_checks_are_not_applicable_on_a_cpu_stack(kind_spec):
    target, _ = make_target(kind_spec)
    with pytest.raises(NotApplicable, match="has no GPU pool"):
        accelerators.cluster_gpu_visible(target, target.ctx)


def test_objects_the_target_creates_are_valid_and_carry_the_run_id(aws_spec):
    from schemas import assert_valid_core_object, assert_valid_custom_resource

    target, _ = make_target(aws_spec)
    pool = aws_spec.pool("l4-shared")
    gpu_pod = target.labelled(target.probe_pod("gpu", pool, "park-stack/workloads:0.1.0-gpu", gpus=1))
    assert gpu_pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu_pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    job = target.labelled(scheduling.job(target, "admit", "100m", "128Mi", priority="low"))
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research-queue"
    # pinned: unpinned, Kueue gave the Job the queue's first flavor with room, the 8-GPU spot pool
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"park-stack.io/pool": "system"}
    rayjob = target.labelled(scheduling.tiny_rayjob(target, "gang-fit", workers=2))
    submitter = rayjob["spec"]["submitterPodTemplate"]["spec"]
    assert submitter["nodeSelector"] == {"park-stack.io/pool": "l4-shared"}
    assert submitter["containers"][0]["name"] == "ray-job-submitter"  # KubeRay fills in its command
    for obj in (gpu_pod, job):
        assert obj["metadata"]["name"].startswith(f"park-conf-{target.ctx.run_id}-")
        assert obj["metadata"]["labels"]["park-stack.io/conformance-run"] == target.ctx.run_id
        assert_valid_core_object(obj, aws_spec.kubernetes_version)
    assert_valid_custom_resource(rayjob)
    assert rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 2


RECORDED_RUN = "park-conf-20261122-184001-a1b2"


def renamed(name: str, run_name: str, *, text: bool = False):
    """A recorded response with the recorded run's object names replaced by this run's."""
    raw = (FIXTURES / name).read_text().replace(RECORDED_RUN, run_name)
    return raw if text else json.loads(raw)


def workload_routes(
    target: KubernetesTarget, what: str, owner_kind: str, namespace: str = "research"
) -> dict:
    """Routes for one workload of the target in ``namespace``: create it, read it back finished, its Kueue
    Workload, its submitter pod and that pod's log."""
    run = target.ctx.name
    name = target.object_name(what)
    admitted = renamed("workload-rayjob-admitted.json", run)
    admitted["metadata"]["ownerReferences"][0].update({"kind": owner_kind, "name": name})
    plural = {"RayJob": "rayjobs", "RayService": "rayservices"}[owner_kind]
    fixture_name = {"RayJob": "rayjob-succeeded.json", "RayService": "rayservice-ready.json"}[owner_kind]
    live = renamed(fixture_name, run)
    live["metadata"]["name"] = name
    pods = renamed("pods-submitter.json", run)
    pods["items"][0]["metadata"]["labels"]["job-name"] = name
    pod = pods["items"][0]["metadata"]["name"]
    return {
        ("POST", f"/apis/ray.io/v1/namespaces/{namespace}/{plural}"): (201, live),
        ("GET", f"/apis/ray.io/v1/namespaces/{namespace}/{plural}/{name}"): (200, live),
        ("GET", f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{namespace}/workloads"): (
            200,
            {"kind": "WorkloadList", "apiVersion": "kueue.x-k8s.io/v1beta2", "items": [admitted]},
        ),
        ("GET", f"/api/v1/namespaces/{namespace}/pods"): (200, pods),
        ("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log"): (
            200,
            renamed("submitter.log", run, text=True),
        ),
    }


@pytest.fixture()
def kind_spec_with_storage(kind_spec, tmp_path):
    """The kind spec with its storage folder here, so the target can re-read what the workload wrote."""
    return kind_spec.model_copy(
        update={"storage": kind_spec.storage.model_copy(update={"local_path": str(tmp_path)})}
    )


def write_train_summary(target: KubernetesTarget, accuracy: float) -> None:
    from park.workloads import storage

    run_uri = storage.join(target.spec.storage_uri, "checkpoints", target.object_name("train"))
    storage.write_text(storage.join(run_uri, "summary.json"), json.dumps({"final_accuracy": accuracy}))


def test_train_on_a_cluster_submits_the_rendered_rayjob_and_rereads_the_summary(kind_spec_with_storage):
    target, pool = make_target(kind_spec_with_storage)
    pool.routes.update(workload_routes(target, "train", "RayJob"))
    write_train_summary(target, 0.6221)
    passed = workloads.cluster_train(target, target.ctx)
    assert "admitted by Kueue and completed; final accuracy 0.622 >= 0.5" in passed.summary
    method, path, _ = next(r for r in pool.requests if r[0] == "POST")
    assert (method, path) == ("POST", "/apis/ray.io/v1/namespaces/research/rayjobs")
    submitted = json.loads(pool.bodies[0])
    assert submitted["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research-queue"
    assert submitted["metadata"]["labels"]["park-stack.io/conformance-run"] == target.ctx.run_id
    assert submitted["spec"]["suspend"] is True  # Kueue un-suspends it on admission
    assert submitted["spec"]["submitterPodTemplate"]["spec"]["nodeSelector"] == {"park-stack.io/pool": "cpu"}
    target.ctx.close()  # cleanup deletes what was created: the replay answers 404, which is fine
    assert ("DELETE", f"/apis/ray.io/v1/namespaces/research/rayjobs/{target.object_name('train')}") in [
        r[:2] for r in pool.requests
    ]


def test_train_on_a_cluster_fails_below_the_bar_even_when_the_job_succeeded(kind_spec_with_storage):
    target, pool = make_target(kind_spec_with_storage)
    pool.routes.update(workload_routes(target, "train", "RayJob"))
    write_train_summary(target, 0.31)
    with pytest.raises(CheckFailed, match=r"final accuracy 0.3100 is below the bar 0.5"):
        workloads.cluster_train(target, target.ctx)


def test_serve_on_a_cluster_asks_the_rayservice_for_a_chat_completion(kind_spec):
    """The RayService goes to the serving team's namespace and LocalQueue at its high priority (the kind
    stack has a serving team), and the chat request follows it there."""
    target, pool = make_target(kind_spec)
    pool.routes.update(workload_routes(target, "serve", "RayService", namespace="serving"))
    service = f"{target.object_name('serve')}-serve-svc:8000"
    pool.routes[("POST", f"/api/v1/namespaces/serving/services/{service}/proxy/v1/chat/completions")] = (
        200,
        fixture("chat-completion.json"),
    )
    passed = workloads.cluster_serve(target, target.ctx)
    assert passed.summary.endswith("chat completion from tiny-llama: 'Paris is the capital of robots'")
    submitted = json.loads(pool.bodies[0])
    assert submitted["metadata"]["namespace"] == "serving"
    assert submitted["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "serving-queue"
    assert submitted["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "high"
    assert target.ctx.facts[f"{target.object_name('serve')}.team"] == "serving"
    chat = json.loads(pool.bodies[-1])
    assert chat["model"] == "tiny-llama" and chat["messages"][0]["role"] == "user"


def test_team_and_priority_overrides_move_a_workload_and_its_checks_to_that_team(kind_spec_with_storage):
    """--team serving --priority low: the training RayJob is created in the serving namespace, queued on
    serving-queue at low priority, and the target reads it (and its Kueue Workload) back from there."""
    target, pool = make_target(kind_spec_with_storage, team="serving", priority="low")
    assert (target.team.name, target.namespace) == ("serving", "serving")
    pool.routes.update(workload_routes(target, "train", "RayJob", namespace="serving"))
    write_train_summary(target, 0.6221)
    workloads.cluster_train(target, target.ctx)
    submitted = json.loads(pool.bodies[0])
    assert submitted["metadata"]["namespace"] == "serving"
    assert submitted["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "serving-queue"
    assert submitted["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "low"
    reads = {path for method, path, _ in pool.requests if method == "GET"}
    assert "/apis/kueue.x-k8s.io/v1beta2/namespaces/serving/workloads" in reads
    job = scheduling.job(
        target, "admit", "100m", "128Mi"
    )  # the scheduling checks follow --team / --priority too
    assert job["metadata"]["namespace"] == "serving"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "low"


def test_storage_on_a_cluster_runs_a_probe_pod_as_the_ray_service_account(kind_spec):
    target, pool = make_target(kind_spec)
    name = target.object_name("storage")
    pod = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "research"},
        "status": {"phase": "Succeeded"},
    }
    log = 'PROBE-RESULT {"host": "park-kind-worker", "sha256": "9f2c51e0aa", "bytes": 61, "same": true}\n'
    pool.routes.update(
        {
            ("POST", "/api/v1/namespaces/research/pods"): (201, pod),
            ("GET", f"/api/v1/namespaces/research/pods/{name}"): (200, pod),
            ("GET", f"/api/v1/namespaces/research/pods/{name}/log"): (200, log),
        }
    )
    passed = cluster_storage(target, target.ctx)
    assert passed.summary.startswith(
        "a pod running as research/park-ray wrote file:///mnt/park-storage/conformance/"
    )
    created = json.loads(pool.bodies[0])["spec"]
    assert created["serviceAccountName"] == "park-ray"
    assert created["nodeSelector"] == {"park-stack.io/pool": "cpu"}
    # on kind the storage is a host folder each Ray worker mounts through the team claim; so does the probe
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in created["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in created["containers"][0]["volumeMounts"]}
    assert [(claims[n], mounts[n]) for n in claims] == [("park-storage", "/mnt/park-storage")]
    assert created["containers"][0]["command"][:4] == [
        "python",
        "-m",
        "park.conformance.probe",
        "storage-direct",
    ]


def test_connect_without_a_reachable_api_server_says_where_it_tried(tmp_path):
    from park.conformance.local_ray import free_ports

    port = free_ports(1)[0]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "nowhere",
                "clusters": [
                    {
                        "name": "nowhere",
                        "cluster": {"server": f"https://127.0.0.1:{port}", "insecure-skip-tls-verify": True},
                    }
                ],
                "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    ctx = RunContext(RunOptions(target="kubernetes", stack="aws", kubeconfig=str(kubeconfig)))
    with pytest.raises(
        TargetUnavailable, match=rf"cannot reach the Kubernetes API at https://127.0.0.1:{port}"
    ):
        KubernetesTarget.connect(ctx)
    ctx.close()


def test_connect_needs_a_stack_and_a_kubeconfig(tmp_path):
    with pytest.raises(TargetUnavailable, match="needs --stack"):
        KubernetesTarget.connect(RunContext(RunOptions(target="kubernetes")))
    missing = RunContext(RunOptions(target="kubernetes", stack="aws", kubeconfig=str(tmp_path / "absent")))
    with pytest.raises(TargetUnavailable, match="no usable kubeconfig"):
        KubernetesTarget.connect(missing)


def test_every_check_is_implemented_by_at_least_one_target():
    from park.conformance.targets import KUBERNETES_CHECKS, LOCAL_CHECKS

    assert set(BY_NAME) == set(LOCAL_CHECKS) | set(KUBERNETES_CHECKS)


def _live_cluster_reason() -> str | None:
    if not (os.environ.get("KUBECONFIG") or Path.home().joinpath(".kube", "config").exists()):
        return "no kubeconfig ($KUBECONFIG or ~/.kube/config): no live cluster to check"
    ctx = RunContext(RunOptions(target="kubernetes", stack=os.environ.get("PARK_CONFORMANCE_STACK", "kind")))
    try:
        KubernetesTarget.connect(ctx)
    except TargetUnavailable as err:
        return f"no live cluster reachable: {err}"
    finally:
        ctx.close()
    return None


@pytest.mark.cloud
def test_live_cluster_read_only_layers():
    reason = _live_cluster_reason()
    if reason:
        pytest.skip(reason)
    from park.conformance import session

    outcome = session.run(
        RunOptions(
            target="kubernetes",
            stack=os.environ.get("PARK_CONFORMANCE_STACK", "kind"),
            only=("infrastructure", "operators"),
        )
    )
    assert outcome.verdict.passed, [(r.name, r.reason) for r in outcome.results if r.status is Status.FAILED]


def test_check_failed_carries_details():
    err = CheckFailed("x", {"a": 1})
    assert err.details == {"a": 1} and err.status is Status.FAILED


# --- accelerators.gpu-isolation: what each cloud's GPU nodes guarantee -------------------------------

STACKS_DIR = Path(__file__).parents[1] / "stacks"
SHIPPED_STACKS = sorted(
    p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml")
)

GPU_NODES_HONOUR_VISIBLE_DEVICES = {
    # EKS AL2023 NVIDIA AMI: nodeadm makes nvidia-container-runtime containerd's default runtime
    # (awslabs/amazon-eks-ami nodeadm/internal/containerd/runtime_config_nvidia.go) and the AMI installs
    # nvidia-container-toolkit with its packaged config.toml (templates/al2023/provisioners/
    # install-nvidia-driver.sh): accept-nvidia-visible-devices-envvar-when-unprivileged = true,
    # accept-nvidia-visible-devices-as-volume-mounts = false.
    "aws": True,
    # GKE runs its own device plugin (GoogleCloudPlatform/container-engine-accelerators cmd/nvidia_gpu), which
    # hands out device nodes itself; no NVIDIA runtime hook reads the variable (NVIDIA/k8s-device-plugin#61;
    # measured on GKE in llm-d-incubation/llm-d-fast-model-actuation#723: only privileged pods get GPUs they
    # did not request).
    "gcp": False,
}
"""How each cloud's GPU nodes treat NVIDIA_VISIBLE_DEVICES from an unprivileged container that requests no GPU."""

CUDA_IMAGE_VISIBLE_DEVICES = "all"
"""What CUDA base images (the GPU workload image's base) set NVIDIA_VISIBLE_DEVICES to."""


class FakeGpuNodeProbe:
    """A probe pod on a GPU node with two GPUs: answers ``ls /dev/nvidia*`` and ``nvidia-smi -L`` the way a node
    whose runtime does or does not honour NVIDIA_VISIBLE_DEVICES would, for the pod the check created."""

    def __init__(self, pod: dict, honours_visible_devices: bool, leaks_without_asking: bool = False):
        container = pod["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        asked = env.get("NVIDIA_VISIBLE_DEVICES", CUDA_IMAGE_VISIBLE_DEVICES)
        assert "nvidia.com/gpu" not in container["resources"]["limits"], "the probe must request no GPU"
        wants_gpus = asked not in ("", "void", "none")
        self.gpus = 2 if leaks_without_asking or (honours_visible_devices and wants_gpus) else 0

    def run(self, command: str):
        from types import SimpleNamespace

        if command.startswith("ls /dev/nvidia"):
            return SimpleNamespace(
                rc=0 if self.gpus else 2,
                stdout=" ".join(f"/dev/nvidia{i}" for i in range(self.gpus)),
                stderr="",
            )
        assert command == "nvidia-smi -L", command
        if not self.gpus:
            return SimpleNamespace(rc=127, stdout="", stderr="nvidia-smi: command not found")
        lines = [
            f"GPU {i}: NVIDIA L4 (UUID: GPU-6a1f3c2e-91b4-4c70-8d2a-0f5e7b9c1d3{i})" for i in range(self.gpus)
        ]
        return SimpleNamespace(rc=0, stdout="\n".join(lines) + "\n", stderr="")


def gpu_target(stack: str, monkeypatch, **node) -> tuple[KubernetesTarget, list[dict]]:
    spec = load_stack_file(resolve_stack_file(stack))
    target, _ = make_target(spec)
    created: list[dict] = []

    def run_pod(pod, timeout_s=0):
        created.append(pod)
        return FakeGpuNodeProbe(
            pod, **{"honours_visible_devices": GPU_NODES_HONOUR_VISIBLE_DEVICES[spec.cloud], **node}
        )

    monkeypatch.setattr(target, "run_pod", run_pod)
    return target, created


@pytest.mark.parametrize("stack", ["aws", "gcp"])
def test_gpu_isolation_passes_on_each_cloud_as_its_gpu_nodes_are_configured(stack, monkeypatch):
    """The check demands what the platform guarantees: on aws a pod that asks for no GPU gets none and the
    result says what is not guaranteed; on gcp not even NVIDIA_VISIBLE_DEVICES=all reaches a GPU. Before, the
    aws probe kept the CUDA image's NVIDIA_VISIBLE_DEVICES=all and failed asking for settings nothing sets."""
    target, created = gpu_target(stack, monkeypatch)
    passed = accelerators.cluster_gpu_isolation(target, target.ctx)
    env = created[0]["spec"]["containers"][0]["env"]
    if stack == "aws":
        assert env == [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]
        assert "not guaranteed on aws: an unprivileged pod that sets NVIDIA_VISIBLE_DEVICES" in passed.summary
        assert passed.details["isolation_guaranteed"] is False
        assert passed.details["device_list_strategy"] == "envvar"
    else:
        assert env == [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]
        assert passed.summary.endswith("sees none, even with NVIDIA_VISIBLE_DEVICES=all")
        assert passed.details["isolation_guaranteed"] is True
        assert passed.details["device_list_strategy"] is None  # GKE's own device plugin


def test_gpu_isolation_fails_where_a_node_breaks_what_its_cloud_guarantees(monkeypatch):
    target, _ = gpu_target("gcp", monkeypatch, honours_visible_devices=True)
    with pytest.raises(
        CheckFailed,
        match=r"set NVIDIA_VISIBLE_DEVICES=all can reach 2 GPU\(s\): the gcp GPU "
        r"nodes are declared to hand out GPUs only through the device plugin",
    ):
        accelerators.cluster_gpu_isolation(target, target.ctx)
    target, _ = gpu_target("aws", monkeypatch, leaks_without_asking=True)
    with pytest.raises(
        CheckFailed,
        match=r"set NVIDIA_VISIBLE_DEVICES=void can reach 2 GPU\(s\): something "
        r"besides the device plugin \(deviceListStrategy envvar\)",
    ):
        accelerators.cluster_gpu_isolation(target, target.ctx)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_gpu_isolation_demands_what_the_device_plugin_values_and_cloud_capability_provide(stack):
    """One fact (CAPABILITIES[cloud].isolates_unrequested_gpus) sets both the device plugin's
    deviceListStrategy and what accelerators.gpu-isolation demands, and it matches how the cloud's GPU nodes
    treat NVIDIA_VISIBLE_DEVICES (table above). NVIDIA device plugin 0.20.0: the plugin must pass device lists
    the way the node toolkit reads them (envvar where accept-nvidia-visible-devices-as-volume-mounts is off,
    volume-mounts where unprivileged NVIDIA_VISIBLE_DEVICES is refused)."""
    from park.components.clouds import CAPABILITIES
    from park.components.manifests import gpu
    from park.components.manifests.common import ClusterFacts
    from park.conformance.layers.accelerators import gpu_isolation

    spec = load_stack_file(resolve_stack_file(stack))
    isolation = gpu_isolation(spec)
    capabilities = CAPABILITIES[spec.cloud]
    assert isolation.guaranteed is capabilities.isolates_unrequested_gpus
    if spec.cloud in GPU_NODES_HONOUR_VISIBLE_DEVICES:
        assert capabilities.isolates_unrequested_gpus is not GPU_NODES_HONOUR_VISIBLE_DEVICES[spec.cloud]
    releases = gpu.build(spec, ClusterFacts.for_spec(spec)).releases
    if not releases:  # the cloud runs its own device plugin, or the stack has no GPUs
        assert isolation.device_list_strategy is None
        return
    values = releases[0].values
    assert values["deviceListStrategy"] == isolation.device_list_strategy
    honours = GPU_NODES_HONOUR_VISIBLE_DEVICES[spec.cloud]
    assert values["deviceListStrategy"] == ("envvar" if honours else "volume-mounts")
    assert isolation.probe_visible_devices == ("void" if honours else "all")


def test_the_device_plugin_chart_reads_the_device_list_strategy_value():
    """nvidia-device-plugin 0.20.0 templates/daemonset-device-plugin.yml turns .Values.deviceListStrategy
    into DEVICE_LIST_STRATEGY; a renamed value would silently fall back to the plugin default."""
    import yaml
    from park.components import versions
    from schemas import pinned_chart

    chart = pinned_chart(versions.NVIDIA_DEVICE_PLUGIN_CHART)

    assert "deviceListStrategy" in yaml.safe_load((chart / "values.yaml").read_text())
    template = (chart / "templates" / "daemonset-device-plugin.yml").read_text()
    assert "DEVICE_LIST_STRATEGY" in template and ".Values.deviceListStrategy" in template


# --- scheduling.preemption: pass or fail, the quota is given back ------------------------------------


class FakeKueueCluster(ReplayPoolManager):
    """Jobs and their Kueue Workloads in one namespace whose quota fits one of the check's Jobs at a time.
    With ``preempts``, a higher-priority Job evicts the admitted one (Kueue v0.19.2 withinClusterQueue:
    LowerPriority); a Workload holds quota while QuotaReserved is true and goes away with its Job."""

    def __init__(self, spec, namespace: str, preempts: bool = True):
        super().__init__(KIND_ROUTES)
        self.namespace = namespace
        self.preempts = preempts
        self.priorities = {p.name: p.value for p in spec.priority_classes}
        self.jobs: dict[str, dict] = {}

    def _priority(self, job: dict) -> int:
        return self.priorities[job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"]]

    def workloads(self) -> list[dict]:
        order = list(self.jobs)
        if not order:
            return []
        if self.preempts:
            holder = max(order, key=lambda name: self._priority(self.jobs[name]))
        else:
            holder = order[0]
        items = []
        for name in order:
            conditions = [condition("QuotaReserved", name == holder)]
            if name == holder:
                conditions.append(condition("Admitted", True))
            elif order.index(name) < order.index(holder):  # was admitted, then preempted
                conditions.append(condition("Evicted", True, reason="Preempted"))
            metadata = {"name": f"job-{name}", "namespace": self.namespace}
            metadata["ownerReferences"] = [{"kind": "Job", "name": name}]
            items.append({"kind": "Workload", "metadata": metadata, "status": {"conditions": conditions}})
        return items

    def request(self, method, url, **kwargs):
        path = urllib3.util.parse_url(url).path
        jobs = f"/apis/batch/v1/namespaces/{self.namespace}/jobs"
        if method == "POST" and path == jobs:
            job = json.loads(kwargs["body"])
            self.jobs[job["metadata"]["name"]] = job
            self.routes[(method, path)] = (201, job)
        elif method == "DELETE" and path.startswith(f"{jobs}/"):
            if self.jobs.pop(path.rsplit("/", 1)[1], None) is not None:
                self.routes[(method, path)] = (200, {"kind": "Status", "status": "Success"})
            else:
                self.routes.pop((method, path), None)  # answered 404 Not Found
        elif (
            method == "GET" and path == f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{self.namespace}/workloads"
        ):
            self.routes[(method, path)] = (200, {"kind": "WorkloadList", "items": self.workloads()})
        return super().request(method, url, **kwargs)


def condition(kind: str, true: bool, reason: str = "") -> dict:
    return {"type": kind, "status": str(true), "reason": reason, "lastTransitionTime": "2026-11-22T18:40:00Z"}


def preemption_target(kind_spec, preempts: bool, **options):
    target, _ = make_target(kind_spec, destructive=True, **options)
    cluster = FakeKueueCluster(kind_spec, target.namespace, preempts=preempts)
    target.api.api_client.rest_client.pool_manager = cluster
    return target, cluster


def test_preemption_deletes_its_jobs_and_frees_the_quota_when_it_passes(kind_spec):
    """Before, the low-priority Job (sleep 900) stayed, was re-admitted once the high one ended, and held 80%
    of the team's quota while the workload checks waited behind it."""
    target, cluster = preemption_target(kind_spec, preempts=True)
    passed = scheduling.cluster_preemption(target, target.ctx)
    assert "preempted a low-priority Job" in passed.summary
    assert cluster.jobs == {}, f"Jobs left behind: {sorted(cluster.jobs)}"
    assert not [w for w in cluster.workloads() if judge.holds_quota(w)]
    low = json.loads(cluster.bodies[0])
    limit = BY_NAME["scheduling.preemption"].timeout_s
    assert low["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "low"
    assert low["spec"]["activeDeadlineSeconds"] <= limit
    command = low["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert float(command.rsplit("sleep(", 1)[1].rstrip(")")) <= limit


def test_preemption_deletes_its_jobs_and_frees_the_quota_when_it_fails(kind_spec, monkeypatch):
    monkeypatch.setattr("park.conformance.kube.POLL_S", 0.01)
    target, cluster = preemption_target(kind_spec, preempts=False, timeout_s=1)
    with pytest.raises(CheckFailed, match="preemption of the low-priority Job not reached"):
        scheduling.cluster_preemption(target, target.ctx)
    assert cluster.jobs == {}, f"Jobs left behind: {sorted(cluster.jobs)}"
    assert not [w for w in cluster.workloads() if judge.holds_quota(w)]


# --- workloads.post-train: the judgement both targets apply, the cluster check, its evidence ---------------


POSTTRAIN_STEPS = workloads.POSTTRAIN_STEPS
POSTTRAIN_FAULT = workloads.POSTTRAIN_FAULT_AFTER_STEP


def posttrain_log(rewards: list[float] | None = None, deviation: float = 2e-6) -> list[dict[str, float]]:
    """A reward log as the workload writes it: one row per step (rising rewards unless given)."""
    rewards = rewards or [0.03 + 0.05 * step for step in range(POSTTRAIN_STEPS)]
    return [
        {
            "step": float(step),
            "reward_mean": reward,
            "reward_std": 0.05,
            "generate_s": 0.4,
            "score_s": 0.0,
            "learn_s": 0.3,
            "sync_s": 0.1,
            "logprob_max_abs_diff": deviation,
            "tokens_generated": 256.0,
        }
        for step, reward in enumerate(rewards, 1)
    ]


def posttrain_summary(**changes) -> dict:
    """summary.json of a run whose learner was killed in step FAULT + 1 and resumed from step FAULT."""
    return {
        "window": 3,
        "device": "cpu",
        "learner_restarts": 1,
        "injected_fault": {"step": POSTTRAIN_FAULT + 1, "rank": 1},
        "resumes": [{"from_step": POSTTRAIN_FAULT, "checkpoint": ".../step-000002"}],
        **changes,
    }


def judged_post_train(rows, summary) -> list[str]:
    return workloads.judge_post_train(
        rows, summary, margin=0.2, tolerance=1e-3, fault_after=POSTTRAIN_FAULT, steps=POSTTRAIN_STEPS
    )[0]


@pytest.mark.parametrize(
    ("rows", "summary", "problem"),
    [
        (posttrain_log(), posttrain_summary(), None),
        (
            posttrain_log([0.03] * POSTTRAIN_STEPS),
            posttrain_summary(),
            "reward rose 0.000 (first 3 steps 0.030, last 3 0.030), below the margin 0.2",
        ),
        (
            posttrain_log(deviation=0.12),
            posttrain_summary(),
            "generator off-policy after a weight sync: log-prob deviation 1.20e-01 > tolerance 0.001",
        ),
        (
            posttrain_log(),
            posttrain_summary(injected_fault=None, resumes=[]),
            f"no learner was killed in step {POSTTRAIN_FAULT + 1}",
        ),
        (
            posttrain_log(),
            posttrain_summary(resumes=[], learner_restarts=0),
            f"did not resume from the step-{POSTTRAIN_FAULT} checkpoint",
        ),
        (
            posttrain_log()[:3] + posttrain_log()[1:],
            posttrain_summary(),
            f"not each of 1..{POSTTRAIN_STEPS} once",
        ),
    ],
    ids=["passes", "flat-reward", "off-policy", "no-fault", "no-resume", "step-logged-twice"],
)
def test_post_train_judgement_names_what_failed(rows, summary, problem):
    """One rule per case: the reward gain is computed from the log (not taken from the job), the largest
    per-step log-prob deviation is compared with the tolerance, and the killed learner must have resumed."""
    problems = judged_post_train(rows, summary)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def write_posttrain_run(target: KubernetesTarget, rows: list[dict], summary: dict) -> str:
    """What the post-training job leaves in the stack's storage: rewards.csv and summary.json."""
    from park.workloads import storage

    run_uri = storage.join(target.spec.storage_uri, "posttrain", target.object_name("post-train"))
    header = list(rows[0])
    lines = [",".join(header), *(",".join(str(row[c]) for c in header) for row in rows)]
    storage.write_text(storage.join(run_uri, "rewards.csv"), "\n".join(lines) + "\n")
    storage.write_text(storage.join(run_uri, "summary.json"), json.dumps(summary))
    return run_uri


def test_post_train_on_a_cluster_submits_the_conformance_rayjob_and_judges_its_reward_log(
    kind_spec_with_storage, tmp_path
):
    target, pool = make_target(kind_spec_with_storage)
    pool.routes.update(workload_routes(target, "post-train", "RayJob"))
    write_posttrain_run(target, posttrain_log(), posttrain_summary())
    passed = workloads.cluster_post_train(target, target.ctx)
    assert (
        "admitted by Kueue and completed; reward 0.080 -> 0.530 (gain 0.450 >= margin 0.2)" in passed.summary
    )
    assert "log-prob deviation 2.0e-06 <= tolerance 0.001" in passed.summary
    assert (
        f"learner killed in step {POSTTRAIN_FAULT + 1} resumed from the step-{POSTTRAIN_FAULT}"
        in passed.summary
    )
    submitted = json.loads(pool.bodies[0])
    assert submitted["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research-queue"
    assert submitted["spec"]["suspend"] is True
    argv = submitted["spec"]["entrypoint"].split()
    assert argv[argv.index("--steps") + 1] == str(POSTTRAIN_STEPS)
    assert argv[argv.index("--fail-after-step") + 1] == str(POSTTRAIN_FAULT)
    assert passed.details["logprob_tolerance"] == 1e-3 and passed.details["logprob_max_abs_diff"] == 2e-6

    # the evidence: the reward curve as CSV and PNG beside report.md, linked from it
    from park.conformance.evidence import write_evidence
    from park.conformance.model import CheckResult

    result = CheckResult(BY_NAME["workloads.post-train"], Status.PASSED, passed.summary, passed.details)
    write_evidence(target.ctx, tmp_path / "ev", [result], {}, platform_under_test=True)
    csv_lines = (tmp_path / "ev" / "workloads.post-train.csv").read_text().splitlines()
    assert csv_lines[0] == "step,reward_mean,reward_std,logprob_max_abs_diff"
    assert len(csv_lines) == 1 + POSTTRAIN_STEPS
    assert (tmp_path / "ev" / "workloads.post-train.png").read_bytes().startswith(b"\x89PNG")
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "![post-training reward per step](workloads.post-train.png)" in report
    assert "[workloads.post-train.csv](workloads.post-train.csv)" in report


def test_post_train_on_a_cluster_fails_when_the_reward_did_not_rise_even_if_the_job_succeeded(
    kind_spec_with_storage,
):
    target, pool = make_target(kind_spec_with_storage)
    pool.routes.update(workload_routes(target, "post-train", "RayJob"))
    write_posttrain_run(target, posttrain_log([0.03] * POSTTRAIN_STEPS), posttrain_summary())
    with pytest.raises(CheckFailed, match=r"reward rose 0.000 .* below the margin 0.2") as failed:
        workloads.cluster_post_train(target, target.ctx)
    assert failed.value.details["curve"]["rows"], "the curve is kept as evidence of a failure too"


def test_post_train_on_a_cluster_without_bucket_access_needs_the_resume_in_the_job_output(kind_spec):
    """The runner may not read the bucket: the job's own verdict stands, but the resume after the killed
    learner must show in its output (the recorded submitter log, a training job's, has none)."""
    target, pool = make_target(kind_spec)
    routes = workload_routes(target, "post-train", "RayJob")
    pool.routes.update(routes)
    with pytest.raises(CheckFailed, match=rf"shows no resume from the step-{POSTTRAIN_FAULT} checkpoint"):
        workloads.cluster_post_train(target, target.ctx)
    log_route = next(key for key in routes if key[1].endswith("/log"))
    output = (
        f"resumed from the checkpoint of step {POSTTRAIN_FAULT}: file://...\n"
        "PASSED: reward 0.030 -> 0.540; log-prob deviation 2.00e-06 <= 0.001\n"
    )
    pool.routes[log_route] = (200, output)
    passed = workloads.cluster_post_train(target, target.ctx)
    assert "the job says: PASSED: reward 0.030 -> 0.540" in passed.summary


class StandInMachine:
    """The local target's machine without Ray: ``run_job`` leaves what a finished post-training job would."""

    def __init__(self, spec, leaves: tuple[list[dict], dict] | None, status: str = "FAILED"):
        self.spec, self.leaves, self.status = spec, leaves, status
        self.submitted: list[str] = []

    def require_gpu_if_asked(self) -> None:
        pass

    def time_left(self, budget: float) -> float:
        return budget

    def run_job(self, label, entrypoint, runtime_env, timeout_s):
        from park.workloads import storage

        self.submitted.append(entrypoint)
        argv = entrypoint.split()
        run_uri = storage.join(argv[argv.index("--storage-uri") + 1], argv[argv.index("--run-name") + 1])
        if self.leaves is not None:
            rows, summary = self.leaves
            header = list(rows[0])
            lines = [",".join(header), *(",".join(str(row[c]) for c in header) for row in rows)]
            storage.write_text(storage.join(run_uri, "rewards.csv"), "\n".join(lines) + "\n")
            storage.write_text(storage.join(run_uri, "summary.json"), json.dumps(summary))
        return self.status, "Job entrypoint command failed with exit code 1", "FAILED: reward rose 0.000"


def test_post_train_locally_fails_naming_the_margin_and_keeps_the_curve(kind_spec_with_storage):
    """The local check's fail path (its pass path runs for real in test_conformance_local.py): the job's
    rendered entrypoint with the learner fault is what it submits, and a flat reward fails with the figures."""
    ctx = RunContext(RunOptions(target="local", stack="kind"))
    machine = StandInMachine(
        kind_spec_with_storage, (posttrain_log([0.03] * POSTTRAIN_STEPS), posttrain_summary())
    )
    with pytest.raises(
        CheckFailed, match=r"reward rose 0.000 .* below the margin 0.2; .*\(job FAILED\)"
    ) as failed:
        workloads.local_post_train(machine, ctx)
    argv = machine.submitted[0].split()
    assert argv[:3] == ["python", "-m", "park.workloads.posttrain"]
    assert argv[argv.index("--fail-after-step") + 1] == str(POSTTRAIN_FAULT)
    assert failed.value.details["curve"]["rows"] and failed.value.details["job_status"] == "FAILED"
    ctx.close()


def test_post_train_locally_fails_when_the_job_left_no_reward_log(kind_spec_with_storage):
    ctx = RunContext(RunOptions(target="local", stack="kind"))
    with pytest.raises(
        CheckFailed, match=r"job FAILED and left no readable reward log and summary under file://"
    ):
        workloads.local_post_train(StandInMachine(kind_spec_with_storage, None), ctx)
    ctx.close()
