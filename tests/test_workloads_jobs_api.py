"""The rendered train and batch RayJobs, run unchanged through Ray's real Jobs API.

There is no Kubernetes here, so KubeRay's part (create the RayCluster, submit the job) is played by the
session's `ray start --head` (tests/conftest.py) and JobSubmissionClient — the same API KubeRay's submitter
calls. The entrypoint and runtimeEnvYAML come from the kind stack's RayJobs as rendered, with one change: the
kind storage URI (file:///mnt/park-storage, a host folder mounted into kind nodes, absent here) is replaced by
a temp folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from park.workloads.batch import manifest as batch_manifest
from park.workloads.train import manifest as train_manifest
from schemas import shipped_specs

JOB_TIMEOUT_S = 420
POLL_S = 2

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def jobs(ray_head):
    """A JobSubmissionClient on the session's Ray head (tests/conftest.py): 3 CPUs, its own temp folder, this
    venv's interpreter first on the jobs' PATH (entrypoints say `python`, as the image's is on KubeRay)."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(ray_head.dashboard_url)


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


def test_rendered_train_rayjob_succeeds_through_the_jobs_api(jobs, kind_spec, tmp_path):
    job = train_manifest.build_rayjob(kind_spec)
    job_id = submit_rendered(jobs, job, kind_spec.storage_uri, tmp_path)
    wait_until_done(jobs, job_id)
    run_dir = tmp_path / train_manifest.CHECKPOINT_FOLDER / train_manifest.NAME
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["epochs"] == list(range(1, train_manifest.DEFAULT_EPOCHS + 1))
    assert len(summary["checkpoints"]) == train_manifest.DEFAULT_EPOCHS


def test_rendered_batch_rayjob_succeeds_through_the_jobs_api(jobs, kind_spec, tmp_path):
    job = batch_manifest.build_rayjob(kind_spec)
    job_id = submit_rendered(jobs, job, kind_spec.storage_uri, tmp_path)
    wait_until_done(jobs, job_id)
    output = tmp_path / batch_manifest.OUTPUT_FOLDER
    summary = json.loads((output / "summary.json").read_text())
    assert summary["exact"] is True and summary["rows_out"] == batch_manifest.DEFAULT_ROWS
    assert (output / "_SUCCESS").exists()
