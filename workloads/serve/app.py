"""The serving program: the stack's models in vLLM behind one Ray Serve OpenAI-compatible application.

Built on Ray Serve LLM (``ray.serve.llm``: ``LLMConfig`` + ``build_openai_app``), which works with the
installed vLLM on CPU and on GPU: one ``ParkLLMServer`` deployment per model, one ``OpenAiIngress``
that serves ``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` (SSE streaming included)
and routes each request by its ``model``. The proxy answers ``/-/healthz`` and ``/-/routes``; Serve
calls each engine's health check and replaces replicas that fail it or die.

Serve imports :func:`build_app` from the ``import_path`` of the config :func:`serve_config
<park.workloads.serve.config.serve_config>` writes (the RayService's ``serveConfigV2``); its ``args``
are :class:`ServeAppArgs`. Nothing here imports Ray at module level, so ``park render`` stays fast.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from ray.serve import Application

IMPORT_PATH = "park.workloads.serve.app:build_app"
SERVER_CLASS = "park.workloads.serve.server:ParkLLMServer"
APP_NAME = "llm"

MODEL_URI_ENV = "PARK_MODEL_URI"
"""Set on a replica whose model lives in a bucket: the URI it downloads before its engine starts."""
MODEL_PATH_ENV = "PARK_MODEL_PATH"
"""Set with :data:`MODEL_URI_ENV`: the local folder the download goes to (the engine loads it)."""
MODEL_CACHE_ENV = "PARK_MODEL_CACHE"
"""Where bucket models are cached on each node. Default: ``<tmp>/park-models``."""

DEFAULT_TARGET_ONGOING_REQUESTS = 16
"""Requests in flight per replica before Serve adds one. vLLM batches them, so this is well above 1;
Ray Serve LLM's own default (10^9) would never scale up."""
GPU_MEMORY_SHARE = 0.9
"""Share of a GPU's memory vLLM may take for a whole-GPU replica; a fractional replica gets that fraction
of it. Whatever shares one physical GPU (replicas in a pod, time-sliced pods) adds up to at most this."""
RAY_RESOURCE_SCALE = 10_000
"""Ray keeps fractional resources to four decimals (``ray_constants.MIN_RESOURCE_GRANULARITY``)."""

DIRECT_STREAMING_ENV = "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING"
"""Ray Serve LLM's direct streaming (Ray 2.60, experimental; needs ``RAY_SERVE_ENABLE_HA_PROXY=1`` too): the
model's replicas are the HTTP ingress and HAProxy sends each request straight to one, skipping the
``OpenAiIngress`` hop. Set on the Ray cluster; read where Serve builds the app."""

REMOTE_SCHEMES = ("s3://", "gs://")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Args(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServedModelArgs(_Args):
    """One model of the application (mirrors ``park:models[i]`` of the stack config)."""

    name: str
    """The id clients send as ``model``."""
    source: str
    """Local path, ``file://``, ``s3://`` or ``gs://`` URI (downloaded through pyarrow.fs), or a hub id."""
    gpus: Annotated[float, Field(ge=0)] | None = None
    """GPUs per replica, as a fraction of a physical GPU; below 1 shares a GPU; 0 runs vLLM on CPU. None: 1
    if the Ray cluster has a GPU, else 0."""
    gpu_time_slices: Annotated[int, Field(ge=1)] = 1
    """Pods that time-share each physical GPU the replica may run on (the pool's ``gpuSharing.replicas``).
    Such a pod's Ray sees the whole GPU but owns 1/``gpu_time_slices`` of it, so a replica must fit that
    (``gpus <= 1 / gpu_time_slices``) and asks Ray for ``gpus x gpu_time_slices`` of the pod's GPU.
    1 (the default, and a local Ray): whole GPUs, nothing time-sliced."""
    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 1
    max_model_len: Annotated[int, Field(ge=16)] | None = None
    target_ongoing_requests: Annotated[int, Field(ge=1)] = DEFAULT_TARGET_ONGOING_REQUESTS


class ServeAppArgs(_Args):
    """The ``args`` of the Serve application (what ``serveConfigV2`` passes to :func:`build_app`)."""

    models: list[ServedModelArgs] = Field(min_length=1)
    replica_cpus: Annotated[float, Field(gt=0)] = 1.0
    """CPUs reserved per model replica (the engine's; the replica actor itself reserves none)."""
    ingress_cpus: Annotated[float, Field(ge=0)] = 0.0
    """The ingress only forwards requests; reserving no CPU lets it sit beside the engines, or on a head
    that takes no work, instead of needing a CPU of its own."""
    cpu_kv_cache_gib: Annotated[int, Field(ge=1)] = 1
    """``VLLM_CPU_KVCACHE_SPACE`` for models on CPU."""


class ServeArgsError(ValueError):
    """Bad application args or a model that cannot be found; the message names the property path."""


# --- where a model comes from ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelLocation:
    kind: Literal["local", "remote", "hub"]
    where: str
    """A local folder, a bucket URI, or a hub id."""


def locate_model(source: str) -> ModelLocation:
    """Classify a model source: ``s3://``/``gs://`` -> remote, ``file://`` or a path -> local, ``org/name``
    that is not an existing folder -> hub id."""
    if source.startswith(REMOTE_SCHEMES):
        return ModelLocation("remote", source)
    if source.startswith("file://"):
        return ModelLocation("local", source.removeprefix("file://"))
    if "://" in source:
        scheme = source.split("://", 1)[0]
        raise ServeArgsError(
            f"unsupported scheme {scheme!r} in {source!r}; use a path, file://, s3:// or gs://"
        )
    if _HUB_ID.match(source) and not Path(source).exists():
        return ModelLocation("hub", source)
    return ModelLocation("local", source)


def check_local_model(path: str | Path) -> Path:
    """The folder as an absolute path; a clear error naming it when it is missing or holds no model."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ServeArgsError(f"model path {str(folder)!r} does not exist")
    if not (folder / "config.json").is_file():
        raise ServeArgsError(f"model path {str(folder)!r} holds no config.json; is it a model folder?")
    return folder.resolve()


def model_cache_dir(uri: str) -> Path:
    """The node-local folder a bucket model is downloaded to: stable for a URI, distinct across URIs."""
    root = Path(os.environ.get(MODEL_CACHE_ENV) or Path(tempfile.gettempdir()) / "park-models")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:12]
    return root / f"{uri.rstrip('/').rsplit('/', 1)[-1]}-{digest}"


# --- args -> Ray Serve LLM configs ----------------------------------------------------------------


def parse_args(args: dict[str, Any] | ServeAppArgs) -> ServeAppArgs:
    """Validate application args; every problem is reported with its path (``models[0].gpus: ...``)."""
    if isinstance(args, ServeAppArgs):
        return args
    try:
        parsed = ServeAppArgs.model_validate(args)
    except ValidationError as err:
        lines = []
        for e in err.errors(include_url=False):
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
            lines.append(f"{path or 'args'}: {e['msg']}")
        raise ServeArgsError("invalid serve application args:\n" + "\n".join(lines)) from None
    problems = []
    names = [m.name for m in parsed.models]
    for i, model in enumerate(parsed.models):
        if names.count(model.name) > 1:
            problems.append(f"models[{i}].name: duplicate model name {model.name!r}")
        if model.gpus is not None and model.gpus > 1 and not float(model.gpus).is_integer():
            problems.append(f"models[{i}].gpus: {model.gpus:g}: above one GPU a replica takes whole GPUs")
        elif model.gpu_time_slices > 1 and (model.gpus is None or model.gpus * model.gpu_time_slices > 1 + 1e-9):
            given = "left open (1 on a GPU cluster)" if model.gpus is None else f"{model.gpus:g}"
            problems.append(
                f"models[{i}].gpus: {given} is more than one of the {model.gpu_time_slices} time slices of a "
                f"GPU a pod holds; at most {1 / model.gpu_time_slices:.4g}"
            )
        if model.min_replicas > model.max_replicas:
            problems.append(
                f"models[{i}].min_replicas: {model.min_replicas} is above max_replicas {model.max_replicas}"
            )
    if problems:
        raise ServeArgsError("invalid serve application args:\n" + "\n".join(problems))
    return parsed


def cluster_has_gpus() -> bool:
    import ray

    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def bundle_gpus(gpus: float, time_slices: int = 1) -> float:
    """The ``GPU`` of one placement-group bundle, in the Ray GPUs of the replica's pod: ``gpus`` is a fraction
    of a physical GPU, and on a GPU time-sliced ``time_slices`` ways a pod's Ray counts the whole device as
    its 1 GPU while owning 1/``time_slices`` of it. Rounded up to Ray's step, so Ray never packs more."""
    return math.ceil(min(1.0, gpus) * time_slices * RAY_RESOURCE_SCALE - 1e-6) / RAY_RESOURCE_SCALE


def memory_utilization(gpus: float) -> float:
    """vLLM's ``gpu_memory_utilization`` for a replica of ``gpus`` physical GPUs: that share of
    :data:`GPU_MEMORY_SHARE` of each device (vLLM takes it of the whole device, whatever else runs there).
    Rounded down, so the replicas that share a GPU never add up to more than the share."""
    return math.floor(GPU_MEMORY_SHARE * min(1.0, gpus) * RAY_RESOURCE_SCALE + 1e-6) / RAY_RESOURCE_SCALE


def llm_config_dict(
    model: ServedModelArgs, app: ServeAppArgs, *, index: int = 0, gpus: float | None = None
) -> dict[str, Any]:
    """The Ray Serve LLM ``LLMConfig`` (as a dict) for one model.

    CPU (``gpus == 0``): vLLM's CPU settings (float32, eager, a fixed KV cache). GPU: the replica's
    placement-group bundle holds its GPU share (Ray Serve LLM schedules the vLLM worker there; on a
    time-sliced GPU that share is scaled to the pod's slice, see :func:`bundle_gpus`), and a fraction below
    one also caps vLLM's share of GPU memory (:func:`memory_utilization`) so replicas can share the device.
    """
    at = f"models[{index}]"
    gpus = model.gpus if model.gpus is not None else gpus
    if gpus is None:
        gpus = 1.0 if cluster_has_gpus() else 0.0
    try:
        location = locate_model(model.source)
        env: dict[str, str] = {}
        if location.kind == "local":
            model_source = str(check_local_model(location.where))
        elif location.kind == "remote":
            model_source = str(model_cache_dir(location.where))
            env |= {MODEL_URI_ENV: location.where, MODEL_PATH_ENV: model_source}
        else:
            model_source = location.where
    except ServeArgsError as err:
        raise ServeArgsError(f"{at}.source ({model.name!r}): {err}") from None
    # The workload image sets HF_HUB_OFFLINE=1 (workloads/Dockerfile): a bucket or local model needs no hub, and
    # an unreachable hub is not waited on. A hub id is the one source that must download, so its replicas, and
    # only they, get the hub back (Ray's runtime_env env_vars replace the image's value in the worker).
    env["HF_HUB_OFFLINE"] = "0" if location.kind == "hub" else "1"

    engine: dict[str, Any] = {}
    if model.max_model_len is not None:
        engine["max_model_len"] = model.max_model_len
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": model.name, "model_source": model_source},
        "server_cls": SERVER_CLASS,
        "deployment_config": {
            "autoscaling_config": {
                "min_replicas": model.min_replicas,
                "initial_replicas": max(model.min_replicas, 1),
                "max_replicas": model.max_replicas,
                "target_ongoing_requests": model.target_ongoing_requests,
            },
            "ray_actor_options": {"num_cpus": 0},
        },
    }
    if gpus == 0:
        config["accelerator_config"] = {"kind": "cpu"}
        config["placement_group_config"] = {"bundles": [{"CPU": app.replica_cpus}], "strategy": "STRICT_PACK"}
        engine |= {"dtype": "float32", "enforce_eager": True}
        env["VLLM_CPU_KVCACHE_SPACE"] = str(app.cpu_kv_cache_gib)
    else:
        devices = max(1, int(gpus))
        config["accelerator_config"] = {"kind": "gpu"}
        config["placement_group_config"] = {
            "bundles": [{"CPU": app.replica_cpus, "GPU": bundle_gpus(gpus, model.gpu_time_slices)}] * devices,
            "strategy": "STRICT_PACK",
        }
        engine |= {"tensor_parallel_size": devices, "gpu_memory_utilization": memory_utilization(gpus)}
    config["engine_kwargs"] = engine
    config["runtime_env"] = {"env_vars": env}
    return config


def serving_args(args: dict[str, Any] | ServeAppArgs) -> dict[str, Any]:
    """The ``LLMServingArgs`` for ``ray.serve.llm.build_openai_app``: every model plus the ingress."""
    app = parse_args(args)
    detected = None if all(m.gpus is not None for m in app.models) else (1.0 if cluster_has_gpus() else 0.0)
    problems = []
    configs = []
    for i, model in enumerate(app.models):
        try:
            configs.append(llm_config_dict(model, app, index=i, gpus=detected))
        except ServeArgsError as err:
            problems.append(str(err))
    if direct_streaming() and len(configs) > 1:
        problems.append(
            f"models: {len(configs)} models, but direct streaming ({DIRECT_STREAMING_ENV}=1 on this Ray "
            "cluster) serves exactly one model per application; unset it or serve one model"
        )
    if problems:
        raise ServeArgsError("\n".join(problems))
    if direct_streaming():  # the model's replicas are the ingress: there is no ingress deployment to size
        return {"llm_configs": configs}
    return {
        "llm_configs": configs,
        "ingress_deployment_config": {"ray_actor_options": {"num_cpus": app.ingress_cpus}},
    }


def direct_streaming() -> bool:
    """Whether Ray Serve LLM will build the app for direct streaming (see :data:`DIRECT_STREAMING_ENV`)."""
    return os.environ.get(DIRECT_STREAMING_ENV, "0") == "1"


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder (the config's ``import_path``): validated args -> OpenAI app.

    Args and model paths are checked before Ray Serve LLM (and with it vLLM) is imported, so a bad
    config fails the deploy in seconds with a message that names the problem."""
    llm_serving_args = serving_args(args)
    from ray.serve.llm import build_openai_app

    return build_openai_app(llm_serving_args)


def deployment_name(model_name: str) -> str:
    """The Serve deployment that holds a model's replicas (Ray Serve LLM's naming)."""
    return f"{SERVER_CLASS.rsplit(':', 1)[1]}:{model_name.replace('/', '--').replace('.', '_')}"
