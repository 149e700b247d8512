"""Every check of the suite, in the order they run, with what each proves.

Each check's functions live in its layer's module (:mod:`park.conformance.layers`), one per target it
applies to; a check a target has no function for is *not applicable* there. Selection by ``--only`` /
``--skip`` takes layer names or check names.
"""

from __future__ import annotations

from dataclasses import dataclass

from park.conformance.model import LAYERS, Check

SHORT_S = 30.0
"""Reading state: API lists, a command in a pod, a metrics scrape."""
MEDIUM_S = 180.0
"""Starting something small: a Ray head, a pod, a queue admission."""
LONG_S = 600.0
"""Running a workload end to end, or waiting for a node to join."""

RAY = ("operators.ray-head", "operators.kuberay", "operators.kueue")
"""What the workloads need: the local Ray head on the local target, KubeRay and Kueue on clusters. A needed
check that is not applicable on the target counts as satisfied."""

CHECKS: tuple[Check, ...] = (
    # -- infrastructure --
    Check(
        "infrastructure.host",
        "the machine meets the local prerequisites: Python version, /dev/shm size, "
        "free disk and memory, CPU count",
        timeout_s=SHORT_S,
    ),
    Check(
        "infrastructure.nodes",
        "every node pool of the stack has at least its minNodes nodes Ready",
        timeout_s=SHORT_S,
    ),
    Check(
        "infrastructure.node-labels-taints",
        "every node carries its pool's labels and taints as the stack "
        "says (Kueue flavors and workload placement select on them)",
        needs=("infrastructure.nodes",),
        timeout_s=SHORT_S,
    ),
    Check(
        "infrastructure.gpus-allocatable",
        "GPU nodes advertise the nvidia.com/gpu count the stack expects "
        "(GPUs per node x time-slicing replicas)",
        needs=("infrastructure.nodes",),
        gpu=True,
        timeout_s=SHORT_S,
    ),
    Check(
        "infrastructure.cluster-autoscaling",
        "a pod requesting a GPU on a pool below its maxNodes makes the pool scale up and the pod run",
        requirements=("cluster_autoscaling",),
        needs=("infrastructure.nodes",),
        gpu=True,
        destructive=True,
        timeout_s=LONG_S * 2,
    ),
    # -- accelerators --
    Check(
        "accelerators.gpu-visible",
        "a workload that requests one GPU sees exactly one NVIDIA GPU (nvidia-smi)",
        requirements=("secure_accelerator_access",),
        gpu=True,
        timeout_s=MEDIUM_S,
    ),
    Check(
        "accelerators.gpu-isolation",
        "a pod on a GPU node that requests no GPU sees no GPU device: where the cloud isolates unrequested "
        "GPUs even when it sets NVIDIA_VISIBLE_DEVICES=all, elsewhere when it does not ask through that "
        "variable (the result then says what is not guaranteed)",
        requirements=("secure_accelerator_access",),
        gpu=True,
        timeout_s=MEDIUM_S,
    ),
    Check(
        "accelerators.ray-shm",
        "Ray pods get a memory-backed /dev/shm of the size the workload manifests "
        "ask for (the object store and PyTorch data loaders live there)",
        timeout_s=MEDIUM_S,
    ),
    # -- operators --
    Check(
        "operators.ray-head",
        "a Ray head started by this run is healthy: its node is alive and the Jobs and Serve APIs answer",
        timeout_s=MEDIUM_S,
    ),
    Check(
        "operators.kuberay",
        "the KubeRay CRDs are served at ray.io/v1 and the operator is available",
        requirements=("robust_controller",),
        timeout_s=SHORT_S,
    ),
    Check(
        "operators.kueue",
        "the Kueue CRDs are served at kueue.x-k8s.io/v1beta2, the controller is "
        "available, and every ClusterQueue and LocalQueue of the stack is active",
        requirements=("gang_scheduling",),
        timeout_s=SHORT_S,
    ),
    # -- scheduling --
    Check(
        "scheduling.queue-admission",
        "a job submitted to a team's LocalQueue is admitted by Kueue and runs",
        requirements=("gang_scheduling",),
        needs=("operators.kueue",),
        timeout_s=MEDIUM_S,
    ),
    Check(
        "scheduling.gang-admission",
        "a multi-pod RayJob larger than its queue's quota gets no pod at all, "
        "while one that fits gets all of its pods at once",
        requirements=("gang_scheduling",),
        needs=("operators.kueue", "operators.kuberay"),
        timeout_s=LONG_S,
    ),
    Check(
        "scheduling.preemption",
        "a higher-priority workload preempts a lower-priority one that holds the quota",
        requirements=("gang_scheduling",),
        needs=("operators.kueue",),
        destructive=True,
        timeout_s=LONG_S,
    ),
    # -- storage --
    Check(
        "storage.read-write",
        "a Ray worker running under the Ray service account's identity writes to "
        "the stack's storage location, and the object reads back byte for byte",
        needs=("operators.ray-head",),
        timeout_s=MEDIUM_S,
    ),
    # -- workloads --
    Check(
        "workloads.train",
        "the reference PyTorch training RayJob runs to completion, reaches its "
        "accuracy bar, and leaves readable checkpoints in storage",
        requirements=("robust_controller",),
        needs=RAY,
        timeout_s=LONG_S,
    ),
    Check(
        "workloads.batch",
        "the reference batch-inference RayJob writes one output row for every input "
        "row: the output ids equal the input ids",
        needs=RAY,
        timeout_s=LONG_S,
    ),
    Check(
        "workloads.post-train",
        "the reference post-training RayJob (GRPO: vLLM generator, PyTorch learner) raises its reward by "
        "the stated margin, its generator stays on-policy after every weight sync, and a killed learner "
        "resumes from its checkpoint",
        requirements=("robust_controller",),
        needs=RAY,
        timeout_s=LONG_S,
    ),
    Check(
        "workloads.serve",
        "the reference vLLM-on-Ray-Serve application deploys and answers an OpenAI chat completion",
        requirements=("ai_inference",),
        needs=RAY,
        timeout_s=LONG_S,
    ),
    # -- observability --
    Check(
        "observability.ray-metrics",
        "Ray and Ray Serve export Prometheus-format metrics from the running workloads",
        requirements=("ai_service_metrics",),
        needs=("operators.ray-head",),
        timeout_s=MEDIUM_S,
    ),
    Check(
        "observability.prometheus-targets",
        "Prometheus is scraping dcgm-exporter (on GPU stacks), Ray and Kueue, and the targets are up",
        requirements=("ai_service_metrics", "accelerator_metrics"),
        timeout_s=MEDIUM_S,
    ),
    Check(
        "observability.gpu-metric",
        "a per-GPU utilization and memory metric from dcgm-exporter is in Prometheus",
        requirements=("accelerator_metrics",),
        gpu=True,
        timeout_s=MEDIUM_S,
    ),
)

BY_NAME = {check.name: check for check in CHECKS}
assert all(check.layer in LAYERS for check in CHECKS), "every check belongs to a known layer"
assert all(need in BY_NAME for check in CHECKS for need in check.needs), "needs name known checks"


class SelectionError(ValueError):
    """--only / --skip named something that is neither a layer nor a check."""


def _expand(words: list[str], option: str) -> set[str]:
    names: set[str] = set()
    for word in words:
        if word in LAYERS:
            names |= {c.name for c in CHECKS if c.layer == word}
        elif word in BY_NAME:
            names.add(word)
        else:
            raise SelectionError(
                f"{option} {word!r}: not a layer or check; layers: {', '.join(LAYERS)}; "
                f"checks: {', '.join(BY_NAME)}"
            )
    return names


def split_words(values: list[str] | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: options may repeat and hold comma-separated lists."""
    return [w.strip() for value in values or [] for w in value.split(",") if w.strip()]


@dataclass(frozen=True)
class Selection:
    checks: tuple[Check, ...]
    """Checks to run, in run order."""
    dependencies: frozenset[str] = frozenset()
    """Names pulled in only because a selected check needs them."""
    deselected: frozenset[str] = frozenset()
    """Names left out by --only / --skip (reported as skipped, so the report shows the whole suite)."""


def select(only: list[str] | None = None, skip: list[str] | None = None) -> Selection:
    """The checks ``--only`` / ``--skip`` choose.

    ``only`` narrows the run to layers or checks; ``skip`` removes some. Checks a selected one needs are
    added back even when skipped, since the selected one cannot run without them.
    """
    only_words, skip_words = split_words(only), split_words(skip)
    chosen = _expand(only_words, "--only") if only_words else set(BY_NAME)
    chosen -= _expand(skip_words, "--skip")
    wanted = set(chosen)
    frontier = list(chosen)
    while frontier:
        for need in BY_NAME[frontier.pop()].needs:
            if need not in wanted:
                wanted.add(need)
                frontier.append(need)
    return Selection(
        checks=tuple(c for c in CHECKS if c.name in wanted),
        dependencies=frozenset(wanted - chosen),
        deselected=frozenset(set(BY_NAME) - wanted),
    )
