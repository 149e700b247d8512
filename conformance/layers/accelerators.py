"""Accelerators: a workload gets the GPUs it asks for, and only those; Ray gets a memory-backed /dev/shm.

- local: ``accelerators.gpu-visible`` lists this host's GPUs (none: not applicable, the workloads use CPU).
- cluster: probe pods on a GPU pool (one that asks for a GPU, one that does not) and on the Ray workers'
  pool (their /dev/shm).
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes.utils.quantity import parse_quantity
from park.components.clouds import CAPABILITIES
from park.components.manifests import gpu
from park.components.spec import GPU_RESOURCE, POOL_LABEL, StackSpec
from park.conformance import judgements as judge
from park.conformance.context import RunContext
from park.conformance.kube import KubeCluster
from park.conformance.layers.table import CheckTable
from park.conformance.local import LocalMachine
from park.conformance.model import CheckFailed, NotApplicable, Passed

checks = CheckTable("accelerators")

VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
"""The variable through which the NVIDIA container toolkit grants GPUs (CUDA base images set it to ``all``)."""


# --- accelerators.gpu-visible ---------------------------------------------------------------------------


@checks.local("accelerators.gpu-visible")
def local_gpu_visible(machine: LocalMachine, ctx: RunContext) -> Passed:
    gpus = machine.gpus()
    if not gpus:
        why = ctx.facts.get("gpu_detection", "no GPU listed")
        if ctx.options.gpu == "require":
            raise CheckFailed(
                f"--gpu require, but this host shows no NVIDIA GPU ({why}); install the NVIDIA "
                f"driver or run with --gpu auto to accept the CPU fallback"
            )
        raise NotApplicable(
            f"no NVIDIA GPU on this host ({why}); the workloads fall back to CPU "
            f"(--gpu require makes this a failure)"
        )
    return Passed(f"{len(gpus)} GPU(s) visible to workloads: {'; '.join(gpus)}", {"gpus": gpus})


def gpu_probe(cluster: KubeCluster) -> dict:
    return cluster.probe_pod("gpu", cluster.gpu_pool(), cluster.image(gpu=True), gpus=1)


@checks.cluster("accelerators.gpu-visible", creates=lambda cluster: [gpu_probe(cluster)])
def cluster_gpu_visible(cluster: KubeCluster, ctx: RunContext) -> Passed:
    pool = cluster.gpu_pool()
    pod = gpu_probe(cluster)
    try:
        listing = cluster.run_pod(pod).run("nvidia-smi -L")
    finally:
        cluster.release(pod)
    gpus = judge.parse_nvidia_smi_list(listing.stdout)
    if listing.rc != 0 or len(gpus) != 1:
        raise CheckFailed(
            f"a pod granted 1 {GPU_RESOURCE} on pool {pool.name} sees {len(gpus)} GPU(s) "
            f"(nvidia-smi -L exit {listing.rc}: {(listing.stdout + listing.stderr)[:300]})",
            {"gpus": gpus},
        )
    return Passed(
        f"a pod granted one GPU on pool {pool.name} sees exactly one: {gpus[0]['name']} ({gpus[0]['uuid']})",
        {"gpus": gpus},
    )


# --- accelerators.gpu-isolation -------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuIsolation:
    """What the platform guarantees about GPUs a pod did not request on the stack's cloud, and so what
    ``accelerators.gpu-isolation`` demands. Read from ``CAPABILITIES[cloud].isolates_unrequested_gpus``, the
    same fact that sets the device plugin's ``deviceListStrategy``."""

    guaranteed: bool
    """No unprivileged container gets a GPU it did not request, whatever its environment says."""
    probe_visible_devices: str
    """NVIDIA_VISIBLE_DEVICES of the probe pod: ``all`` (the hostile case) where isolation is guaranteed,
    ``void`` (the toolkit's "no GPU, behave like runc") where only pods that do not ask are kept out."""
    device_list_strategy: str | None
    """The deviceListStrategy of the device plugin park-stack installs; None where the cloud runs its own."""
    not_guaranteed: str | None
    """What a person must know where isolation is not guaranteed."""
    broken_if_reached: str
    """What a probe that reaches a GPU means here."""


def gpu_isolation(spec: StackSpec) -> GpuIsolation:
    strategy = gpu.device_list_strategy(spec) if gpu.installs_device_plugin(spec) else None
    plugin = f"deviceListStrategy {strategy}" if strategy else "the cloud's own device plugin"
    if CAPABILITIES[spec.cloud].isolates_unrequested_gpus:
        return GpuIsolation(
            True,
            "all",
            strategy,
            None,
            f"the {spec.cloud} GPU nodes are declared to hand out GPUs only through the device plugin "
            f"({plugin}; CloudCapabilities.isolates_unrequested_gpus), yet the container runtime honoured "
            f"{VISIBLE_DEVICES} from an unprivileged container",
        )
    return GpuIsolation(
        False,
        "void",
        strategy,
        f"not guaranteed on {spec.cloud}: an unprivileged pod that sets {VISIBLE_DEVICES} (CUDA base images "
        f"set it to all) sees its node's GPUs without requesting one, because the nodes' NVIDIA container "
        f"toolkit accepts that variable from unprivileged containers (its packaged default); only pods that "
        f"tolerate the GPU pools' taints land there (docs/conformance.md, GPU isolation)",
        f"something besides the device plugin ({plugin}) hands out GPUs: a privileged default, a runtime "
        f"hook that ignores {VISIBLE_DEVICES}=void, or device specs passed to every container",
    )


def isolation_probe(cluster: KubeCluster) -> dict:
    """A pod on a GPU node that requests no GPU, with the NVIDIA_VISIBLE_DEVICES :func:`gpu_isolation`
    names."""
    pod = cluster.probe_pod("nogpu", cluster.gpu_pool(), cluster.image(gpu=True), gpus=0)
    pod["spec"]["containers"][0]["env"] = [
        {"name": VISIBLE_DEVICES, "value": gpu_isolation(cluster.spec).probe_visible_devices}
    ]
    return pod


@checks.cluster("accelerators.gpu-isolation", creates=lambda cluster: [isolation_probe(cluster)])
def cluster_gpu_isolation(cluster: KubeCluster, ctx: RunContext) -> Passed:
    pool = cluster.gpu_pool()
    isolation = gpu_isolation(cluster.spec)
    pod = isolation_probe(cluster)
    try:
        host = cluster.run_pod(pod)
        devices = host.run("ls /dev/nvidia[0-9]* 2>/dev/null")
        listing = host.run("nvidia-smi -L")
    finally:
        cluster.release(pod)
    gpus = judge.parse_nvidia_smi_list(listing.stdout)
    asked = f"{VISIBLE_DEVICES}={isolation.probe_visible_devices}"
    facts = {
        "devices": devices.stdout.split(),
        "gpus": gpus,
        "nvidia_smi_exit": listing.rc,
        "probe_env": asked,
        "isolation_guaranteed": isolation.guaranteed,
        "device_list_strategy": isolation.device_list_strategy,
    }
    if devices.stdout.strip() or gpus:
        reached = f"{len(gpus)} GPU(s)" if gpus else " ".join(devices.stdout.split())
        raise CheckFailed(
            f"a pod on GPU pool {pool.name} that requested no GPU and set {asked} can reach "
            f"{reached}: {isolation.broken_if_reached}",
            facts,
        )
    if isolation.guaranteed:
        return Passed(
            f"a pod on GPU pool {pool.name} that requested no GPU sees none, even with {asked}",
            facts,
        )
    facts["not_guaranteed"] = isolation.not_guaranteed
    return Passed(
        f"a pod on GPU pool {pool.name} that requested no GPU ({asked}) sees none; "
        f"{isolation.not_guaranteed}",
        facts,
    )


# --- accelerators.ray-shm -------------------------------------------------------------------------------


def shm_probe(cluster: KubeCluster) -> dict:
    """A pod on the Ray workers' pool mounting their Memory emptyDir where they mount it."""
    template = cluster.worker_template()
    shm_volume = next(v for v in template["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory")
    mount = next(
        m
        for c in template["containers"]
        for m in c.get("volumeMounts", [])
        if m["name"] == shm_volume["name"]
    )
    pool = cluster.spec.pool(template["nodeSelector"][POOL_LABEL])
    return cluster.probe_pod(
        "shm", pool, template["containers"][0]["image"], volumes=[shm_volume], mounts=[mount]
    )


@checks.cluster("accelerators.ray-shm", creates=lambda cluster: [shm_probe(cluster)])
def cluster_ray_shm(cluster: KubeCluster, ctx: RunContext) -> Passed:
    pod = shm_probe(cluster)
    (shm_volume,) = pod["spec"]["volumes"]
    (mount,) = pod["spec"]["containers"][0]["volumeMounts"]
    expected = int(parse_quantity(shm_volume["emptyDir"]["sizeLimit"]))
    pool_name = pod["spec"]["nodeSelector"][POOL_LABEL]
    try:
        host = cluster.run_pod(pod)
        size = judge.shm_size_bytes(host.check_output(f"df -Pk {mount['mountPath']}"))
        filesystem = host.check_output(f"stat -f -c %T {mount['mountPath']}")
    finally:
        cluster.release(pod)
    if filesystem.strip() != "tmpfs" or size < expected * 0.99:
        raise CheckFailed(
            f"/dev/shm in a Ray worker pod is {filesystem.strip()} of {size / 2**30:.2f} GiB; the "
            f"RayJob asks for a Memory emptyDir of {expected / 2**30:.2f} GiB"
        )
    return Passed(
        f"/dev/shm in a Ray worker pod on pool {pool_name} is tmpfs of {size / 2**30:.2f} GiB, as the "
        f"RayJob asks",
        {"bytes": size},
    )
