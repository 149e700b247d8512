"""The run configuration, and the checks that turn bad input into one clear line before any Ray work."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from park.workloads import storage
from park.workloads.serve.app import ServeArgsError, check_local_model, model_cache_dir
from park.workloads.serve.tiny import build_tiny_llama
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TINY_MODEL = "builtin:tiny-llama"
"""``--model`` value that builds the tiny random Llama (workloads/serve/tiny.py) into the run folder:
no model hub is needed, which is what the conformance suite and the local tests use."""
STORAGE_SCHEMES = ("file://", "s3://", "gs://")
DEFAULT_REWARD = "park.workloads.posttrain.tasks:digit_share"
DEFAULT_PROMPTS = "park.workloads.posttrain.tasks:prompts"
FAIL_AFTER_STEP_ENV = "PARK_POSTTRAIN_FAIL_AFTER_STEP"
"""Test hook: kill one learner process in the step after this one, once per run (see learner.py)."""
DEFAULT_LOGPROB_TOLERANCE = 1e-3
"""Largest |generator log-prob - learner log-prob| of a sampled token that still counts as on-policy. Both
sides compute in float32 on CPU; measured deviation there is ~1e-6 (tests/test_posttrain.py prints it). A
stale generator (weights not synced) is off by 0.1 and more after one step at the default learning rate."""


class ConfigError(ValueError):
    """Bad input, with the option name in the message; the CLI prints it as one line and exits 2."""


class PosttrainConfig(BaseModel):
    """Everything one run needs. Reruns with the same ``storage_uri`` and ``run_name`` resume."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    """A model folder (path or ``file://``), a bucket folder (``s3://``, ``gs://``; copied to local disk
    first), or :data:`TINY_MODEL`."""
    storage_uri: str
    """Where the run folder goes: a path, ``file://``, ``s3://`` or ``gs://``."""
    run_name: str = "park-posttrain"
    steps: Annotated[int, Field(ge=1)] = 20
    group_size: Annotated[int, Field(ge=2)] = 4
    """Completions per prompt; advantages are relative to the group, so one alone has none."""
    reward: str = DEFAULT_REWARD
    """``module:function`` with ``function(prompts, completions) -> list[float]``."""
    prompts: str = DEFAULT_PROMPTS
    """``module:function`` returning the list of prompts; every step uses all of them."""
    max_tokens: Annotated[int, Field(ge=1)] = 16
    temperature: Annotated[float, Field(gt=0)] = 1.0
    lr: Annotated[float, Field(gt=0)] = 1e-2
    kl_coef: Annotated[float, Field(ge=0)] = 0.02
    """Weight of the KL penalty to the frozen reference model (the k3 estimator, as in GRPO)."""
    learners: Annotated[int, Field(ge=1)] = 2
    """Data-parallel learner processes (DDP: gloo on CPU, NCCL on GPU)."""
    generators: Annotated[int, Field(ge=1)] = 1
    """vLLM engines; each step's prompts are split across them."""
    use_gpu: Literal["auto", "true", "false"] = "auto"
    """auto: GPUs when the Ray cluster has one for every learner (the generators then share one more)."""
    generator_gpus: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Share of a GPU each vLLM engine takes on GPU clusters (also its gpu_memory_utilization)."""
    learner_gpus: Annotated[float, Field(gt=0, le=1)] = 1.0
    """GPU share of each learner rank on GPU clusters: 1 (a whole GPU) except where the RayJob packs a
    learner and an engine onto one GPU (manifest.py, conformance size)."""
    generator_resource: str | None = None
    """A custom Ray resource each engine takes one unit of. The RayJob's generator pods offer it, so engines
    land there and never take half of a learner's GPU. None: engines go wherever Ray has room."""
    learner_resource: str | None = None
    """The same for learner ranks and the RayJob's learner pods."""
    learner_cpus: Annotated[float, Field(gt=0)] = 0.5
    generator_cpus: Annotated[float, Field(gt=0)] = 0.5
    logprob_tolerance: Annotated[float, Field(gt=0)] = DEFAULT_LOGPROB_TOLERANCE
    min_reward_gain: float | None = None
    """When set, the run fails (CLI exit 1) unless the mean reward of the last ``window`` steps exceeds the
    first ``window`` steps' by this much."""
    window: Annotated[int, Field(ge=1)] = 3
    keep_checkpoints: Annotated[int, Field(ge=1)] = 2
    max_learner_restarts: Annotated[int, Field(ge=0)] = 2
    """Times a dead learner group is replaced within the run (restored from the newest checkpoint)."""
    fail_after_step: int | None = None
    seed: int = 0

    @property
    def run_uri(self) -> str:
        return storage.join(self.storage_uri, self.run_name)


def load_callable(dotted: str, option: str) -> Callable[..., Any]:
    """``module:function`` -> the function; ConfigError naming ``option`` when it cannot be imported."""
    module_name, _, attribute = dotted.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{option}: {dotted!r} is not of the form module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any import failure is the user's input to fix
        raise ConfigError(f"{option}: cannot import module {module_name!r}: {type(err).__name__}: {err}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"{option}: module {module_name!r} has no function {attribute!r}")
    return function


def check_model(model: str) -> None:
    """A local model folder must exist and hold config.json; bucket URIs are checked when copied."""
    if model == TINY_MODEL or model.startswith(("s3://", "gs://")):
        return
    try:
        check_local_model(model.removeprefix("file://"))
    except ServeArgsError as err:
        raise ConfigError(f"--model: {err}") from None


def build_config(**options: Any) -> PosttrainConfig:
    """A checked config: field rules, then reward and prompts importable and returning something usable,
    then the model folder present. The first problem is raised as a ConfigError."""
    options = {k: v for k, v in options.items() if v is not None}
    if "fail_after_step" not in options and os.environ.get(FAIL_AFTER_STEP_ENV):
        options["fail_after_step"] = int(os.environ[FAIL_AFTER_STEP_ENV])
    try:
        config = PosttrainConfig(**options)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        name = "--" + "-".join(str(p) for p in first["loc"]).replace("_", "-")
        raise ConfigError(f"{name}: {first['msg']} (got {first.get('input')!r})") from None
    load_callable(config.reward, "--reward")
    try:
        prompts = load_callable(config.prompts, "--prompts")()
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's prompts function failed: say so in one line
        raise ConfigError(f"--prompts: {config.prompts}() failed: {type(err).__name__}: {err}") from None
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise ConfigError(f"--prompts: {config.prompts} must return a non-empty list of non-empty strings")
    check_model(config.model)
    if "://" in config.storage_uri and not config.storage_uri.startswith(STORAGE_SCHEMES):
        # only the scheme: opening an s3:// or gs:// filesystem here would reach for the network
        raise ConfigError(f"--storage-uri: unsupported scheme in {config.storage_uri!r}; use a path, "
                          f"{', '.join(STORAGE_SCHEMES)}")
    return config


def local_model(model: str, scratch: Path) -> Path:
    """A local folder holding the model: the folder itself, a copy of a bucket folder, or the tiny Llama
    built under ``scratch``."""
    if model == TINY_MODEL:
        return build_tiny_llama(scratch / "tiny-llama")
    if model.startswith(("s3://", "gs://")):
        from park.workloads.serve.server import fetch_model  # imports Ray Serve LLM: only for bucket models

        return fetch_model(model, model_cache_dir(model))
    return Path(model.removeprefix("file://")).expanduser().resolve()
