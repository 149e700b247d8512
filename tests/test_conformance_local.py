"""``park conformance --target local`` for real: an embedded Ray head, the three workloads, evidence.

The full run is expensive (Ray head, training, batch inference, vLLM on Serve), so it happens once per
module and several tests read its evidence. Each failure injection is its own small run selected with
``--only``, and each must end non-zero, name the failed check and why, and still write the evidence.
Every run is the installed ``park`` command in a subprocess, in a fresh working folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest
from park.conformance.cli import INJECT_BATCH_ENV, INJECT_TRAIN_ENV
from park.conformance.context import workdir_prefix
from park.conformance.layers import workloads
from park.conformance.targets import LOCAL_CHECKS

pytestmark = [pytest.mark.ray, pytest.mark.vllm]

PARK = str(Path(sys.executable).parent / "park")
FULL_RUN_TIMEOUT_S = 1200


def park(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PARK, "conformance", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def evidence_dir(output: str) -> Path:
    line = next(line for line in output.splitlines() if line.startswith("evidence: "))
    return Path(line.removeprefix("evidence: ").strip())


def results_of(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def checks_of(out: Path) -> dict[str, dict]:
    return {c["name"]: c for c in results_of(out)["checks"]}


def leftovers(run_id: str) -> list[str]:
    """Processes or temp folders of that run still around (everything it creates carries the run id)."""
    marker = workdir_prefix(run_id)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or ()):
                found.append(f"pid {proc.pid}: {' '.join(proc.info['cmdline'])[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    found += [str(p) for p in Path("/tmp").glob(f"{marker}*")]
    import tempfile

    found += [str(p) for p in Path(tempfile.gettempdir()).glob(f"{marker}*") if str(p) not in found]
    return found


def remove_kept(run_id: str) -> None:
    """Stop what a --keep run left (its Ray processes, by the run's temp dir in their command line)."""
    import shutil
    import tempfile

    marker = workdir_prefix(run_id)
    mine = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or ()):
                mine.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for proc in mine:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(mine, timeout=10)
    for folder in Path(tempfile.gettempdir()).glob(f"{marker}*"):
        shutil.rmtree(folder, ignore_errors=True)


# --- the full local run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("full-run")
    started = time.monotonic()
    proc = park("--target", "local", cwd=cwd, timeout=FULL_RUN_TIMEOUT_S)
    wall = time.monotonic() - started
    print(
        f"\nfull local run: exit {proc.returncode} in {wall:.1f} s\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    )
    return proc, evidence_dir(proc.stdout), wall


def test_full_local_run_passes_and_prints_where_the_evidence_is(full_run):
    proc, out, _ = full_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "PASSED:" in proc.stdout
    assert out.parent.name.startswith("full-run") and out.name.startswith("conformance-")
    assert out.is_dir()


def test_every_local_check_passed_and_cluster_checks_are_not_applicable(full_run):
    _, out, _ = full_run
    checks = checks_of(out)
    failed = {n: c["reason"] for n, c in checks.items() if c["status"] == "failed"}
    assert not failed
    gpu_expected = [n for n in LOCAL_CHECKS if checks[n]["status"] == "not_applicable"]
    assert gpu_expected in ([], ["accelerators.gpu-visible"])  # no GPU here: the GPU check does not apply
    for name, check in checks.items():
        if name in LOCAL_CHECKS and name not in gpu_expected:
            assert check["status"] == "passed", (name, check["reason"])
        elif name not in LOCAL_CHECKS:
            assert check["status"] == "not_applicable", name
            assert "needs a Kubernetes cluster" in check["reason"]


def test_junit_and_results_are_well_formed(full_run):
    _, out, _ = full_run
    suites = ET.parse(out / "junit.xml").getroot()
    suite = suites.find("testsuite")
    assert int(suite.get("tests")) > 0 and suite.get("failures") == "0" and suite.get("errors") == "0"
    passed = [
        c.get("name")
        for c in suite.iter("testcase")
        if c.find("failure") is None and c.find("skipped") is None
    ]
    assert {"workloads.train", "workloads.batch", "workloads.post-train", "workloads.serve"} <= set(passed)
    results = results_of(out)
    assert results["verdict"] == "passed" and results["target"] == "local"
    assert results["platform_under_test"] is False
    assert results["layer_seconds"]["workloads"] > results["layer_seconds"]["infrastructure"] > 0
    assert {r["status"] for r in results["requirements"]} <= {"not_applicable", "not_covered"}
    log = (out / "e2e.log").read_text()
    for name in ("workloads.train", "workloads.batch", "workloads.serve"):
        assert f"--- {name}: passed" in log
    assert "park.workloads.train" in log and "cleanup: stop the run's Ray head" in log
    report = (out / "report.md").read_text()
    assert "# park conformance — local — PASSED" in report
    if "accelerators.gpu-visible" not in [
        c.get("name") for c in suite.iter("testcase") if c.find("skipped") is None
    ]:
        assert "the workloads run on CPU" in report


def test_workload_outcomes_were_verified_not_just_their_job_status(full_run):
    _, out, _ = full_run
    checks = checks_of(out)
    train = checks["workloads.train"]["details"]
    assert train["final_accuracy"] >= train["min_accuracy"] > 0.1
    assert train["latest_checkpoint"]["tensors"] > 0 and train["epochs"] >= 1
    batch = checks["workloads.batch"]["details"]
    assert batch["rows_in"] == batch["rows_out"] > 0
    assert (batch["missing"], batch["duplicated"], batch["unexpected"]) == (0, 0, 0)
    serve = checks["workloads.serve"]["details"]
    assert serve["content"] == serve["reference_text"] and serve["usage"]["completion_tokens"] > 0
    assert checks["storage.read-write"]["details"]["sha256"]
    assert any(
        name.startswith("ray_serve_")
        for name in checks["observability.ray-metrics"]["details"]["ray_families"]
    )


def test_post_train_raised_its_reward_stayed_on_policy_resumed_and_left_its_curve(full_run):
    """The check's own figures, re-read from its evidence: the margin and the tolerance it judged against,
    the resume after the learner it had killed, and the reward curve as CSV and PNG linked from report.md."""
    _, out, _ = full_run
    details = checks_of(out)["workloads.post-train"]["details"]
    assert details["reward_gain"] >= details["min_reward_gain"] > 0, details
    assert details["logprob_max_abs_diff"] <= details["logprob_tolerance"] == 1e-3, details
    assert details["learner_killed_in_step"] == workloads.POSTTRAIN_FAULT_AFTER_STEP + 1
    assert workloads.POSTTRAIN_FAULT_AFTER_STEP in details["resumed_from_steps"]
    assert details["newest_checkpoint"]["step"] == workloads.POSTTRAIN_STEPS
    rows = (out / "workloads.post-train.csv").read_text().splitlines()
    assert rows[0].startswith("step,reward_mean") and len(rows) == 1 + workloads.POSTTRAIN_STEPS
    assert (out / "workloads.post-train.png").read_bytes().startswith(b"\x89PNG")
    assert "![post-training reward per step](workloads.post-train.png)" in (out / "report.md").read_text()


def test_the_run_leaves_nothing_behind(full_run):
    _, out, _ = full_run
    assert leftovers(results_of(out)["run_id"]) == []


# --- failure injection ------------------------------------------------------------------------------


def test_a_model_path_that_does_not_exist_fails_workloads_serve(tmp_path):
    proc = park(
        "--only", "workloads.serve", "--model", "/nonexistent", "--out", str(tmp_path / "ev"), cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert (
        "FAILED workloads.serve: --model /nonexistent: model path '/nonexistent' does not exist"
        in proc.stdout
    )
    check = checks_of(tmp_path / "ev")["workloads.serve"]
    assert check["status"] == "failed"
    junit = ET.parse(tmp_path / "ev" / "junit.xml").getroot()
    failure = next(c for c in junit.iter("testcase") if c.get("name") == "workloads.serve").find("failure")
    assert "/nonexistent" in failure.get("message")
    assert results_of(tmp_path / "ev")["verdict"] == "failed"


def test_training_that_misses_its_accuracy_bar_fails_and_keeps_its_checkpoints(tmp_path):
    proc = park(
        "--only",
        "workloads.train",
        "--keep",
        "--out",
        str(tmp_path / "ev"),
        cwd=tmp_path,
        env={INJECT_TRAIN_ENV: "1.0"},
    )
    run_id = results_of(tmp_path / "ev")["run_id"]
    try:
        assert proc.returncode == 1, proc.stdout[-3000:]
        assert "FAILED workloads.train: final test accuracy 0." in proc.stdout
        assert re.search(
            r"is below the bar 1 after 3 epoch\(s\) on (cpu|cuda) \(job FAILED\); checkpoints kept at "
            r"file://",
            proc.stdout,
        )
        details = checks_of(tmp_path / "ev")["workloads.train"]["details"]
        checkpoints = [Path(uri.removeprefix("file://")) for uri in details["checkpoints"]]
        assert checkpoints and all((c / "state.pt").is_file() for c in checkpoints)  # left readable
        assert results_of(tmp_path / "ev")["options"]["injections"] == ["train min accuracy 1.0"]
    finally:
        remove_kept(run_id)


def test_batch_that_loses_rows_fails_naming_the_missing_ids(tmp_path):
    proc = park(
        "--only", "workloads.batch", "--out", str(tmp_path / "ev"), cwd=tmp_path, env={INJECT_BATCH_ENV: "25"}
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert (
        "FAILED workloads.batch: output is not exactly the input rows: 25 of 2000 input ids missing"
        in proc.stdout
    )
    details = checks_of(tmp_path / "ev")["workloads.batch"]["details"]
    assert (details["missing"], details["rows_out"]) == (25, 1975)
    assert leftovers(results_of(tmp_path / "ev")["run_id"]) == []


# --- interruption, concurrency, usage errors ---------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_writes_evidence_and_cleans_up(tmp_path, signum):
    out = tmp_path / "ev"
    proc = subprocess.Popen(
        [PARK, "conformance", "--only", "workloads.train", "--out", str(out)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "running  workloads.train" in line:
            break
    time.sleep(3)  # the training job is submitted and running
    proc.send_signal(signum)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + rest
    results = results_of(out)
    assert results["verdict"] == "interrupted"
    assert checks_of(out)["workloads.train"]["reason"].startswith("interrupted")
    assert leftovers(results["run_id"]) == []


def test_two_concurrent_runs_do_not_collide(tmp_path):
    runs = [
        subprocess.Popen(
            [PARK, "conformance", "--only", "storage", "--out", str(tmp_path / f"ev{i}")],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    first, second = (checks_of(tmp_path / f"ev{i}") for i in range(2))
    assert first["operators.ray-head"]["details"]["ports"] != second["operators.ray-head"]["details"]["ports"]
    assert first["storage.read-write"]["details"]["uri"] != second["storage.read-write"]["details"]["uri"]


def test_usage_errors_exit_2_with_the_reason(tmp_path):
    bad_layer = park("--only", "workload", cwd=tmp_path)
    assert bad_layer.returncode == 2 and "--only 'workload': not a layer or check" in bad_layer.stdout
    cloud_stack = park("--stack", "aws", "--out", str(tmp_path / "aws"), cwd=tmp_path)
    assert cloud_stack.returncode == 2
    assert "--stack aws: the aws stack describes a cloud cluster" in cloud_stack.stdout
    assert results_of(tmp_path / "aws")["setup_error"]
    no_cluster = park(
        "--target",
        "kubernetes",
        "--stack",
        "kind",
        "--kubeconfig",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "k8s"),
        cwd=tmp_path,
    )
    assert no_cluster.returncode == 2 and "no usable kubeconfig" in no_cluster.stdout
    assert ET.parse(tmp_path / "k8s" / "junit.xml").getroot().get("tests") != "0"
    listing = park("--list", cwd=tmp_path)
    assert listing.returncode == 0 and "workloads.serve" in listing.stdout


def test_pytest_form_runs_the_same_checks(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(Path(__file__).parents[1] / "conformance"),
            "-k",
            "infrastructure.host or operators.ray-head or storage",
            "-q",
            "-p",
            "no:cacheprovider",
            "--evidence",
            str(tmp_path / "ev"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "3 passed" in proc.stdout
    names = {c["name"]: c["status"] for c in results_of(tmp_path / "ev")["checks"]}
    assert names == {
        "infrastructure.host": "passed",
        "operators.ray-head": "passed",
        "storage.read-write": "passed",
    }
