"""The Serve config of the serving workload: a pure function of the stack spec.

:func:`serve_config` returns Serve's config schema (``applications`` with ``import_path`` and ``args``);
the RayService's ``serveConfigV2`` is exactly this dict as YAML, and the same dict deploys unchanged
through Serve's REST API (``PUT /api/serve/applications/``) on any Ray head where park-stack is installed.

Everything a replica needs reaches the builder as ``args``, replica counts included: Ray Serve LLM
derives the ingress's scaling (scale to zero when every model may) from the models' autoscaling, so
those counts must not be split off into ``deployments`` overrides the builder never sees.
"""

from __future__ import annotations

from typing import Any

from park.components.spec import Problem, ServedModel, SpecError, StackSpec, serving_gpu_pool, time_slices
from park.workloads.serve.app import APP_NAME, IMPORT_PATH

ROUTE_PREFIX = "/"


def model_args(spec: StackSpec, model: ServedModel) -> dict[str, Any]:
    """One entry of ``args.models`` (see :class:`park.workloads.serve.app.ServedModelArgs`).

    ``gpus`` is ``gpuFraction``, a fraction of a physical GPU; on a time-sliced serving pool the entry also
    carries the pool's ``gpuSharing.replicas`` as ``gpu_time_slices``, so the app sizes Ray bundles to the
    pod's slice. Without GPUs or sharing (kind, a local Ray) it is left out and nothing changes."""
    gpus = spec.model_gpus(model)
    entry: dict[str, Any] = {
        "name": model.name,
        "source": model.source,
        "gpus": gpus,
        "min_replicas": model.min_replicas,
        "max_replicas": model.max_replicas,
    }
    pool = serving_gpu_pool(spec)
    if gpus > 0 and pool is not None and time_slices(pool) > 1:
        entry["gpu_time_slices"] = time_slices(pool)
    if model.max_model_len is not None:
        entry["max_model_len"] = model.max_model_len
    return entry


def serve_config(
    spec: StackSpec, *, app_name: str = APP_NAME, route_prefix: str = ROUTE_PREFIX
) -> dict[str, Any]:
    """Serve's config for the stack's served models: one OpenAI application routing by ``model``.

    No ``http_options``: on KubeRay the proxy listens on the port the RayService's services expect
    (8000), and a local head sets its own port when Serve starts. To serve other files than the
    stack config names (tests, the local conformance target), pass a spec whose ``models`` point
    elsewhere: ``spec.model_copy(update={"models": [...]})``.
    """
    if not spec.models:
        raise SpecError(
            [
                Problem(
                    "models",
                    "no served models: the serving workload needs at least one entry "
                    "in park:models (name and source)",
                )
            ]
        )
    return {
        "applications": [
            {
                "name": app_name,
                "route_prefix": route_prefix,
                "import_path": IMPORT_PATH,
                "args": {"models": [model_args(spec, m) for m in spec.models]},
            }
        ],
    }
