"""The rendered train and batch RayJobs, run unchanged through Ray's real Jobs API.

There is no Kubernetes here, so KubeRay's part (create the RayCluster, submit the job) is played by a local
`ray start --head` and JobSubmissionClient — the same API KubeRay's submitter calls. The entrypoint and
runtimeEnvYAML come from the kind stack's RayJobs as rendered, with one change: the kind storage URI
(file:///mnt/park-storage, a host folder mounted into kind nodes, absent here) is replaced by a temp folder.

The head gets free ports and its own --temp-dir; at the end the test stops the processes it started (its
process group, then anything still running from its temp dir) — never `ray stop`, which would stop every
Ray on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from park.workloads.batch import manifest as batch_manifest
from park.workloads.train import manifest as train_manifest
from schemas import shipped_specs

HEAD_START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 420
STOP_GRACE_S = 20
POLL_S = 2

pytestmark = pytest.mark.ray


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_head(process: subprocess.Popen, temp_dir: Path) -> None:
    """SIGTERM our `ray start --block` session, then SIGKILL whatever of ours is left: processes in its
    process group, and processes whose command line names our temp folder."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    survivors = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if str(temp_dir) in cmdline or os.getpgid(proc.pid) == process.pid:
                survivors.append(proc)
        except (psutil.Error, ProcessLookupError):
            continue
    for proc in survivors:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(survivors, timeout=STOP_GRACE_S)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray head on free ports, 2 CPUs, files in a fresh temp folder; yields a JobSubmissionClient."""
    from ray.job_submission import JobSubmissionClient

    temp_dir = tmp_path_factory.mktemp("rayhead")
    dashboard_port = free_port()
    command = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--num-cpus=2",
        f"--temp-dir={temp_dir}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--port={free_port()}", f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}", f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
           # job entrypoints say `python`: make that this venv's interpreter, as it is the image's on KubeRay
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    log = (temp_dir / "ray-start.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.monotonic() + HEAD_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"ray start exited {process.returncode}:\n{(temp_dir / 'ray-start.log').read_text()}")
            try:
                client = JobSubmissionClient(address)
                client.list_jobs()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    pytest.fail(f"Ray head not ready after {HEAD_START_TIMEOUT_S}s")
                time.sleep(POLL_S)
        yield client
    finally:
        _stop_head(process, temp_dir)
        log.close()


@pytest.fixture(scope="module")
def kind_spec():
    return shipped_specs()["kind"]


def submit_rendered(client, job: dict, storage_uri: str, local_storage: Path) -> str:
    """Submit a RayJob's entrypoint and runtimeEnvYAML as rendered, storage URI swapped for a temp folder."""
    entrypoint = job["spec"]["entrypoint"].replace(storage_uri, f"file://{local_storage}")
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)


def wait_until_done(client, job_id: str) -> None:
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + JOB_TIMEOUT_S
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            pytest.fail(f"job {job_id} still {status} after {JOB_TIMEOUT_S}s:\n{client.get_job_logs(job_id)[-4000:]}")
        time.sleep(POLL_S)
        status = client.get_job_status(job_id)
    assert status == JobStatus.SUCCEEDED, f"job {job_id} ended {status}:\n{client.get_job_logs(job_id)[-6000:]}"


def test_rendered_train_rayjob_succeeds_through_the_jobs_api(ray_head, kind_spec, tmp_path):
    job = train_manifest.build_rayjob(kind_spec)
    job_id = submit_rendered(ray_head, job, kind_spec.storage_uri, tmp_path)
    wait_until_done(ray_head, job_id)
    run_dir = tmp_path / train_manifest.CHECKPOINT_FOLDER / train_manifest.NAME
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["epochs"] == list(range(1, train_manifest.DEFAULT_EPOCHS + 1))
    assert len(summary["checkpoints"]) == train_manifest.DEFAULT_EPOCHS


def test_rendered_batch_rayjob_succeeds_through_the_jobs_api(ray_head, kind_spec, tmp_path):
    job = batch_manifest.build_rayjob(kind_spec)
    job_id = submit_rendered(ray_head, job, kind_spec.storage_uri, tmp_path)
    wait_until_done(ray_head, job_id)
    output = tmp_path / batch_manifest.OUTPUT_FOLDER
    summary = json.loads((output / "summary.json").read_text())
    assert summary["exact"] is True and summary["rows_out"] == batch_manifest.DEFAULT_ROWS
    assert (output / "_SUCCESS").exists()
