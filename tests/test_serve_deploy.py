"""The serving RayService: valid against the KubeRay 1.7 CRD, sized for its models, queued through Kueue, and
its serveConfigV2 deployed unchanged through Serve's REST deploy API on a real `ray start --head`.

There is no Kubernetes here, so KubeRay's part (start the RayCluster, PUT serveConfigV2 to the head's
dashboard) is played by the session's local head (tests/conftest.py) and Serve's REST API — the same API
KubeRay calls. The serveConfigV2 is the kind stack's as rendered by ``build_rayservice``, with one change made on
the spec before rendering: the model source (``file:///mnt/park-storage/models/tiny-llama``, a host folder of
the kind nodes, absent here) points at a tiny Llama built in tmp. The Serve HTTP proxy is started first on a free port
(``serve.start``, as the RayService's head does on 8000), so the config itself is deployed as rendered.
That such a config deploys and answers a chat completion (as transformers' greedy decoding does) is proven by
the local conformance run, once, in tests/test_conformance_local.py.
"""

from __future__ import annotations

import math
import time

import httpx
import pytest
import yaml
from park.components.spec import GPU_RESOURCE, POOL_LABEL, ServedModel, SpecError
from park.workloads import cluster
from park.workloads.serve import manifest
from park.workloads.serve.app import APP_NAME, IMPORT_PATH
from park.workloads.serve.config import serve_config
from schemas import assert_valid_custom_resource, shipped_specs

SPECS = shipped_specs()
STACKS = sorted(SPECS)
DEPLOY_FAIL_S = 240
"""A bad model path fails in the app builder, before vLLM is imported; the wait is the build task's start."""


def worker_group(rayservice: dict) -> dict:
    (group,) = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    return group


def worker_container(rayservice: dict) -> dict:
    (container,) = worker_group(rayservice)["template"]["spec"]["containers"]
    return container


# --- the manifest, without Ray --------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_rayservice_matches_the_rayservice_crd(stack):
    assert_valid_custom_resource(manifest.build_rayservice(SPECS[stack]))


@pytest.mark.parametrize("stack", STACKS)
def test_serve_config_v2_is_exactly_the_serve_config(stack):
    rayservice = manifest.build_rayservice(SPECS[stack])
    assert yaml.safe_load(rayservice["spec"]["serveConfigV2"]) == serve_config(SPECS[stack])


@pytest.mark.parametrize("stack", STACKS)
def test_serve_config_passes_serves_own_schema(stack):
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(serve_config(SPECS[stack]))
    (application,) = config.applications
    assert (application.name, application.import_path) == (APP_NAME, IMPORT_PATH)


@pytest.mark.parametrize("stack", STACKS)
def test_every_models_replicas_fit_the_worker_pods(stack):
    spec = SPECS[stack]
    layout = manifest.plan(spec, spec.default_team)
    group = worker_group(manifest.build_rayservice(spec))
    assert group["maxReplicas"] * layout.replicas_per_pod >= sum(m.max_replicas for m in spec.models)
    assert group["minReplicas"] * layout.replicas_per_pod >= sum(m.min_replicas for m in spec.models)
    assert group["template"]["spec"]["nodeSelector"] == {POOL_LABEL: layout.pool.name}
    worker_cpus = float(worker_container(manifest.build_rayservice(spec))["resources"]["limits"]["cpu"])
    assert worker_cpus >= layout.replicas_per_pod * manifest.REPLICA_CPUS


def test_kind_serves_on_the_cpu_pool_without_gpus():
    rayservice = manifest.build_rayservice(SPECS["kind"])
    assert worker_group(rayservice)["template"]["spec"]["nodeSelector"] == {POOL_LABEL: "cpu"}
    assert GPU_RESOURCE not in worker_container(rayservice)["resources"]["limits"]
    assert "enableInTreeAutoscaling" not in rayservice["spec"]["rayClusterConfig"], (
        "1..1 replicas: nothing to scale"
    )


def test_fractional_gpu_models_share_a_gpu_pod_and_autoscale():
    """aws: gpuFraction 0.25, 1..4 replicas -> the on-demand L4 pool (not the H100 spot pool), time-sliced
    4 ways: each pod holds one slice, which one 0.25 replica fills (tests/test_gpu_sharing.py has the
    memory budget), and the autoscaler between the minimum and maximum pod counts."""
    spec = SPECS["aws"]
    (model,) = spec.models
    rayservice = manifest.build_rayservice(spec)
    group = worker_group(rayservice)
    layout = manifest.plan(spec, spec.default_team)
    assert layout.pool.name == "l4-shared"
    assert worker_container(rayservice)["resources"]["limits"][GPU_RESOURCE] == "1"
    assert layout.replicas_per_pod == 1
    assert group["maxReplicas"] == math.ceil(model.max_replicas / layout.replicas_per_pod)
    assert group["minReplicas"] == math.ceil(model.min_replicas / layout.replicas_per_pod)
    assert rayservice["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    args = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"][0]["args"]
    assert args["models"][0]["gpus"] == 0.25


def test_whole_gpu_model_takes_one_replica_per_gpu():
    spec = SPECS["gcp"]
    layout = manifest.plan(spec, spec.default_team)
    assert layout.pool.name == "l4" and layout.replicas_per_pod == 1
    assert layout.max_workers == spec.models[0].max_replicas


def test_rayservice_is_queued_for_the_team_and_upgrades_without_downtime():
    spec = SPECS["kind"]
    rayservice = manifest.build_rayservice(spec, team="serving")
    serving = next(t for t in spec.teams if t.name == "serving")
    assert rayservice["metadata"]["namespace"] == serving.namespace_name
    assert rayservice["metadata"]["labels"][cluster.QUEUE_LABEL] == serving.local_queue
    assert rayservice["metadata"]["labels"][cluster.PRIORITY_LABEL] == serving.default_priority
    assert rayservice["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    low = manifest.build_rayservice(spec, team="serving", priority="low")
    assert low["metadata"]["labels"][cluster.PRIORITY_LABEL] == "low"


def test_unknown_team_is_a_spec_error():
    with pytest.raises(SpecError, match="unknown team 'nobody'"):
        manifest.build_rayservice(SPECS["kind"], team="nobody")


def test_a_replica_too_big_for_any_pool_is_a_spec_error():
    spec = SPECS["aws"]
    huge = spec.models[0].model_copy(update={"gpu_fraction": 16.0})
    with pytest.raises(SpecError, match="^models: a replica needs 16 GPUs"):
        manifest.build_rayservice(spec.model_copy(update={"models": [huge]}))


def test_building_is_pure():
    assert manifest.build_rayservice(SPECS["aws"]) == manifest.build_rayservice(SPECS["aws"])


# --- serveConfigV2 on a real Ray head, through Serve's REST deploy API -----------------------------


def kind_spec_serving(source: str):
    """The kind stack with its model's source pointed elsewhere (the only change to what is rendered)."""
    spec = SPECS["kind"]
    (model,) = spec.models
    moved: ServedModel = model.model_copy(update={"source": source})
    return spec.model_copy(update={"models": [moved]})


def rendered_serve_config(source: str) -> dict:
    return yaml.safe_load(manifest.build_rayservice(kind_spec_serving(source))["spec"]["serveConfigV2"])


@pytest.fixture(scope="module")
def serving_head(ray_head, local_ray):
    """The session's Ray head (tests/conftest.py) with Serve's proxy started on a free port (what `serve start`
    does, from this module's driver: no extra interpreter); Serve is shut down again with the module."""
    from park.conformance.local_ray import free_ports
    from ray import serve

    http_port = free_ports(1)[0]
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    try:
        yield ray_head, f"http://127.0.0.1:{http_port}"
    finally:
        serve.shutdown()


def deploy(dashboard: str, config: dict) -> None:
    response = httpx.put(f"{dashboard}/api/serve/applications/", json=config, timeout=60)
    assert response.status_code == 200, (
        f"Serve refused the config: {response.status_code} {response.text[:500]}"
    )


def wait_for_app(dashboard: str, timeout_s: float, until: set[str]) -> dict:
    deadline = time.monotonic() + timeout_s
    application: dict = {}
    while time.monotonic() < deadline:
        details = httpx.get(f"{dashboard}/api/serve/applications/", timeout=30).json()
        application = details.get("applications", {}).get(APP_NAME, {})
        if application.get("status") in until:
            return application
        time.sleep(2)
    pytest.fail(
        f"application {APP_NAME} not in {until} within {timeout_s} s: "
        f"{application.get('status')} {application.get('message', '')[-1000:]}"
    )


@pytest.mark.ray
def test_missing_model_path_fails_the_deploy_naming_the_path(serving_head, tmp_path):
    head, _ = serving_head
    missing = tmp_path / "models" / "tiny-llama"
    deploy(head.dashboard_url, rendered_serve_config(missing.as_uri()))
    application = wait_for_app(head.dashboard_url, DEPLOY_FAIL_S, {"DEPLOY_FAILED", "RUNNING"})
    assert application["status"] == "DEPLOY_FAILED"
    assert f"models[0].source ('tiny-llama'): model path '{missing}' does not exist" in application["message"]
