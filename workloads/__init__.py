"""Reference workloads: each a runnable Ray program plus the manifest that runs it on KubeRay.

- ``train``: Ray Train data-parallel PyTorch with a checkpoint per epoch (RayJob)
- ``batch``: Ray Data batch inference with exactly-once output (RayJob)
- ``serve``: vLLM on Ray Serve behind an OpenAI API (RayService)
- ``posttrain``: on-policy GRPO, vLLM generators and a DDP learner with weight sync every step (RayJob)
- ``cluster``: the RayCluster shape, Kueue labels and RayJob envelope they share

Importing this package is cheap: Ray, torch and vLLM are imported only when a workload runs.
"""

from __future__ import annotations

from park.components.spec import StackSpec
from park.workloads.batch.manifest import build_rayjob as build_batch
from park.workloads.posttrain.manifest import build_rayjob as build_posttrain
from park.workloads.serve.manifest import build_rayservice
from park.workloads.train.manifest import build_rayjob as build_train


def render_workloads(spec: StackSpec, *, team: str | None = None, priority: str | None = None) -> list[dict]:
    """The custom resources of the reference workloads for ``spec``: the train RayJob, the batch RayJob and,
    when the stack serves models (``park:models``), the serve RayService. Pure: same spec, same documents.

    Each goes to the team a platform team expects (serving on ``serving``, training and batch on
    ``research``, else the first team: :func:`park.workloads.cluster.team_for`) at that team's default
    priority, sized to that team's quota; ``team`` and ``priority`` override this for all of them
    (``park render --team/--priority``). An unknown team or priority is a :class:`SpecError`."""
    documents = [build_train(spec, team=team, priority=priority), build_batch(spec, team=team, priority=priority),
                 build_posttrain(spec, team=team, priority=priority)]
    if spec.models:
        documents.append(build_rayservice(spec, team=team, priority=priority))
    return documents


__all__ = ["render_workloads"]
