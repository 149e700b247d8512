"""This machine as a conformance target: what every local check works with. The checks themselves live with
their layer in :mod:`park.conformance.layers`; :class:`~park.conformance.targets.LocalTarget` adds the lookup.

A Ray head started by this run (:mod:`park.conformance.local_ray`) stands in for KubeRay: the workloads run
as the exact entrypoints of the RayJobs the project renders, submitted through the Ray Jobs API
(:meth:`LocalMachine.run_job`), with the stack's storage moved into the run's scratch folder. GPUs are found
once, through pytest-testinfra's ``local://`` backend.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import yaml
from park.components.spec import StackSpec, load_stack_file, resolve_stack_file
from park.conformance.context import RunContext
from park.conformance.local_ray import LocalRayHead, RayStartError
from park.conformance.model import CheckFailed

POLL_S = 1.0
LOG_TAIL_LINES = 12

DEFAULT_LOCAL_STACK = "kind"


class LocalSetupError(ValueError):
    """The local target cannot run with these options (a cloud stack, a missing default stack)."""


def load_local_spec(stack: str | None) -> tuple[StackSpec, str]:
    """The spec whose teams, priorities and models the local run uses: ``stack``, else the kind stack.

    The local target runs the workloads as the kind profile places them (CPU pools, a storage folder); a
    cloud stack's GPU pools and bucket cannot be imitated on one machine, so it is refused with what to use.
    """
    name = stack or DEFAULT_LOCAL_STACK
    path = resolve_stack_file(name)
    spec = load_stack_file(path)
    if spec.cloud != "kind":
        raise LocalSetupError(
            f"--stack {name}: the {spec.cloud} stack describes a cloud cluster, which the local "
            f"target cannot imitate; check that cluster with --target kubernetes --stack {name}, "
            f"or run the local target with a kind stack (--stack kind)"
        )
    return spec, str(path)


def with_local_storage(spec: StackSpec, folder: Path) -> StackSpec:
    """The spec with its storage location moved into this run's scratch folder (kind keeps storage in a
    host folder, so this changes only where, not how)."""
    return spec.model_copy(update={"storage": spec.storage.model_copy(update={"local_path": str(folder)})})


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(line.strip() for line in kept)


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value after ``flag`` (or in ``flag=value``) in an argument list."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def rayjob_as_job(rayjob: dict) -> tuple[str, dict]:
    """(entrypoint, runtime_env) of a rendered RayJob, unchanged, for the Ray Jobs API."""
    entrypoint = rayjob["spec"]["entrypoint"]
    runtime_env = yaml.safe_load(rayjob["spec"].get("runtimeEnvYAML") or "") or {}
    return entrypoint, runtime_env


class LocalMachine:
    """The stack spec (storage in the run's scratch folder), the run's Ray head, and this host's GPUs."""

    def __init__(self, ctx: RunContext, spec: StackSpec, stack_path: str | None = None):
        self.ctx = ctx
        self.stack_spec = spec
        self.stack_path = stack_path
        self._spec: StackSpec | None = None
        self._head: LocalRayHead | None = None
        self._head_error: str | None = None
        self._gpus: list[str] | None = None

    @property
    def spec(self) -> StackSpec:
        """The stack spec with storage in this run's scratch folder: what every workload is built from."""
        if self._spec is None:
            storage = self.ctx.workdir / "storage"
            storage.mkdir(parents=True, exist_ok=True)
            self._spec = with_local_storage(self.stack_spec, storage)
        return self._spec

    def gpus(self) -> list[str]:
        """NVIDIA GPUs on this host (``nvidia-smi -L`` via testinfra), detected once; [] under --gpu off."""
        if self._gpus is None:
            if self.ctx.options.gpu == "off":
                self._gpus = []
            else:
                import testinfra  # the conformance extra: imported when a check asks for GPUs

                host = testinfra.get_host("local://")
                if not host.exists("nvidia-smi"):
                    self._gpus = []
                    self.ctx.facts["gpu_detection"] = "nvidia-smi not found"
                else:
                    listing = host.run("nvidia-smi -L")
                    self._gpus = [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]
                    self.ctx.facts["gpu_detection"] = (
                        f"nvidia-smi -L exit {listing.rc}: {tail(listing.stdout + listing.stderr, 4)}"
                    )
        return self._gpus

    def accelerator_summary(self) -> str:
        """One line for the report: the GPUs used, or that the workloads fell back to CPU and why."""
        if self._gpus:
            return f"{len(self._gpus)} NVIDIA GPU(s): {'; '.join(self._gpus)}"
        why = "--gpu off" if self.ctx.options.gpu == "off" else "no NVIDIA GPU on this host"
        return f"none ({why}): the workloads run on CPU"

    def require_gpu_if_asked(self) -> None:
        """Under ``--gpu require`` a workload must not silently fall back to CPU: fail before running it."""
        if self.ctx.options.gpu == "require" and not self.gpus():
            why = self.ctx.facts.get("gpu_detection", "no GPU listed")
            raise CheckFailed(
                f"--gpu require, but this host has no NVIDIA GPU ({why}); the workload would run on "
                f"CPU. Run on a GPU machine, or use --gpu auto to accept the CPU fallback"
            )

    def served_model_gpus(self) -> float:
        """GPUs per serving replica here: one when this host has a GPU (and --gpu is not off), else CPU."""
        return 1.0 if self.gpus() else 0.0

    def head(self) -> LocalRayHead:
        """The run's Ray head, started on first use; a failed start is remembered and fails later users."""
        if self._head_error is not None:
            raise CheckFailed(self._head_error)
        if self._head is None:
            cpus = self.ctx.facts.get("cpus") or len(os.sched_getaffinity(0))
            num_gpus = 0 if self.ctx.options.gpu == "off" else None
            head = LocalRayHead(self.ctx.workdir / "ray", num_cpus=int(cpus), num_gpus=num_gpus)
            self._head = head
            self.ctx.on_cleanup(f"stop the run's Ray head (temp dir {head.temp_dir})", self._stop_head)
            try:
                head.start()
            except RayStartError as err:
                self._head_error = f"the run's Ray head did not start: {err}"
                raise CheckFailed(self._head_error) from None
            finally:
                if head.ports:
                    self.ctx.log.info("Ray head command: %s", shlex.join(head.command()))
            self.ctx.log.info("Ray head up in %.1f s: %s", head.started_in_s, head.dashboard_url)
        return self._head

    def _stop_head(self) -> None:
        if self._head is not None:
            left = self._head.stop()
            if left:
                self.ctx.log.warning("Ray processes still alive after stop: %s", left)

    def run_job(
        self, label: str, entrypoint: str, runtime_env: dict, timeout_s: float
    ) -> tuple[str, str, str]:
        """Submit ``entrypoint`` through the Jobs API as ``<run name>-<label>``, wait for it, log its output.

        Returns (status, message, logs). A job still running at ``timeout_s`` is stopped and fails the check.
        """
        from ray.job_submission import JobStatus, JobSubmissionClient  # Ray is the workloads extra

        client = JobSubmissionClient(self.head().dashboard_url)
        submission_id = f"{self.ctx.name}-{label}"
        env_vars = dict(runtime_env.get("env_vars", {}))
        env_vars.setdefault("RAY_AUTH_MODE", "disabled")
        runtime_env = {**runtime_env, "env_vars": env_vars}
        self.ctx.log.info("submitting job %s: %s (runtime_env %s)", submission_id, entrypoint, runtime_env)
        client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id)
        deadline = time.monotonic() + timeout_s
        status = client.get_job_status(submission_id)
        while not status.is_terminal() and time.monotonic() < deadline:
            time.sleep(POLL_S)
            status = client.get_job_status(submission_id)
        finished = status.is_terminal()
        if not finished:
            client.stop_job(submission_id)
        info = client.get_job_info(submission_id)
        logs = client.get_job_logs(submission_id)
        # Ray appends the job's last log lines to a failed job's message; keep its first line only.
        message = (info.message or "").strip().splitlines()[0] if info.message else ""
        self.ctx.log.info(
            "job %s ended %s (%s); its output:\n%s",
            submission_id,
            info.status.value,
            message,
            "\n".join(f"    | {line}" for line in logs.splitlines()),
        )
        if not finished:
            raise CheckFailed(
                f"job {submission_id} did not finish within {timeout_s:.0f} s and was stopped; "
                f"last output: {tail(logs)}"
            )
        if status is JobStatus.STOPPED:
            raise CheckFailed(
                f"job {submission_id} was stopped from outside the run; last output: {tail(logs)}"
            )
        return status.value, message, logs

    def time_left(self, budget: float) -> float:
        """``budget`` seconds, or what is left of the run's ``--timeout`` if less (at least one)."""
        return max(1.0, min(budget, self.ctx.remaining_s()))
