"""What ``park conformance --target kubernetes`` submits, where, and what the nodes it wakes cost.

Issue 11: against the shipped aws stack the run started two 8-GPU spot nodes (about $66/h) for a 3-epoch toy
training and a 2,000-row batch, without ``--destructive``; the same on gcp. Now train and batch run at the
conformance size (one GPU on the cheapest GPU pool), every pod the run submits names its pool, and the plan
(``--dry-run``, and before every cluster run) names the pools that scale and their $/h from
``park.components.cost``. No cluster is contacted here: the plan is built from the target's own builders.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
from park.components import cost
from park.components.manifests import all_documents
from park.components.spec import (
    GPU_RESOURCE,
    POOL_LABEL,
    config_from_stack_file,
    parse_spec,
    resolve_stack_file,
)
from park.conformance.checks import select
from park.conformance.context import RunContext, RunOptions
from park.conformance.layers import scheduling, workloads
from park.conformance.plan import build_plan, pod_groups
from park.conformance.targets import KubernetesTarget
from park.workloads import cluster, render_workloads
from schemas import assert_valid_custom_resource, shipped_specs
from test_admissibility import PodSet, Queues, admit
from typer.testing import CliRunner

from park.cli import app

SPECS = shipped_specs()
GPU_STACKS = sorted(name for name, spec in SPECS.items() if spec.has_gpus)
RUNNER = CliRunner()


def offline_target(spec, **options) -> KubernetesTarget:
    ctx = RunContext(RunOptions(target="kubernetes", stack=spec.cluster_name, **options))
    return KubernetesTarget.offline(ctx, spec, f"stacks/{spec.cluster_name}.yaml")


def variant(stack: str, edit) -> object:
    """The shipped stack's config after ``edit(config)``, parsed and checked."""
    config = copy.deepcopy(config_from_stack_file(resolve_stack_file(stack)))
    edit(config)
    return parse_spec(config)


def worker_groups(obj: dict) -> list[dict]:
    cluster_spec = obj["spec"].get("rayClusterSpec") or obj["spec"]["rayClusterConfig"]
    return cluster_spec["workerGroupSpecs"]


def gpus_asked(obj: dict) -> int:
    """nvidia.com/gpu the object's workers hold in all at their initial size."""
    total = 0
    for group in worker_groups(obj):
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        total += group["replicas"] * int(limits.get(GPU_RESOURCE, 0))
    return total


def smallest_gpu_pools(spec) -> set[str]:
    fewest = min(spec.gpus_per_node(p) for p in spec.gpu_pools if p.role == "workers")
    return {p.name for p in spec.gpu_pools if p.role == "workers" and spec.gpus_per_node(p) == fewest}


def big_spot_pools(spec) -> set[str]:
    """Pools of 8-GPU spot nodes: nothing of a conformance run belongs there."""
    return {p.name for p in spec.gpu_pools if p.spot and spec.gpus_per_node(p) >= 8}


# --- the dry run --------------------------------------------------------------------------------------


def dry_run(*args: str):
    return RUNNER.invoke(app, ["conformance", "--target", "kubernetes", *args, "--dry-run"])


@pytest.mark.parametrize(
    ("stack", "scales", "destructive_scales"),
    [
        ("aws", {}, {"l4-shared": 1}),
        ("gcp", {"l4": 1}, {"l4": 1}),
    ],
)
def test_dry_run_names_the_pools_that_scale_and_their_hourly_cost(stack, scales, destructive_scales):
    """The plan lists each pool the run grows (nodes and instance type) and the $/h park cost computes for
    exactly those nodes; what --destructive would add comes on its own line. Exit 0, no cluster needed.
    Before, there was no --dry-run and a run said nothing of the 8-GPU spot nodes it started."""
    spec = SPECS[stack]
    result = dry_run("--stack", stack)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "nothing was contacted or created" in out
    expected = cost.scale_up_cost(spec, scales)
    for line in expected.lines:
        assert f"{line.pool}: +{line.nodes} x {line.instance_type}" in out
    if scales:
        assert f"total: ${expected.usd_per_hour:,.2f}/h" in out
        assert expected.usd_per_hour > 0
    else:
        assert "no pool scales up: no added node cost" in out
    _, destructive_part = out.split("--destructive adds ", 1)
    assert (
        "infrastructure.cluster-autoscaling" in destructive_part
        and "scheduling.preemption" in destructive_part
    )
    if destructive_scales != scales:
        with_destructive = cost.scale_up_cost(spec, destructive_scales)
        assert f"total: ${with_destructive.usd_per_hour:,.2f}/h" in destructive_part
    else:
        assert "no further node" in destructive_part
    for pool in big_spot_pools(spec):  # named in the pool table, with nothing added
        assert re.search(rf"^  {re.escape(pool)} .* 0 +\+0 +-$", out, re.MULTILINE), out


def test_the_plan_is_what_a_destructive_run_adds():
    result = dry_run("--stack", "aws", "--destructive")
    assert result.exit_code == 0, result.output
    expected = cost.scale_up_cost(SPECS["aws"], {"l4-shared": 1})
    assert f"total: ${expected.usd_per_hour:,.2f}/h" in result.output
    assert "run             infrastructure.cluster-autoscaling" in result.output
    assert "--destructive adds" not in result.output


@pytest.mark.parametrize("args", [["--stack", "nosuch"], [], ["--stack", "aws", "--team", "nobody"]])
def test_a_dry_run_that_cannot_plan_exits_2_with_one_line(args):
    result = dry_run(*args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output


def test_the_plan_follows_only_and_skip():
    result = dry_run("--stack", "gcp", "--only", "workloads.train")
    assert result.exit_code == 0, result.output
    assert "workloads.train: RayJob" in result.output
    assert "workloads.batch" not in result.output and "accelerators.gpu-visible" not in result.output


# --- the conformance size ------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_train_and_batch_ask_for_at_most_one_gpu_on_the_smallest_gpu_pool(stack):
    """Before, the conformance RayJobs were the reference ones: two worker pods of a whole 8-GPU spot node."""
    spec = SPECS[stack]
    target = offline_target(spec)
    for rayjob in (workloads.train_rayjob(target), workloads.batch_rayjob(target)):
        assert gpus_asked(rayjob) <= 1, rayjob["metadata"]["name"]
        (group,) = worker_groups(rayjob)
        assert group["template"]["spec"]["nodeSelector"][POOL_LABEL] in smallest_gpu_pools(spec)
        assert_valid_custom_resource(rayjob)
    assert "--num-workers 1 " in workloads.train_rayjob(target)["spec"]["entrypoint"]


def test_the_gpu_cap_holds_where_the_smallest_gpu_node_has_several():
    """A 4-GPU L4 node is still one GPU for the conformance workers (the reference size takes the node)."""

    def four_l4s(config):
        pool = next(p for p in config["nodePools"] if p["name"] == "l4")
        pool["gpusPerNode"] = 4

    spec = variant("gcp", four_l4s)
    target = offline_target(spec)
    assert gpus_asked(workloads.train_rayjob(target)) == 1
    reference = render_workloads(spec)[0]
    assert gpus_asked(reference) > 1, "the reference size should still take whole nodes"


def test_on_demand_before_spot_at_the_same_gpu_count():
    def spot_l4_first(config):
        config["nodePools"].insert(
            1,
            {
                "name": "l4-spot",
                "accelerator": "nvidia-l4",
                "gpusPerNode": 1,
                "spot": True,
                "minNodes": 0,
                "maxNodes": 2,
            },
        )
        config["teams"][0]["quotas"].append({"pool": "l4-spot", "cpu": 4, "memory": "16Gi", "gpus": 1})

    spec = variant("aws", spot_l4_first)
    assert [p.name for p in cluster.gpu_pools_by_cost(spec)] == ["l4-shared", "l4-spot", "h100-spot"]
    assert cluster.proving_pool(spec).name == "l4-shared"


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_the_reference_render_is_unchanged(stack):
    """``park render --workloads`` keeps its shape: workers on the default pool, no pinned submitter."""
    spec = SPECS[stack]
    for rayjob in render_workloads(spec)[:2]:
        assert "submitterPodTemplate" not in rayjob["spec"]
        (group,) = worker_groups(rayjob)
        assert group["template"]["spec"]["nodeSelector"][POOL_LABEL] == cluster.default_worker_pool(spec).name
        assert group["replicas"] == min(2, cluster.default_worker_pool(spec).max_nodes)


# --- where every pod of the run goes ---------------------------------------------------------------------


def job_pod_sets(job: dict) -> list[PodSet]:
    """Kueue's PodSet of a batch/v1 Job: its pod template, ``parallelism`` times (pkg/controller/jobs/job,
    v0.19.2 ``PodSets``)."""
    return [PodSet("main", job["spec"].get("parallelism", 1), job["spec"]["template"]["spec"])]


@pytest.mark.parametrize("destructive", [False, True])
@pytest.mark.parametrize("stack", sorted(SPECS))
def test_every_pod_the_run_submits_names_its_pool_and_none_is_an_8_gpu_spot_pool(stack, destructive):
    """Each pod carries a nodeSelector for a pool, and Kueue (the flavor-assignment model of
    tests/test_admissibility.py, Kueue v0.19.2) admits each queued object there, head to submitter. Before,
    the RayJobs' submitters and the admission Job had no pool, so Kueue gave them the first flavor with room:
    the 8-GPU spot pool."""
    spec = SPECS[stack]
    plan = build_plan(offline_target(spec, destructive=destructive), select())
    queues = Queues.of(all_documents(spec))
    target = offline_target(spec, destructive=destructive)
    banned = big_spot_pools(spec)
    for planned in plan.objects:
        for group in planned.pods:
            assert group.pool is not None, f"{planned.name} {group.role} names no pool"
            assert group.pool not in banned, f"{planned.name} {group.role} on {group.pool}"
    for check in plan.checks:
        if check.status != "run":
            continue
        for obj, note in target.planned_objects(check.name):
            if obj["kind"] == "Pod" or note:
                continue
            if obj["kind"] == "Job":
                flavors = queues.assign(queues.cluster_queue_for(obj), job_pod_sets(obj))
            else:
                flavors = admit(queues, obj)
            assert not set(flavors.values()) & banned, (obj["metadata"]["name"], flavors)
    assert not {p.pool for p in plan.pools if p.pool in banned and p.peak_nodes}


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_the_run_s_ray_workloads_fit_their_team_queues(stack):
    """The admissibility rules of tests/test_admissibility.py (Kueue v0.19.2) hold for what conformance
    submits, at the initial size and, for autoscaled groups, at the ceiling."""
    spec = SPECS[stack]
    target = offline_target(spec)
    queues = Queues.of(all_documents(spec))
    for obj in (
        workloads.train_rayjob(target),
        workloads.batch_rayjob(target),
        workloads.serve_rayservice(target),
        scheduling.gang_rayjobs(target)[1],
    ):
        admit(queues, obj)
        admit(queues, obj, at_ceiling=True)


def test_pod_groups_count_what_kuberay_adds():
    """The default submitter (KubeRay v1.7.0 common/job.go) has no pool; an autoscaling head carries the
    sidecar."""
    rayjob = render_workloads(SPECS["aws"])[0]
    *_, submitter = pod_groups(rayjob)
    assert (submitter.role, submitter.pool, submitter.shape) == ("submitter", None, "500m CPU, 200Mi")
    head = pod_groups(next(d for d in render_workloads(SPECS["aws"]) if d["kind"] == "RayService"))[0]
    assert head.shape == "1.5 CPU, 2560Mi"


# --- said before a run starts -----------------------------------------------------------------------------


def test_a_cluster_run_announces_the_plan_before_its_first_check(monkeypatch, tmp_path):
    """The CLI prints the pools and $/h before any check runs; results.json records the planned figures."""
    from park.conformance import session
    from test_conformance_kube import KIND_ROUTES, replay_api

    spec = SPECS["gcp"]
    events: list[str] = []

    def connect(ctx):
        api, _ = replay_api(KIND_ROUTES)
        return KubernetesTarget(ctx, api, spec, "stacks/Pulumi.gcp.yaml", {"gitVersion": "v1.33.1"})

    monkeypatch.setattr(KubernetesTarget, "connect", staticmethod(connect))

    class Listener:
        def started(self, result):
            events.append(f"started {result.check.name}")

        def finished(self, result):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    # the GPU probe wakes the l4 pool; the replayed cluster refuses to create it, which is fine here
    options = RunOptions(
        target="kubernetes",
        stack="gcp",
        only=("infrastructure.nodes", "accelerators.gpu-visible"),
        out_dir=tmp_path,
        timeout_s=20,  # the refused GPU probe waits out what is left of it; the plan comes before any check
    )
    outcome = session.run(
        options,
        listener_factory=lambda results: Listener(),
        on_plan=lambda plan: events.append(f"plan {plan.added}"),
    )
    assert events[:2] == ["plan {'l4': 1}", "started infrastructure.nodes"]
    environment = json.loads((tmp_path / "results.json").read_text())["environment"]
    assert environment["planned_scale_up"] == {"l4": 1}
    assert environment["planned_scale_up_usd_per_hour"] == pytest.approx(
        cost.scale_up_cost(spec, {"l4": 1}).usd_per_hour
    )
    log = (tmp_path / "e2e.log").read_text()
    assert log.index("l4: +1 x g2-standard-8") < log.index("=== infrastructure.nodes: started")
    assert outcome.exit_code in (0, 1)


def test_every_check_that_creates_something_is_planned():
    """A check whose function creates objects (``create``, ``run_pod``, ``run_rayjob``) but that planned_objects
    does not know would make the plan leave out what it starts."""
    import inspect

    from park.conformance.targets import KUBERNETES_CHECKS

    target = offline_target(SPECS["aws"], destructive=True)
    for name, function in KUBERNETES_CHECKS.items():
        source = inspect.getsource(function)
        creates = any(
            call in source for call in ("cluster.create(", "cluster.run_pod(", "run_rayjob(cluster")
        )
        assert bool(target.planned_objects(name)) == creates, name
