"""The local target: the checks that apply without a cluster, run for real on this machine.

Host prerequisites are read through pytest-testinfra's ``local://`` backend. A Ray head started by this
run (:mod:`park.conformance.local_ray`) stands in for KubeRay: the train and batch workloads run as the
exact entrypoints of the RayJobs the project renders, submitted through the Ray Jobs API, and the serve
workload's Serve config is deployed through Serve's REST deploy API, then asked for an OpenAI chat
completion. Each check then verifies the outcome on its own (reads the training summary and checkpoints,
compares the batch output ids with the input ids, parses the chat answer) instead of trusting a job status.

Cluster-only checks (nodes, Kueue, KubeRay, Prometheus...) are not applicable here.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from park.components.spec import StackSpec, load_stack_file, resolve_stack_file
from park.conformance.context import RunContext
from park.conformance.local_ray import LocalRayHead, RayStartError, local_environment
from park.conformance.model import Check, CheckFailed, NotApplicable, Passed

MIN_PYTHON = (3, 11)
MIN_SHM_GIB = 1.0
"""Ray's object store and PyTorch's data loaders live in /dev/shm; Docker's default 64 MiB is too small."""
MIN_DISK_GIB = 5.0
MIN_MEMORY_GIB = 6.0
"""vLLM's CPU engine (1 GiB KV cache), two Ray Train workers and the Ray head side by side."""
MIN_CPUS = 2
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


LOCAL_CHECKS: dict[str, str] = {
    "infrastructure.host": "check_host",
    "accelerators.gpu-visible": "check_gpu_visible",
    "operators.ray-head": "check_ray_head",
    "storage.read-write": "check_storage",
    "workloads.train": "check_train",
    "workloads.batch": "check_batch",
    "workloads.serve": "check_serve",
    "observability.ray-metrics": "check_ray_metrics",
}
"""Check name -> the method of the target that proves it; every other check is not applicable here."""


class LocalTarget:
    name = "local"
    platform_under_test = False

    def __init__(self, ctx: RunContext, spec: StackSpec, stack_path: str | None = None):
        self.ctx = ctx
        self.stack_spec = spec
        self.stack_path = stack_path
        self._spec: StackSpec | None = None
        self._head: LocalRayHead | None = None
        self._head_error: str | None = None
        self._gpus: list[str] | None = None

    # -- Target protocol --

    def implementation(self, check: Check) -> Callable[[RunContext], Passed] | None:
        method = LOCAL_CHECKS.get(check.name)
        return getattr(self, method) if method else None

    def not_applicable_reason(self, check: Check) -> str:
        return (
            "needs a Kubernetes cluster; the local target has none (run park conformance --target "
            "kubernetes against one)"
        )

    def describe(self) -> dict[str, Any]:
        import ray

        self.gpus()
        facts = {
            "ray_version": ray.__version__,
            "stack": self.stack_path or "(none)",
            "accelerator": self.accelerator_summary(),
        }
        if self._head is not None and self._head.ports:
            facts["ray_dashboard"] = self._head.dashboard_url
        facts.update({k: v for k, v in self.ctx.facts.items() if k not in facts})
        return facts

    # -- shared resources --

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
                import testinfra

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
            cpus = self.ctx.facts.get("cpus") or _cpu_count()
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
        from ray.job_submission import JobStatus, JobSubmissionClient

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

    def _time_left(self, check_budget: float) -> float:
        return max(1.0, min(check_budget, self.ctx.remaining_s()))

    # -- checks --

    def check_host(self, ctx: RunContext) -> Passed:
        import testinfra

        host = testinfra.get_host("local://")
        python = shutil.which("python", path=local_environment()["PATH"]) or sys.executable
        problems: list[str] = []
        facts: dict[str, Any] = {"python_path": python}

        probe = host.run(
            f"{shlex.quote(python)} -c "
            + shlex.quote(
                "import json, sys, ray, park.workloads; "
                "print(json.dumps([list(sys.version_info[:3]), ray.__version__]))"
            )
        )
        if probe.rc != 0:
            problems.append(
                f"{python} cannot import ray and park.workloads (the Ray jobs run with it): "
                f"{tail(probe.stderr, 3)}"
            )
        else:
            version, ray_version = json.loads(probe.stdout.strip().splitlines()[-1])
            facts["python"] = ".".join(map(str, version))
            facts["ray"] = ray_version
            if tuple(version[:2]) < MIN_PYTHON:
                problems.append(f"Python {facts['python']} is older than {'.'.join(map(str, MIN_PYTHON))}")

        shm = host.mount_point("/dev/shm")
        if not shm.exists:
            problems.append("/dev/shm is not mounted; Ray's object store needs it (docker run --shm-size=2g)")
        else:
            facts["shm_filesystem"] = shm.filesystem
            facts["shm_gib"] = _df_avail_gib(host, "/dev/shm")
            if shm.filesystem != "tmpfs":
                problems.append(f"/dev/shm is {shm.filesystem}, not tmpfs (memory-backed)")
            if facts["shm_gib"] < MIN_SHM_GIB:
                problems.append(
                    f"/dev/shm has {facts['shm_gib']:.2f} GiB free, below {MIN_SHM_GIB:g} GiB "
                    f"(docker run --shm-size=2g, or a Memory emptyDir in a pod)"
                )
        facts["disk_gib"] = _df_avail_gib(host, str(ctx.workdir))
        if facts["disk_gib"] < MIN_DISK_GIB:
            problems.append(
                f"{facts['disk_gib']:.1f} GiB free under {ctx.workdir}, below {MIN_DISK_GIB:g} GiB "
                f"(set TMPDIR to a bigger disk)"
            )
        meminfo = host.file("/proc/meminfo").content_string
        available_kib = int(re.search(r"^MemAvailable:\s+(\d+)", meminfo, re.MULTILINE).group(1))
        facts["memory_available_gib"] = round(available_kib / 2**20, 2)
        if facts["memory_available_gib"] < MIN_MEMORY_GIB:
            problems.append(
                f"{facts['memory_available_gib']:.1f} GiB memory available, below {MIN_MEMORY_GIB:g} GiB"
            )
        facts["cpus"] = int(host.check_output("nproc"))
        if facts["cpus"] < MIN_CPUS:
            problems.append(f"{facts['cpus']} CPU(s) usable, below {MIN_CPUS} (Ray Train runs two workers)")
        ctx.facts["cpus"] = facts["cpus"]
        if problems:
            raise CheckFailed("; ".join(problems), facts)
        return Passed(
            f"Python {facts.get('python')} with Ray {facts.get('ray')}; /dev/shm {facts['shm_gib']:.1f} "
            f"GiB tmpfs; {facts['disk_gib']:.0f} GiB disk and {facts['memory_available_gib']:.1f} GiB "
            f"memory free; {facts['cpus']} CPUs",
            facts,
        )

    def check_gpu_visible(self, ctx: RunContext) -> Passed:
        gpus = self.gpus()
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

    def check_ray_head(self, ctx: RunContext) -> Passed:
        import httpx
        from ray.job_submission import JobSubmissionClient

        head = self.head()
        deadline = time.monotonic() + 30
        nodes: list[dict] = []
        while time.monotonic() < deadline:
            answer = httpx.get(
                f"{head.dashboard_url}/api/v0/nodes", params={"detail": "1"}, timeout=10
            ).json()
            nodes = [n for n in answer["data"]["result"]["result"] if n.get("state") == "ALIVE"]
            if nodes:
                break
            time.sleep(POLL_S)
        if not nodes:
            raise CheckFailed(
                f"the Ray head answers at {head.dashboard_url} but no node registered as ALIVE "
                f"within 30 s; see {head.temp_dir}/session_latest/logs/raylet.err"
            )
        resources = nodes[0].get("resources_total", {})
        jobs = JobSubmissionClient(head.dashboard_url).list_jobs()
        serve = httpx.get(f"{head.dashboard_url}/api/serve/applications/", timeout=10)
        if serve.status_code != 200:
            raise CheckFailed(
                f"the Serve REST API at {head.dashboard_url}/api/serve/applications/ answered "
                f"{serve.status_code}: {serve.text[:200]}"
            )
        version = httpx.get(f"{head.dashboard_url}/api/version", timeout=10).json()
        ctx.facts["ray_head_start_s"] = round(head.started_in_s or 0, 2)
        details = {
            "dashboard": head.dashboard_url,
            "ports": head.ports,
            "temp_dir": str(head.temp_dir),
            "resources": resources,
            "ray_version": version.get("ray_version"),
            "jobs_listed": len(jobs),
        }
        return Passed(
            f"Ray {version.get('ray_version')} head up in {head.started_in_s:.1f} s; {len(nodes)} node "
            f"alive with {resources.get('CPU', 0):g} CPU and {resources.get('GPU', 0):g} GPU; Jobs and "
            f"Serve APIs answer",
            details,
        )

    def check_storage(self, ctx: RunContext) -> Passed:
        from park.workloads import storage

        nonce = f"{ctx.name} {secrets.token_hex(16)}"
        uri = storage.join(self.spec.storage_uri, "conformance", ctx.run_id, "storage-probe.txt")
        entrypoint = shlex.join(
            ["python", "-m", "park.conformance.probe", "storage-roundtrip", "--uri", uri, "--nonce", nonce]
        )
        status, message, logs = self.run_job("storage", entrypoint, {}, self._time_left(120))
        from park.conformance.probe import parse_result

        reported = parse_result(logs)
        if status != "SUCCEEDED" or reported is None:
            raise CheckFailed(
                f"the storage probe job {status}: {message or 'no result printed'}; last output: {tail(logs)}"
            )
        back = storage.read_text(uri)  # read back here, outside Ray, the way a reader of results would
        if back != nonce:
            raise CheckFailed(
                f"{uri} holds {len(back)} bytes that differ from the {len(nonce)} written by the Ray "
                f"worker on {reported['host']}"
            )
        digest = hashlib.sha256(back.encode()).hexdigest()
        return Passed(
            f"a Ray worker wrote {uri} and it reads back byte for byte here (sha256 {digest[:12]}…)",
            {"uri": uri, "sha256": digest, "worker_host": reported["host"]},
        )

    def check_train(self, ctx: RunContext) -> Passed:
        from park.conformance import workload_checks

        return workload_checks.local_train(self, ctx)

    def check_batch(self, ctx: RunContext) -> Passed:
        from park.conformance import workload_checks

        return workload_checks.local_batch(self, ctx)

    def check_serve(self, ctx: RunContext) -> Passed:
        from park.conformance import workload_checks

        return workload_checks.local_serve(self, ctx)

    def check_ray_metrics(self, ctx: RunContext) -> Passed:
        from park.conformance import workload_checks

        return workload_checks.local_ray_metrics(self, ctx)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _df_avail_gib(host, path: str) -> float:
    """Free space (GiB) of the filesystem holding ``path``, from POSIX ``df -Pk``."""
    output = host.check_output(f"df -Pk {shlex.quote(path)}")
    return round(int(output.splitlines()[-1].split()[3]) / 2**20, 2)
