"""Serving on time-sliced GPUs: everything that can share one physical GPU stays within 0.9 of its memory.

The facts the budget rests on, each from upstream:

- Time-slicing gives each of a GPU's R pods one ``nvidia.com/gpu`` and the whole device: "nothing special is
  done to isolate workloads that are granted replicas from the same underlying GPU, and each workload has
  access to the GPU memory" (NVIDIA k8s-device-plugin v0.20.0 README.md, "Shared Access to GPUs"); with
  ``failRequestsGreaterThanOne`` a pod gets at most one slice (same section). GKE's time-sharing is the same.
- KubeRay starts the pod's Ray with ``num-gpus`` = the container's ``nvidia.com/gpu`` limit, a whole number
  (KubeRay v1.7.0 ray-operator/controllers/ray/common/pod.go), so a pod holding one slice has one Ray GPU.
- Ray packs fractional GPU bundles onto one device up to 1 GPU, in steps of 0.0001 (Ray 2.60
  ``ray_constants.MIN_RESOURCE_GRANULARITY``).
- vLLM's ``gpu_memory_utilization`` is a share of the whole device, per engine ("a per-instance limit", vLLM
  0.32.0 vllm/config/cache.py), and an engine that finds less free memory than its share does not start
  (vllm/v1/worker/utils.py).

So per physical GPU: pods that can share it (R on a time-sliced pool, else 1) x the replicas Ray can pack on
the one device a pod sees x each replica's ``gpu_memory_utilization``. The budget is computed from the
rendered artifacts (the RayService's worker pod and serveConfigV2, turned into Ray Serve LLM configs by the
serve app), never from the planner's own count.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from park.components.spec import (
    GPU_RESOURCE,
    POOL_LABEL,
    SpecError,
    StackSpec,
    config_from_stack_file,
    load_stack_file,
    parse_spec,
    project_root,
)
from park.workloads.serve import app as serve_app
from park.workloads.serve import manifest
from typer.testing import CliRunner

from park.cli import app as cli

STACK_FILES = {p.name.removeprefix("Pulumi.").removesuffix(".yaml"): p
               for p in (project_root() / "stacks").glob("Pulumi.*.yaml")}
SPECS = {name: load_stack_file(path) for name, path in STACK_FILES.items()}
BUDGET = 0.9
"""The issue's rule: all replicas on one physical GPU together ask vLLM for at most 0.9 of its memory."""
STEPS = 10_000
"""Ray's resource granularity, 0.0001 of a GPU, as integer steps."""


def _ray_configs(rayservice: dict, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The Ray Serve LLM configs the serve app builds from the RayService's serveConfigV2 (model files are
    not here: their existence check is skipped, nothing else)."""
    monkeypatch.setattr(serve_app, "check_local_model", lambda path: path)
    (application,) = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"]
    return serve_app.serving_args(application["args"])["llm_configs"]


def _most_memory_on_one_device(configs: list[dict]) -> float:
    """Ray's packing on one device, exactly: an unbounded knapsack of the replicas' GPU bundles (in Ray's
    steps) within 1 GPU, maximizing the vLLM memory shares they bring."""
    items = []
    for config in configs:
        bundles = [b.get("GPU", 0) for b in config["placement_group_config"]["bundles"]]
        if any(bundles):
            # a tensor-parallel replica puts one bundle, and one engine worker, on each of its devices
            items.append((math.ceil(bundles[0] * STEPS - 1e-6), config["engine_kwargs"]["gpu_memory_utilization"]))
    best = [0.0] * (STEPS + 1)
    for capacity in range(1, STEPS + 1):
        for size, memory in items:
            if size <= capacity:
                best[capacity] = max(best[capacity], best[capacity - size] + memory)
    return best[STEPS]


def memory_per_physical_gpu(spec: StackSpec, monkeypatch: pytest.MonkeyPatch) -> float:
    """Sum of ``gpu_memory_utilization`` of every replica that can land on one physical GPU of the serving
    pool: pods per GPU x replicas on the device a pod sees x utilization."""
    rayservice = manifest.build_rayservice(spec)
    (group,) = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    (container,) = group["template"]["spec"]["containers"]
    pod_gpus = int(container["resources"]["limits"].get(GPU_RESOURCE, 0))
    configs = _ray_configs(rayservice, monkeypatch)
    if pod_gpus == 0:
        assert not any(b.get("GPU") for c in configs for b in c["placement_group_config"]["bundles"]), (
            "replicas ask for GPUs in worker pods that have none"
        )
        return 0.0
    pool = spec.pool(group["template"]["spec"]["nodeSelector"][POOL_LABEL])
    slices = spec.gpu_slots_per_node(pool) // spec.gpus_per_node(pool)  # what the node advertises per GPU
    if slices > 1:
        assert pod_gpus == 1, "failRequestsGreaterThanOne: a pod on a time-sliced pool holds one slice"
    pods_per_gpu = slices  # every slice of one GPU may go to a different pod; without sharing a pod owns it
    return pods_per_gpu * _most_memory_on_one_device(configs)


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_replicas_sharing_a_physical_gpu_stay_within_its_memory(stack, monkeypatch):
    """aws before the fix: 4 pods per L4 x 4 replicas of 0.25 per pod x 0.225 = 3.6 L4s of memory."""
    used = memory_per_physical_gpu(SPECS[stack], monkeypatch)
    assert used <= BUDGET + 1e-9, f"{stack}: replicas that can share one GPU ask for {used:.3g} of its memory"


def test_aws_fills_its_time_sliced_l4_exactly():
    """The shipped aws model, 0.25 of an L4 on a pool sliced 4 ways: one replica per slice, 4 x 0.225."""
    spec = SPECS["aws"]
    layout = manifest.plan(spec, spec.default_team)
    assert (layout.pool.name, layout.replicas_per_pod) == ("l4-shared", 1)
    (application,) = manifest.serve_config(spec)["applications"]
    (model,) = application["args"]["models"]
    assert (model["gpus"], model["gpu_time_slices"]) == (0.25, 4)


# --- every fraction x slicing: accepted configs keep the budget, the others are rejected -------------

FRACTIONS = [0.05, 0.1, 0.125, 1 / 6, 0.2, 0.25, 1 / 3, 0.5, 1.0]
SLICES = [2, 3, 4, 7, 8]


def shipped_variant(stack: str, **changes: Any) -> StackSpec:
    """The shipped stack with some top-level park:* keys replaced, validated like any config."""
    return parse_spec({**config_from_stack_file(STACK_FILES[stack]), **changes})


def _variant(stack: str, pool_index: int, slices: int, *fractions: float) -> StackSpec:
    """The shipped stack with its serving pool time-sliced ``slices`` ways (more nodes, so the teams'
    GPU quotas still fit the pool's slots) and one served model per fraction, at most two replicas each
    (gcp's teams have two GPUs of quota on the pool)."""
    base = SPECS[stack]
    pools = [p.model_dump(by_alias=True, exclude_none=True) for p in base.node_pools]
    pools[pool_index] = {**pools[pool_index], "gpuSharing": {"replicas": slices}, "maxNodes": 16}
    source = base.models[0].source
    models = [{"name": f"m{i}", "source": source, "gpuFraction": f, "maxReplicas": 2} for i, f in enumerate(fractions)]
    return shipped_variant(stack, nodePools=pools, models=models)


@pytest.mark.parametrize("slices", SLICES)
@pytest.mark.parametrize("fraction", FRACTIONS, ids=lambda f: f"{f:.3g}")
@pytest.mark.parametrize(("stack", "pool_index"), [("aws", 2), ("gcp", 2)])
def test_a_fraction_is_accepted_exactly_when_its_replicas_keep_the_budget(stack, pool_index, fraction, slices,
                                                                          monkeypatch):
    if fraction * slices <= 1 + 1e-9:
        spec = _variant(stack, pool_index, slices, fraction)
        used = memory_per_physical_gpu(spec, monkeypatch)
        assert used <= BUDGET + 1e-9, f"{fraction:g} of a GPU sliced {slices} ways: {used:.4g} of its memory"
    else:
        with pytest.raises(SpecError) as caught:
            _variant(stack, pool_index, slices, fraction)
        paths = {p.path: p.reason for p in caught.value.problems}
        assert "models[0].gpuFraction" in paths, paths
        assert f"nodePools[{pool_index}].gpuSharing" in paths["models[0].gpuFraction"]


def test_two_models_on_one_time_sliced_gpu_keep_the_budget(monkeypatch):
    spec = _variant("aws", 2, 4, 0.25, 0.125)
    assert memory_per_physical_gpu(spec, monkeypatch) <= BUDGET + 1e-9


def test_a_time_sliced_pool_that_does_not_serve_is_not_checked():
    """Two GPUs per replica need the 8-GPU H100 pool; the sliced L4 pool is not where they run."""
    spec = shipped_variant("aws", models=[{"name": "big", "source": "org/big", "gpuFraction": 2}])
    assert manifest.serving_pool(spec).name == "h100-spot"


def test_the_spec_check_and_the_rayservice_agree_on_the_serving_pool():
    """One rule (``spec.serving_gpu_pool``): the pool the check names is the one the worker pods select."""
    from park.components.spec import serving_gpu_pool

    for stack in ("aws", "gcp"):
        spec = SPECS[stack]
        (group,) = manifest.build_rayservice(spec)["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        assert group["template"]["spec"]["nodeSelector"][POOL_LABEL] == serving_gpu_pool(spec).name


# --- park render on a stack file that oversubscribes -----------------------------------------------

RUNNER = CliRunner()


def _stack_file(tmp_path, **model_changes) -> str:
    aws = STACK_FILES["aws"]
    document = yaml.safe_load(aws.read_text())
    model = {**document["config"]["park:models"][0], **model_changes}
    document["config"]["park:models"][0] = {k: v for k, v in model.items() if v is not None}
    path = tmp_path / "Pulumi.oversubscribed.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    load_stack_file(aws)  # the unchanged stack is valid: whatever fails below is the change
    return str(path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"gpuFraction": 0.5},
            (
                "models[0].gpuFraction (model qwen2.5-0.5b-instruct): 0.5 GPU per replica oversubscribes "
                "time-sliced pool 'l4-shared': "
                "nodePools[2].gpuSharing.replicas is 4"
            ),
        ),
        (
            {"gpuFraction": None},
            ("models[0].gpuFraction (model qwen2.5-0.5b-instruct): 1 GPU per replica (the default) oversubscribes "
             "time-sliced pool 'l4-shared'"),
        ),
    ],
    ids=["half-an-l4", "default-whole-l4"],
)
def test_render_rejects_a_fraction_that_oversubscribes_a_time_sliced_gpu(tmp_path, change, expected):
    result = RUNNER.invoke(cli, ["render", _stack_file(tmp_path, **change)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].partition(": ")[2].startswith(expected), lines  # after FILE:LINE
    assert "set gpuFraction to 0.25 or less" in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
