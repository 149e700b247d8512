"""Infrastructure: the machine or the cluster's nodes are what the stack says.

- local: ``infrastructure.host`` reads this host's prerequisites through pytest-testinfra's ``local://``.
- cluster: nodes per pool, their labels and taints, the GPUs they advertise, and (destructive) a GPU pool
  growing under the autoscaler.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from typing import Any

from park.components.spec import GPU_RESOURCE, NodePool
from park.conformance import judgements as judge
from park.conformance.context import RunContext
from park.conformance.kube import KubeCluster, judged, wait_until
from park.conformance.layers.table import CheckTable
from park.conformance.local import LocalMachine, tail
from park.conformance.local_ray import local_environment
from park.conformance.model import CheckFailed, NotApplicable, Passed

checks = CheckTable("infrastructure")

MIN_PYTHON = (3, 11)
MIN_SHM_GIB = 1.0
"""Ray's object store and PyTorch's data loaders live in /dev/shm; Docker's default 64 MiB is too small."""
MIN_DISK_GIB = 5.0
MIN_MEMORY_GIB = 6.0
"""vLLM's CPU engine (1 GiB KV cache), two Ray Train workers and the Ray head side by side."""
MIN_CPUS = 2


# --- infrastructure.host --------------------------------------------------------------------------------


@checks.local("infrastructure.host")
def local_host(machine: LocalMachine, ctx: RunContext) -> Passed:
    import testinfra  # the conformance extra: imported when the check runs

    host = testinfra.get_host("local://")
    python = shutil.which("python", path=local_environment()["PATH"]) or sys.executable
    problems: list[str] = []
    facts: dict[str, Any] = {"python_path": python}

    probe = host.run(
        f"{shlex.quote(python)} -c "
        + shlex.quote(
            "import json, sys, ray, park.workloads; "
            "print(json.dumps([list(sys.version_info[:3]), ray.__version__]))"
        )
    )
    if probe.rc != 0:
        problems.append(
            f"{python} cannot import ray and park.workloads (the Ray jobs run with it): "
            f"{tail(probe.stderr, 3)}"
        )
    else:
        version, ray_version = json.loads(probe.stdout.strip().splitlines()[-1])
        facts["python"] = ".".join(map(str, version))
        facts["ray"] = ray_version
        if tuple(version[:2]) < MIN_PYTHON:
            problems.append(f"Python {facts['python']} is older than {'.'.join(map(str, MIN_PYTHON))}")

    shm = host.mount_point("/dev/shm")
    if not shm.exists:
        problems.append("/dev/shm is not mounted; Ray's object store needs it (docker run --shm-size=2g)")
    else:
        facts["shm_filesystem"] = shm.filesystem
        facts["shm_gib"] = _df_avail_gib(host, "/dev/shm")
        if shm.filesystem != "tmpfs":
            problems.append(f"/dev/shm is {shm.filesystem}, not tmpfs (memory-backed)")
        if facts["shm_gib"] < MIN_SHM_GIB:
            problems.append(
                f"/dev/shm has {facts['shm_gib']:.2f} GiB free, below {MIN_SHM_GIB:g} GiB "
                f"(docker run --shm-size=2g, or a Memory emptyDir in a pod)"
            )
    facts["disk_gib"] = _df_avail_gib(host, str(ctx.workdir))
    if facts["disk_gib"] < MIN_DISK_GIB:
        problems.append(
            f"{facts['disk_gib']:.1f} GiB free under {ctx.workdir}, below {MIN_DISK_GIB:g} GiB "
            f"(set TMPDIR to a bigger disk)"
        )
    meminfo = host.file("/proc/meminfo").content_string
    available_kib = int(re.search(r"^MemAvailable:\s+(\d+)", meminfo, re.MULTILINE).group(1))
    facts["memory_available_gib"] = round(available_kib / 2**20, 2)
    if facts["memory_available_gib"] < MIN_MEMORY_GIB:
        problems.append(
            f"{facts['memory_available_gib']:.1f} GiB memory available, below {MIN_MEMORY_GIB:g} GiB"
        )
    facts["cpus"] = int(host.check_output("nproc"))
    if facts["cpus"] < MIN_CPUS:
        problems.append(f"{facts['cpus']} CPU(s) usable, below {MIN_CPUS} (Ray Train runs two workers)")
    ctx.facts["cpus"] = facts["cpus"]
    if problems:
        raise CheckFailed("; ".join(problems), facts)
    return Passed(
        f"Python {facts.get('python')} with Ray {facts.get('ray')}; /dev/shm {facts['shm_gib']:.1f} "
        f"GiB tmpfs; {facts['disk_gib']:.0f} GiB disk and {facts['memory_available_gib']:.1f} GiB "
        f"memory free; {facts['cpus']} CPUs",
        facts,
    )


def _df_avail_gib(host, path: str) -> float:
    """Free space (GiB) of the filesystem holding ``path``, from POSIX ``df -Pk``."""
    output = host.check_output(f"df -Pk {shlex.quote(path)}")
    return round(int(output.splitlines()[-1].split()[3]) / 2**20, 2)


# --- infrastructure.nodes, node-labels-taints, gpus-allocatable -----------------------------------------


@checks.cluster("infrastructure.nodes")
def cluster_nodes(cluster: KubeCluster, ctx: RunContext) -> Passed:
    result = judge.judge_nodes(cluster.spec, cluster.nodes(fresh=True))
    pools = ", ".join(
        f"{name} {fact['ready']}/{fact['min']}-{fact['max']}"
        for name, fact in result.facts.items()
        if isinstance(fact, dict)
    )
    return judged(result, f"Ready nodes per pool (ready/min-max): {pools}")


@checks.cluster("infrastructure.node-labels-taints")
def cluster_labels_taints(cluster: KubeCluster, ctx: RunContext) -> Passed:
    result = judge.judge_labels_taints(cluster.spec, cluster.nodes())
    return judged(result, f"{result.facts['nodes_checked']} nodes carry their pool's labels and taints")


@checks.cluster("infrastructure.gpus-allocatable")
def cluster_gpus_allocatable(cluster: KubeCluster, ctx: RunContext) -> Passed:
    cluster.gpu_pool()  # not applicable without GPU pools
    result = judge.judge_gpus_allocatable(cluster.spec, cluster.nodes())
    return judged(result, f"GPU nodes advertise the expected {GPU_RESOURCE}: {result.facts}")


# --- infrastructure.cluster-autoscaling -----------------------------------------------------------------


def autoscaling_pool(cluster: KubeCluster) -> NodePool:
    """The cheapest GPU pool that can grow: one node more there proves the autoscaler."""
    pool = next((p for p in cluster.gpu_pools_cheapest_first() if p.min_nodes < p.max_nodes), None)
    if pool is None:
        raise NotApplicable("no GPU pool of the stack can grow (minNodes == maxNodes everywhere)")
    return pool


def autoscaling_pods(cluster: KubeCluster, pool: NodePool, before: int) -> list[dict]:
    """``before + 1`` pods, each taking every nvidia.com/gpu a node advertises (time-slices included), so
    the last one can only run on a new node."""
    gpus = cluster.spec.gpu_slots_per_node(pool)
    image = cluster.image(gpu=True)
    return [cluster.probe_pod(f"scale-{index}", pool, image, gpus=gpus) for index in range(before + 1)]


def _planned_autoscaling(cluster: KubeCluster) -> list[dict]:
    pool = autoscaling_pool(cluster)
    return autoscaling_pods(cluster, pool, cluster.ready_nodes(pool))


@checks.cluster("infrastructure.cluster-autoscaling", creates=_planned_autoscaling)
def cluster_autoscaling(cluster: KubeCluster, ctx: RunContext) -> Passed:
    pool = autoscaling_pool(cluster)
    before = cluster.ready_nodes(pool)
    if before >= pool.max_nodes:
        raise CheckFailed(
            f"pool {pool.name} already runs maxNodes={pool.max_nodes} nodes; nothing to scale up"
        )
    wanted = before + 1
    gpus = cluster.spec.gpu_slots_per_node(pool)
    pods = autoscaling_pods(cluster, pool, before)
    try:
        for pod in pods:
            cluster.create(pod)

        def grown() -> tuple[bool, str]:
            now = judge.count_ready_nodes(cluster.nodes(fresh=True), pool.name)
            return now >= wanted, f"{now} Ready node(s) in pool {pool.name} (was {before})"

        seen = wait_until(
            grown, cluster.time_left(1100), f"pool {pool.name} growing to {wanted} nodes", poll_s=10
        )
    finally:
        cluster.release(*pods)  # the autoscaler may now scale the pool back down
    return Passed(
        f"{wanted} pods of {gpus} GPU(s) each made pool {pool.name} scale up: {seen}",
        {"pool": pool.name, "before": before, "after": wanted},
    )
