"""The RayJob that runs the post-training workload on a KubeRay cluster, queued through Kueue.

GPU stacks, reference size: two worker groups on the first GPU pool, each one pod sized to a node and the
team's quota like the train workload's: ``learners`` (one DDP rank per GPU, whole GPUs) and ``generators``
(vLLM engines at ``generator_gpus`` of a GPU each, so two engines share a GPU by default). Each group's pods
offer a custom Ray resource that only its actors ask for, so an engine never takes half of a learner's GPU.
Conformance size: one pod with one GPU (one slice on a time-sliced pool), which the learner and the engine
share half and half. CPU stacks (kind): one group, two learner ranks and one engine sharing its CPUs.
"""

from __future__ import annotations

import json
import math

from park.components.spec import NodePool, StackSpec, Team
from park.workloads import cluster, storage
from park.workloads.posttrain.config import TINY_MODEL

NAME = "park-posttrain"
OUTPUT_FOLDER = "posttrain"
DEFAULT_STEPS = 20
DEFAULT_MIN_REWARD_GAIN = 0.2
"""The default task (tasks.digit_share) starts near 0.03 and passes 0.5 within twenty steps (tasks.py)."""
GENERATOR_GPUS = 0.5
LEARNER_RESOURCE = "park_learner"
GENERATOR_RESOURCE = "park_generator"
RUNTIME_ENV = {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
CPU_CPU_SHARE_STEP = 0.1


def entrypoint(spec: StackSpec, *, model: str = TINY_MODEL, run_name: str = NAME, steps: int = DEFAULT_STEPS,
               learners: int = 2, generators: int = 1, learner_cpus: float = 0.5, generator_cpus: float = 0.5,
               learner_gpus: float = 1.0, generator_gpus: float = GENERATOR_GPUS, pinned: bool = False,
               min_reward_gain: float | None = DEFAULT_MIN_REWARD_GAIN, storage_uri: str | None = None) -> list[str]:
    """The command the job runs; ``storage_uri`` defaults to the stack's storage plus ``posttrain/``.
    ``pinned``: learners and engines ask for the custom resources their worker groups offer."""
    command = ["python", "-m", "park.workloads.posttrain", "--model", model,
               "--storage-uri", storage_uri or storage.join(spec.storage_uri, OUTPUT_FOLDER),
               "--run-name", run_name, "--steps", str(steps), "--group-size", "4",
               "--learners", str(learners), "--generators", str(generators),
               "--learner-cpus", f"{learner_cpus:g}", "--generator-cpus", f"{generator_cpus:g}",
               "--learner-gpus", f"{learner_gpus:g}", "--generator-gpus", f"{generator_gpus:g}", "--use-gpu", "auto"]
    if pinned:
        command += ["--learner-resource", LEARNER_RESOURCE, "--generator-resource", GENERATOR_RESOURCE]
    if min_reward_gain is not None:
        command += ["--min-reward-gain", f"{min_reward_gain:g}"]
    return command


def _share(cpus: float, actors: int) -> float:
    """Each of ``actors`` gets an equal share of ``cpus``, rounded down to a tenth."""
    return max(CPU_CPU_SHARE_STEP, math.floor(cpus / actors / CPU_CPU_SHARE_STEP) * CPU_CPU_SHARE_STEP)


def _group(spec: StackSpec, pool: NodePool, shape: dict, name: str, resource: str | None, units: int) -> dict:
    group = cluster.ray_cluster_spec(spec, pool=pool, workers=1, **shape)["workerGroupSpecs"][0]
    group["groupName"] = name
    if resource:
        # KubeRay passes this to `ray start --resources`; the value is a quoted JSON object
        group["rayStartParams"]["resources"] = json.dumps(json.dumps({resource: units}))
    return group


def build_rayjob(spec: StackSpec, *, team: Team | str | None = None, priority: str | None = None,
                 pool: NodePool | None = None, model: str = TINY_MODEL, steps: int = DEFAULT_STEPS,
                 min_reward_gain: float | None = DEFAULT_MIN_REWARD_GAIN, run_name: str = NAME, name: str = NAME,
                 size: cluster.WorkloadSize = "reference") -> dict:
    """The post-training RayJob, queued for ``team`` (default: the research team, else the first; see
    :func:`~park.workloads.cluster.team_for`), on ``pool`` (default: the first GPU pool, else the first
    workers pool; conformance size: :func:`~park.workloads.cluster.proving_pool`). ``model``: a folder every
    pod can read (on kind under the storage mount; a bucket URI on clouds) or the built-in tiny Llama.

    Reruns under the same ``run_name`` resume from its newest checkpoint: give each conformance run its own
    name, keep it for retries (``backoffLimit``)."""
    chosen = cluster.team_for(spec, team, workload="posttrain")
    if size == "conformance":
        pool, pods, shape = cluster.sized_workers(spec, size=size, pool=pool, team=chosen)
        gpu = shape["worker_gpus"] > 0
        learners, generators = (1, 1) if gpu else (2, 1)
        cpus = pods * shape["worker_cpus"]
        cluster_spec = cluster.ray_cluster_spec(spec, pool=pool, workers=pods, **shape)
        command = entrypoint(spec, model=model, run_name=run_name, steps=steps, learners=learners,
                             generators=generators, learner_cpus=_share(cpus, learners + generators),
                             generator_cpus=_share(cpus, learners + generators),
                             learner_gpus=0.5 if gpu else 1.0, min_reward_gain=min_reward_gain)
    else:
        pool, pods, shape = cluster.sized_workers(spec, size=size, pool=pool, team=chosen)
        gpus = int(shape["worker_gpus"])
        if gpus > 0:
            generators = max(1, int(gpus / GENERATOR_GPUS))
            learner_group = _group(spec, pool, shape, "learners", LEARNER_RESOURCE, gpus)
            generator_group = _group(spec, pool, shape, "generators", GENERATOR_RESOURCE, generators)
            cluster_spec = cluster.ray_cluster_spec(spec, pool=pool, workers=1, **shape)
            cluster_spec["workerGroupSpecs"] = [learner_group, generator_group]
            command = entrypoint(spec, model=model, run_name=run_name, steps=steps, learners=gpus,
                                 generators=generators, learner_cpus=_share(shape["worker_cpus"], gpus),
                                 generator_cpus=_share(shape["worker_cpus"], generators), pinned=True,
                                 min_reward_gain=min_reward_gain)
        else:
            cpus = pods * shape["worker_cpus"]
            cluster_spec = cluster.ray_cluster_spec(spec, pool=pool, workers=pods, **shape)
            command = entrypoint(spec, model=model, run_name=run_name, steps=steps, learners=2, generators=1,
                                 learner_cpus=_share(cpus, 3), generator_cpus=_share(cpus, 3),
                                 min_reward_gain=min_reward_gain)
    return cluster.rayjob(spec, name=name, entrypoint=command, cluster_spec=cluster_spec, env=RUNTIME_ENV,
                          team=chosen, priority=priority, submitter_pool=pool if size == "conformance" else None,
                          active_deadline_s=cluster.LONG_DEADLINE_S)
