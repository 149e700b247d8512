"""The shared RayCluster builder, Kueue labels and the train/batch RayJobs, for every shipped stack.

Pure functions of the spec: no Ray, no cluster. Every rendered RayJob / RayCluster is validated strictly
against the KubeRay 1.7 CRDs (../shared/schemas) with the project's validator.
"""

from __future__ import annotations

import importlib
import importlib.util
import shlex

import pytest
import yaml
from kubernetes.utils.quantity import parse_quantity
from park.components import versions
from park.components.spec import GPU_RESOURCE, POOL_LABEL, RAY_SERVICE_ACCOUNT, STORAGE_CONFIGMAP, SpecError
from park.workloads import cluster, render_workloads
from park.workloads.batch import manifest as batch_manifest
from park.workloads.posttrain import manifest as posttrain_manifest
from park.workloads.train import manifest as train_manifest
from schemas import assert_valid_custom_resource, shipped_specs

SPECS = shipped_specs()
STACKS = sorted(SPECS)


def as_raycluster(spec_dict: dict) -> dict:
    return {"apiVersion": versions.RAY_API_VERSION, "kind": "RayCluster",
            "metadata": {"name": "probe", "namespace": "research"}, "spec": spec_dict}


def pod_spec(group: dict) -> dict:
    return group["template"]["spec"]


def only_container(group: dict) -> dict:
    (container,) = pod_spec(group)["containers"]
    return container


def default_cluster(stack: str, **overrides) -> dict:
    spec = SPECS[stack]
    pool = cluster.default_worker_pool(spec)
    args = {"workers": 2, **cluster.worker_shape(spec, pool, workers=2), **overrides}
    return cluster.ray_cluster_spec(spec, **args)


# --- ray_cluster_spec ---------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_ray_cluster_spec_matches_the_raycluster_crd(stack):
    assert_valid_custom_resource(as_raycluster(default_cluster(stack)))
    assert_valid_custom_resource(as_raycluster(default_cluster(stack, autoscaling=True, max_workers=4)))


@pytest.mark.parametrize("stack", STACKS)
def test_head_runs_on_the_system_pool_and_takes_no_work(stack):
    head = default_cluster(stack)["headGroupSpec"]
    system = next(p for p in SPECS[stack].node_pools if p.role == "system")
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert pod_spec(head)["nodeSelector"] == {POOL_LABEL: system.name}
    assert GPU_RESOURCE not in only_container(head)["resources"]["limits"]


@pytest.mark.parametrize("stack", STACKS)
def test_workers_select_their_pool_tolerate_its_taints_and_get_its_gpus(stack):
    spec = SPECS[stack]
    pool = cluster.default_worker_pool(spec)
    (group,) = default_cluster(stack)["workerGroupSpecs"]
    pod = pod_spec(group)
    assert pod["nodeSelector"] == {POOL_LABEL: pool.name}
    tolerated = {(t["key"], t["effect"]) for t in pod.get("tolerations", [])}
    assert {(t["key"], t["effect"]) for t in spec.node_taints(pool)} <= tolerated
    limits = only_container(group)["resources"]["limits"]
    if pool.has_gpus:
        assert int(limits[GPU_RESOURCE]) == (1 if pool.gpu_sharing else spec.gpus_per_node(pool))
        assert only_container(group)["image"] == versions.WORKLOAD_IMAGE_GPU
    else:
        assert GPU_RESOURCE not in limits
        assert only_container(group)["image"] == versions.WORKLOAD_IMAGE


def test_default_pool_is_the_first_gpu_pool_else_the_first_workers_pool():
    assert cluster.default_worker_pool(SPECS["aws"]).name == "h100-spot"
    assert cluster.default_worker_pool(SPECS["gcp"]).name == "a100-spot"
    assert cluster.default_worker_pool(SPECS["kind"]).name == "cpu"


@pytest.mark.parametrize("stack", STACKS)
def test_every_ray_pod_has_identity_storage_shm_and_metrics(stack):
    built = default_cluster(stack, shm_size="3Gi")
    for group in (built["headGroupSpec"], *built["workerGroupSpecs"]):
        pod = pod_spec(group)
        container = only_container(group)
        assert pod["serviceAccountName"] == RAY_SERVICE_ACCOUNT
        assert {"configMapRef": {"name": STORAGE_CONFIGMAP}} in container["envFrom"]
        shm = next(v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory")
        assert shm["emptyDir"]["sizeLimit"] == "3Gi"
        assert {"name": shm["name"], "mountPath": "/dev/shm"} in container["volumeMounts"]
        assert {"name": "metrics", "containerPort": 8080} in container["ports"]
        assert group["rayStartParams"]["metrics-export-port"] == "8080"


def test_kind_pods_mount_the_storage_claim_at_the_storage_path():
    spec = SPECS["kind"]
    built = default_cluster("kind")
    for group in (built["headGroupSpec"], *built["workerGroupSpecs"]):
        volume = next(v for v in pod_spec(group)["volumes"] if "persistentVolumeClaim" in v)
        assert {"name": volume["name"], "mountPath": spec.storage.local_path} in only_container(group)["volumeMounts"]
    assert spec.storage_uri == f"file://{spec.storage.local_path}"


def test_cloud_pods_mount_no_host_storage():
    for group in default_cluster("aws")["workerGroupSpecs"]:
        assert not any("persistentVolumeClaim" in v or "hostPath" in v for v in pod_spec(group)["volumes"])


def test_env_and_image_reach_every_container():
    built = default_cluster("kind", env={"A": "1"}, image="example/custom:1")
    for group in (built["headGroupSpec"], *built["workerGroupSpecs"]):
        assert {"name": "A", "value": "1"} in only_container(group)["env"]
        assert only_container(group)["image"] == "example/custom:1"


def test_autoscaling_sets_bounds_and_the_in_tree_autoscaler():
    built = default_cluster("kind", workers=1, autoscaling=True, max_workers=3)
    (group,) = built["workerGroupSpecs"]
    assert built["enableInTreeAutoscaling"] is True
    assert (group["minReplicas"], group["replicas"], group["maxReplicas"]) == (0, 1, 3)
    fixed = default_cluster("kind", workers=2)["workerGroupSpecs"][0]
    assert (fixed["minReplicas"], fixed["replicas"], fixed["maxReplicas"]) == (2, 2, 2)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"worker_gpus": 1}, "has no GPUs"),
    ({"worker_memory": "lots"}, "worker_memory"),
    ({"shm_size": "1 GB"}, "shm_size"),
    ({"worker_cpus": 0}, "worker_cpus"),
    ({"min_workers": 3}, "min_workers"),
])
def test_bad_arguments_are_clear_errors(overrides, message):
    spec = SPECS["kind"]
    args = {"workers": 2, "worker_cpus": 1, "worker_memory": "1Gi", **overrides}
    with pytest.raises(ValueError, match=message):
        cluster.ray_cluster_spec(spec, **args)


def test_workers_on_a_system_pool_are_refused():
    spec = SPECS["kind"]
    with pytest.raises(ValueError, match="role 'system'"):
        cluster.ray_cluster_spec(spec, pool=spec.pool("system"), workers=1, worker_cpus=1, worker_memory="1Gi")


def test_no_object_is_shared_inside_a_manifest():
    """YAML writes shared dicts as anchors and aliases (&id001), which reviewers and some tools reject."""
    text = yaml.safe_dump_all(render_workloads(SPECS["kind"]))
    assert "&id" not in text


# --- sizing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_workers_fit_a_node_and_the_team_quota(stack):
    """Sized to the quota of the team each workload is queued for (its namespace), not the first team's; a
    workload with several worker groups on one pool (post-training's learners and generators) fits it with
    all of them together."""
    spec = SPECS[stack]
    for job in render_workloads(spec):
        team = next(t for t in spec.teams if t.namespace_name == job["metadata"]["namespace"])
        cluster_spec = job["spec"].get("rayClusterSpec") or job["spec"]["rayClusterConfig"]
        per_pool: dict[str, list[float]] = {}
        for group in cluster_spec["workerGroupSpecs"]:
            pool = spec.pool(pod_spec(group)["nodeSelector"][POOL_LABEL])
            requests = only_container(group)["resources"]["requests"]
            shape = spec.offering(pool)
            vcpus, mem_gib = (shape.vcpus, shape.memory_gib) if shape else (2, 8)
            assert parse_quantity(requests["cpu"]) < vcpus, (job["metadata"]["name"], group["groupName"])
            assert parse_quantity(requests["memory"]) < mem_gib * 2**30, (job["metadata"]["name"], group["groupName"])
            pods = group["maxReplicas"] if cluster_spec.get("enableInTreeAutoscaling") else group["replicas"]
            total = per_pool.setdefault(pool.name, [0, 0])
            total[0] += parse_quantity(requests["cpu"]) * pods
            total[1] += parse_quantity(requests["memory"]) * pods
        for pool_name, (cpu, memory) in per_pool.items():
            quota = next((q for q in team.quotas if q.pool == pool_name), None)
            if quota is not None:
                assert cpu <= parse_quantity(quota.cpu), (job["metadata"]["name"], pool_name, cpu, quota.cpu)
                assert memory <= parse_quantity(quota.memory), (job["metadata"]["name"], pool_name)


@pytest.mark.parametrize("stack", STACKS)
def test_reference_workloads_go_to_the_team_a_platform_team_expects(stack):
    """Serving on the serving team at its (high) priority, so it can preempt training and batch in spikes;
    training, batch and post-training on the research team at its (normal) priority."""
    spec = SPECS[stack]
    teams = {t.name: t for t in spec.teams}
    expected = {"park-train": teams["research"], "park-batch": teams["research"],
                "park-posttrain": teams["research"], "park-serve": teams["serving"]}
    for doc in render_workloads(spec):
        team = expected[doc["metadata"]["name"]]
        labels = doc["metadata"]["labels"]
        assert (doc["metadata"]["namespace"], labels[cluster.QUEUE_LABEL], labels[cluster.PRIORITY_LABEL]) == (
            team.namespace_name, team.local_queue, team.default_priority)
    assert teams["serving"].default_priority == "high"


def test_without_those_teams_every_workload_goes_to_the_first_team():
    spec = SPECS["kind"]
    ml = spec.teams[0].model_copy(update={"name": "ml", "namespace": None})
    lone = spec.model_copy(update={"teams": [ml]})
    assert {(d["metadata"]["namespace"], d["metadata"]["labels"][cluster.QUEUE_LABEL])
            for d in render_workloads(lone)} == {("ml", "ml-queue")}


def test_render_workloads_overrides_team_and_priority_for_all():
    spec = SPECS["aws"]
    docs = render_workloads(spec, team="serving", priority="low")
    assert {(d["metadata"]["namespace"], d["metadata"]["labels"][cluster.PRIORITY_LABEL]) for d in docs} == {
        ("serving", "low")}
    assert {d["metadata"]["namespace"] for d in render_workloads(spec, priority="low")} == {"research", "serving"}
    with pytest.raises(SpecError) as err:
        render_workloads(spec, team="nobody")
    assert err.value.problems[0].path == "teams"
    with pytest.raises(SpecError) as err:
        render_workloads(spec, priority="urgent")
    assert err.value.problems[0].path == "priority"


# --- Kueue labels and images --------------------------------------------------------------------


def test_kueue_labels_name_the_team_queue_and_priority():
    spec = SPECS["aws"]
    research, serving = spec.teams
    assert cluster.kueue_labels(spec) == {cluster.QUEUE_LABEL: "research-queue", cluster.PRIORITY_LABEL: "normal"}
    assert cluster.kueue_labels(spec, serving)[cluster.PRIORITY_LABEL] == "high"
    assert cluster.kueue_labels(spec, research, priority="low")[cluster.PRIORITY_LABEL] == "low"


def test_a_team_without_default_priority_gets_no_priority_label():
    spec = SPECS["kind"].model_copy(update={"teams": [SPECS["kind"].teams[0].model_copy(
        update={"default_priority": None})]})
    assert cluster.kueue_labels(spec) == {cluster.QUEUE_LABEL: "research-queue"}


def test_unknown_priority_or_team_is_a_spec_error_with_its_path():
    with pytest.raises(SpecError) as err:
        cluster.kueue_labels(SPECS["kind"], priority="urgent")
    assert err.value.problems[0].path == "priority" and "known: high, normal, low" in str(err.value)
    with pytest.raises(SpecError, match="unknown team 'nobody'"):
        train_manifest.build_rayjob(SPECS["kind"], team="nobody")


def test_workload_image_comes_from_the_pins_and_their_override(monkeypatch):
    assert cluster.workload_image(SPECS["aws"], gpu=True) == versions.WORKLOAD_IMAGE_GPU
    assert cluster.workload_image(SPECS["kind"], gpu=False) == versions.WORKLOAD_IMAGE
    monkeypatch.setenv("PARK_WORKLOAD_IMAGE", "team.example/park:2")
    try:
        importlib.reload(versions)
        assert cluster.workload_image(SPECS["kind"], gpu=False) == "team.example/park:2"
        assert cluster.workload_image(SPECS["kind"], gpu=True) == "team.example/park:2-gpu"
    finally:
        monkeypatch.delenv("PARK_WORKLOAD_IMAGE")
        importlib.reload(versions)


# --- the RayJobs --------------------------------------------------------------------------------

BUILDERS = {"train": train_manifest.build_rayjob, "batch": batch_manifest.build_rayjob}


@pytest.mark.parametrize("workload", sorted(BUILDERS))
@pytest.mark.parametrize("stack", STACKS)
def test_rayjob_matches_the_rayjob_crd(stack, workload):
    assert_valid_custom_resource(BUILDERS[workload](SPECS[stack]))


@pytest.mark.parametrize("workload", sorted(BUILDERS))
@pytest.mark.parametrize("stack", STACKS)
def test_rayjob_is_queued_by_kueue_and_cleans_up_after_itself(stack, workload):
    job = BUILDERS[workload](SPECS[stack])
    team = SPECS[stack].default_team
    assert job["metadata"]["namespace"] == team.namespace_name
    assert job["metadata"]["labels"][cluster.QUEUE_LABEL] == team.local_queue
    assert job["metadata"]["labels"][cluster.PRIORITY_LABEL] == team.default_priority
    body = job["spec"]
    assert body["suspend"] is True and body["shutdownAfterJobFinishes"] is True
    assert body["submissionMode"] == "K8sJobMode"
    assert body["ttlSecondsAfterFinished"] > 0 and body["activeDeadlineSeconds"] > 0
    assert body["backoffLimit"] >= 1
    assert isinstance(yaml.safe_load(body["runtimeEnvYAML"])["env_vars"], dict)


@pytest.mark.parametrize("stack", STACKS)
def test_train_entrypoint_uses_the_stack_storage_and_every_worker(stack):
    spec = SPECS[stack]
    job = train_manifest.build_rayjob(spec)
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "park.workloads.train"]
    options = dict(zip(argv[3::2], argv[4::2]))
    assert options["--storage-uri"].startswith(spec.storage_uri)
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = only_container(group)["resources"]["limits"]
    per_pod = int(limits.get(GPU_RESOURCE, 1))
    assert int(options["--num-workers"]) == group["replicas"] * per_pod
    assert float(options["--cpus-per-worker"]) * per_pod <= parse_quantity(limits["cpu"])


@pytest.mark.parametrize("stack", STACKS)
def test_batch_entrypoint_reads_and_writes_the_stack_storage(stack):
    spec = SPECS[stack]
    argv = shlex.split(batch_manifest.build_rayjob(spec)["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "park.workloads.batch"]
    options = dict(zip(argv[3::2], argv[4::2]))
    assert options["--input-uri"].startswith(spec.storage_uri)
    assert options["--output-uri"].startswith(spec.storage_uri)
    assert options["--input-uri"] != options["--output-uri"]
    assert "--llm-model" not in options
    with_llm = batch_manifest.build_rayjob(spec, llm_model="/mnt/park-storage/models/tiny-llama")
    assert "--llm-model /mnt/park-storage/models/tiny-llama" in with_llm["spec"]["entrypoint"]


def test_render_workloads_is_pure_and_lists_every_workload():
    spec = SPECS["kind"]
    first, second = render_workloads(spec), render_workloads(spec)
    assert first == second
    names = [(d["kind"], d["metadata"]["name"]) for d in first]
    assert names[:3] == [("RayJob", train_manifest.NAME), ("RayJob", batch_manifest.NAME),
                         ("RayJob", posttrain_manifest.NAME)]
    if importlib.util.find_spec("park.workloads.serve.manifest") is not None:
        assert names[3][0] == "RayService"
