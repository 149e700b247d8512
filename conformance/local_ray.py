"""A Ray head this run starts for itself, on ports nobody else uses, and stops without touching any other Ray.

``ray start --head --block`` runs in its own process session with every port chosen free (GCS, dashboard,
agents, metrics, node and object managers, client server; worker ports random) and ``--temp-dir`` inside
the run's scratch folder, with ``RAY_AUTH_MODE=disabled`` so it writes nothing under the home folder.
Stopping never uses ``ray stop`` (which would stop every Ray on the machine): it signals exactly the
processes this head started — its process tree, plus any process whose command line names this run's
temp dir (workers re-parented after their raylet died) — SIGTERM first, SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

START_TIMEOUT_S = 90.0
STOP_GRACE_S = 3.0
PORT_NAMES = (
    "port",
    "dashboard-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "node-manager-port",
    "object-manager-port",
    "ray-client-server-port",
)


MAX_TEMP_DIR_CHARS = 43
"""Ray puts ``session_<date>_<pid>/sockets/plasma_store`` (~64 characters) under --temp-dir, and a Unix
socket path may not exceed 107 bytes."""


class RayStartError(RuntimeError):
    """The head did not come up; the message holds the tail of ``ray start``'s output."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now (bound together, then released, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def local_environment() -> dict[str, str]:
    """The environment for the Ray head and the jobs it runs: this interpreter's bin folder first on PATH
    (a RayJob entrypoint says ``python -m park.workloads...``), no auth token, no usage stats, no hub."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_AUTH_MODE"] = "disabled"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


@dataclass
class LocalRayHead:
    temp_dir: Path
    """Ray's --temp-dir: sessions, logs and sockets of this head only (keep the path short: socket names)."""
    num_cpus: int
    num_gpus: int | None = None
    process: subprocess.Popen | None = None
    ports: dict[str, int] | None = None
    started_in_s: float | None = None

    @property
    def dashboard_url(self) -> str:
        assert self.ports is not None, "start() first"
        return f"http://127.0.0.1:{self.ports['dashboard-port']}"

    @property
    def metrics_url(self) -> str:
        assert self.ports is not None, "start() first"
        return f"http://127.0.0.1:{self.ports['metrics-export-port']}/metrics"

    @property
    def log_path(self) -> Path:
        return self.temp_dir / "ray-start.log"

    def command(self) -> list[str]:
        assert self.ports is not None
        ray = str(Path(sys.executable).parent / "ray")
        args = [
            ray,
            "start",
            "--head",
            "--block",
            "--disable-usage-stats",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--temp-dir={self.temp_dir}",
            f"--num-cpus={self.num_cpus}",
            "--min-worker-port=0",
            "--max-worker-port=0",
        ]
        if self.num_gpus is not None:
            args.append(f"--num-gpus={self.num_gpus}")
        args += [f"--{name}={port}" for name, port in self.ports.items()]
        return args

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the head and wait until its dashboard answers; raise RayStartError with the output tail."""
        if len(str(self.temp_dir)) > MAX_TEMP_DIR_CHARS:
            raise RayStartError(
                f"--temp-dir {self.temp_dir} is longer than {MAX_TEMP_DIR_CHARS} characters; Ray's "
                f"socket paths under it would pass the 107-byte limit (set TMPDIR=/tmp)"
            )
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        began = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=local_environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while time.monotonic() - began < timeout_s:
            if self.process.poll() is not None:
                raise RayStartError(f"ray start exited with {self.process.returncode}: {self.output_tail()}")
            try:
                if httpx.get(f"{self.dashboard_url}/api/version", timeout=2).status_code == 200:
                    self.started_in_s = time.monotonic() - began
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RayStartError(
            f"the Ray dashboard did not answer within {timeout_s:.0f} s: {self.output_tail()}"
        )

    def output_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())

    def own_processes(self) -> list[psutil.Process]:
        """Every live process this head started: its tree, plus strays whose command line names its temp
        dir."""
        found: dict[int, psutil.Process] = {}
        if self.process is not None:
            try:
                root = psutil.Process(self.process.pid)
                found[root.pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = child
            except psutil.NoSuchProcess:
                pass
        marker = str(self.temp_dir)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(marker in part for part in proc.info["cmdline"] or ()):
                    found.setdefault(proc.pid, proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self, grace_s: float = STOP_GRACE_S) -> list[int]:
        """Stop this head's processes; returns pids still alive afterwards (none, unless the kernel refused).

        The raylet gets SIGTERM first and ``grace_s`` to stop its workers (what ``ray stop`` does); the rest
        (GCS, dashboard, agents) are then killed: they wait on each other at SIGTERM and hold nothing this
        scratch cluster needs to flush. Strays that appear meanwhile are swept twice.
        """
        processes = self.own_processes()
        raylets = [p for p in processes if _name(p) == "raylet"]
        for proc in raylets:
            _signal(proc, signal.SIGTERM)
        psutil.wait_procs(raylets, timeout=grace_s)
        for _ in range(2):
            rest = self.own_processes()
            for proc in rest:
                _signal(proc, signal.SIGKILL)
            psutil.wait_procs(rest, timeout=5)
        if self.process is not None:
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        return [p.pid for p in self.own_processes() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def _signal(proc: psutil.Process, signum: int) -> None:
    try:
        proc.send_signal(signum)
    except psutil.Error:
        pass
