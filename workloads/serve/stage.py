"""``park stage-model STACK SOURCE``: copy a model to where the stack serves it from (``models[i].source``).

The workload image runs with ``HF_HUB_OFFLINE=1``, and the shipped cloud stacks serve from their own bucket
(``s3://<bucket>/models/<name>``, ``gs://...``), which ``pulumi up`` creates empty. This command stages a
model there: from a local folder (a Hugging Face snapshot with ``config.json``), or from a hub id, which it
first downloads with ``hf download``. It runs ``aws s3 sync`` / ``gcloud storage rsync`` / ``cp`` (kind's
host folder) with the credentials of the shell, and ``--dry-run`` prints those commands instead. A model whose
source is itself a hub id needs no staging: its replicas download it (workloads/serve/README.md).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TextIO

from park.components.spec import INVALID_CONFIG_EXIT, ServedModel, StackSpec, load_stack_for_command
from park.workloads.image import run_commands
from park.workloads.serve.app import ServeArgsError, check_local_model, locate_model

DOWNLOAD_DIR = Path("models")
"""Where a hub id is downloaded before it is copied (relative to the working folder)."""


def hf_command() -> str:
    """Hugging Face's CLI: the one on PATH, else the one installed beside this Python (huggingface_hub)."""
    if shutil.which("hf"):
        return "hf"
    beside = Path(sys.executable).parent / "hf"
    return str(beside) if beside.exists() else "hf"


class StageError(ValueError):
    """The model cannot be staged as asked; the message says why."""


def choose_model(spec: StackSpec, name: str | None) -> tuple[int, ServedModel]:
    """The model ``--model`` names, or the stack's only one."""
    names = ", ".join(m.name for m in spec.models) or "none"
    if name is None:
        if len(spec.models) != 1:
            raise StageError(f"the stack serves {len(spec.models)} models ({names}); name one with --model")
        return 0, spec.models[0]
    for i, model in enumerate(spec.models):
        if model.name == name:
            return i, model
    raise StageError(f"the stack serves no model {name!r}; it serves: {names}")


def stage_commands(spec: StackSpec, source: str, model_name: str | None = None) -> list[list[str]]:
    """The commands that put ``source`` (a local model folder or a hub id) where the stack's model is served
    from. StageError when the model's source is a hub id (nothing to stage) or ``source`` holds no model."""
    index, model = choose_model(spec, model_name)
    try:
        target = locate_model(model.source)
    except ServeArgsError as err:
        raise StageError(f"models[{index}].source: {err}") from None
    if target.kind == "hub":
        raise StageError(f"models[{index}].source is the hub id {model.source!r}: each replica downloads it "
                         "(nodes need egress to the hub), so there is nothing to stage; to serve a staged copy, "
                         f"set models[{index}].source to {spec.storage_uri}/models/{model.name}")
    steps: list[list[str]] = []
    try:
        origin = locate_model(source)
        if origin.kind == "remote":
            raise ServeArgsError("copy it from a local folder or a hub id, not from a bucket")
        local = Path(origin.where)
        if origin.kind == "hub":
            local = DOWNLOAD_DIR / model.name
            steps.append([hf_command(), "download", source, "--local-dir", str(local)])
        else:
            check_local_model(local)
    except ServeArgsError as err:
        raise StageError(f"{source}: {err}") from None
    folder = str(local).rstrip("/")
    if target.where.startswith("s3://"):
        steps.append(["aws", "s3", "sync", folder, target.where])
    elif target.where.startswith("gs://"):
        steps.append(["gcloud", "storage", "rsync", "--recursive", folder, target.where])
    else:
        steps += [["mkdir", "-p", target.where], ["cp", "-R", f"{folder}/.", target.where]]
    return steps


def stage_model_command(stack: str, source: str, model: str | None = None, dry_run: bool = False,
                        stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``park stage-model STACK SOURCE``: 0 when staged (or printed), 2 for bad config or a bad source."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    spec = load_stack_for_command(stack, stderr)
    if spec is None:
        return INVALID_CONFIG_EXIT
    try:
        steps = stage_commands(spec, source, model)
    except StageError as err:
        print(f"error: {err}", file=stderr)
        return INVALID_CONFIG_EXIT
    return run_commands(steps, dry_run, stdout, stderr)
