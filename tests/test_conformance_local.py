"""``park conformance --target local`` for real: an embedded Ray head, the workloads, evidence.

The full run is expensive (Ray head, training, batch inference, post-training, vLLM on Serve), so it happens
once per module and several tests read its evidence. That evidence is also where the rendered workloads are
proven to run: the train and batch checks submit the kind stack's RayJobs (entrypoint and runtimeEnvYAML)
through Ray's Jobs API and the serve check PUTs the kind stack's Serve config to Serve's REST API, so tests
here compare what the run logged and recorded with what ``park render kind`` gives, instead of running the
workloads a second time.

Failure injections share runs, each test reading its own check: one ``--keep`` run fails training (bar 1.0)
and serving (a model path that does not exist) and keeps the checkpoints; one run without ``--keep`` loses
batch rows, beside (at the same time as) the pytest form of the suite, so the same pair of runs shows a
failed run cleaning up after itself, the pytest form's verdicts, and two concurrent runs not colliding.
Every failing run must end non-zero, name the failed check and why, and still write the evidence. Every run
is the installed ``park`` command (or ``pytest conformance/``) in a subprocess, in a fresh working folder.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml
from park.conformance.cli import INJECT_BATCH_ENV, INJECT_TRAIN_ENV
from park.conformance.context import workdir_prefix
from park.conformance.layers import workloads
from park.conformance.targets import LOCAL_CHECKS
from park.workloads.batch import manifest as batch_manifest
from park.workloads.serve.config import serve_config
from park.workloads.train import loop as train_loop
from park.workloads.train import manifest as train_manifest
from schemas import shipped_specs

pytestmark = [pytest.mark.ray, pytest.mark.vllm]

PARK = str(Path(sys.executable).parent / "park")
FULL_RUN_TIMEOUT_S = 1200
KIND = shipped_specs()["kind"]
"""The stack a local run uses when none is given (its results.json names the file)."""


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
    found += [str(p) for p in Path(tempfile.gettempdir()).glob(f"{marker}*") if str(p) not in found]
    return found


def remove_kept(run_id: str) -> None:
    """Stop what a --keep run left (its Ray processes, by the run's temp dir in their command line)."""
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


def command_and_flags(entrypoint: str) -> tuple[list[str], list[tuple[str, str]]]:
    """An entrypoint's command (``python -m <module>``) and its ``--flag value`` pairs, in order."""
    argv = shlex.split(entrypoint)
    first = next(i for i, arg in enumerate(argv) if arg.startswith("--"))
    rest = argv[first:]
    assert len(rest) % 2 == 0 and all(arg.startswith("--") for arg in rest[::2]), entrypoint
    return argv[:first], list(zip(rest[::2], rest[1::2], strict=True))


def scratch_storage(run_id: str, uri: str) -> str:
    """The storage root ``uri`` starts with, which must be the run's: ``storage`` in its scratch folder."""
    root = re.match(
        rf"file://{re.escape(tempfile.gettempdir())}/{re.escape(workdir_prefix(run_id))}[^/]+/storage(?=/)",
        uri,
    )
    assert root, f"{uri} is not under the run's scratch storage"
    return root.group(0)


def submitted_job(out: Path, submission_id: str) -> tuple[str, dict]:
    """(entrypoint, runtime_env) of a job the run submitted through the Jobs API, as e2e.log records it."""
    logged = re.search(
        rf"submitting job {re.escape(submission_id)}: (.*) \(runtime_env (\{{.*\}})\)$",
        (out / "e2e.log").read_text(),
        re.MULTILINE,
    )
    assert logged, f"e2e.log records no submission of {submission_id}"
    return logged.group(1), ast.literal_eval(logged.group(2))


def as_submitted_locally(runtime_env_yaml: str) -> dict:
    """A rendered runtimeEnvYAML as the local target submits it: token auth off for the run's own head."""
    runtime_env = yaml.safe_load(runtime_env_yaml)
    return {**runtime_env, "env_vars": {**runtime_env["env_vars"], "RAY_AUTH_MODE": "disabled"}}


def run_name(run_id: str) -> str:
    """``park-conf-<run id>``: what a run names everything it creates (RunContext.name)."""
    return f"park-conf-{run_id}"


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


def ran_as_rendered(
    out: Path, check: str, rendered: dict, storage_flag: str, run_changes: Callable[[str, str], dict[str, str]]
) -> dict:
    """Assert that ``check`` submitted ``rendered``'s entrypoint (logged at submission, recorded in its details)
    with the same command and flags, changed only where the run must: the kind storage root replaced by the run's
    scratch storage (read from ``storage_flag``) and the flags ``run_changes(job name, root)`` gives; the same
    runtimeEnvYAML (plus token auth off); and that the job SUCCEEDED. Returns the check's details."""
    results = results_of(out)
    details = checks_of(out)[check]["details"]
    name = f"{run_name(results['run_id'])}-{check.removeprefix('workloads.')}"
    entrypoint, runtime_env = submitted_job(out, name)
    assert entrypoint == details["entrypoint"]
    command, flags = command_and_flags(entrypoint)
    root = scratch_storage(results["run_id"], dict(flags)[storage_flag])
    changes = run_changes(name, root)
    rendered_command, rendered_flags = command_and_flags(rendered["spec"]["entrypoint"])
    expected = [(flag, changes.get(flag, value.replace(KIND.storage_uri, root))) for flag, value in rendered_flags]
    assert (command, flags) == (rendered_command, expected)
    assert runtime_env == as_submitted_locally(rendered["spec"]["runtimeEnvYAML"])
    assert details["job_status"] == "SUCCEEDED"
    return details


def test_the_train_check_ran_the_kind_stacks_rendered_rayjob_through_the_jobs_api_for_every_epoch(full_run):
    """The job the train check submitted is the kind stack's training RayJob as ``park render kind`` gives it
    (train_manifest.build_rayjob): the same command and flags with the same values, but for the storage root (the
    run's scratch storage for the kind nodes' host folder, absent here) and the run's own --run-name; the
    same runtimeEnvYAML (plus token auth off for the run's head). It SUCCEEDED and left one checkpoint per epoch."""
    _, out, _ = full_run
    assert Path(results_of(out)["environment"]["stack"]).name == "Pulumi.kind.yaml"
    details = ran_as_rendered(
        out, "workloads.train", train_manifest.build_rayjob(KIND), "--storage-uri",
        lambda name, root: {"--run-name": name},
    )
    epochs = range(1, train_manifest.DEFAULT_EPOCHS + 1)
    assert details["epochs"] == len(details["accuracies"]) == len(epochs)
    assert [uri.rsplit("/", 1)[-1] for uri in details["checkpoints"]] == [
        train_loop.checkpoint_dir_name(epoch) for epoch in epochs
    ]
    assert details["latest_checkpoint"]["epoch"] == epochs[-1]


def test_the_batch_check_ran_the_kind_stacks_rendered_rayjob_through_the_jobs_api_exactly_once_per_row(
    full_run,
):
    """The job the batch check submitted is the kind stack's batch RayJob as ``park render kind`` gives it
    (batch_manifest.build_rayjob): the same command and flags with the same values, but for the storage root,
    the run's own output folder and --rows (the check's smaller BATCH_ROWS); the same runtimeEnvYAML (plus token
    auth off). It SUCCEEDED; the check read every input id back exactly once, and the workload's own verdict
    and its ``_SUCCESS`` marker agree."""
    _, out, _ = full_run
    details = ran_as_rendered(
        out, "workloads.batch", batch_manifest.build_rayjob(KIND), "--input-uri",
        lambda name, root: {"--output-uri": f"{root}/batch/{name}", "--rows": str(workloads.BATCH_ROWS)},
    )
    assert details["rows_in"] == details["rows_out"] == workloads.BATCH_ROWS and details["exact"] is True
    assert details["job_verdict"] is True and details["success_marker"] is True


def test_the_serve_check_deployed_the_kind_stacks_serve_config_and_answered_as_transformers_does(full_run):
    """What the serve check PUT to Serve's REST API is the kind stack's serve_config (which
    tests/test_serve_deploy.py proves is the rendered RayService's serveConfigV2) with only the model's source
    changed (the tiny Llama built in the run's scratch folder, for the kind nodes' host folder) and the run's
    own HTTP options; the answer named the kind model and equals transformers' greedy output of that model."""
    _, out, _ = full_run
    details = checks_of(out)["workloads.serve"]["details"]
    logged = re.search(r"deploying Serve config: (.*)$", (out / "e2e.log").read_text(), re.MULTILINE)
    assert logged, "e2e.log records no Serve deploy"
    deployed = json.loads(logged.group(1))
    (model,) = KIND.models
    moved = KIND.model_copy(update={"models": [model.model_copy(update={"source": details["model_path"]})]})
    http = {"host": "127.0.0.1", "port": deployed["http_options"]["port"]}
    assert deployed == {**serve_config(moved), "proxy_location": "HeadOnly", "http_options": http}
    assert details["model_path"].startswith(
        f"{tempfile.gettempdir()}/{workdir_prefix(results_of(out)['run_id'])}"
    )
    assert details["model"] == model.name
    assert details["content"] == details["reference_text"] and details["usage"]["completion_tokens"] > 0


# --- failure injection ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kept_failures(tmp_path_factory):
    """One --keep run in which training misses an injected bar of 1.0 and serving gets a model path that does
    not exist; what it kept is removed after the module."""
    cwd = tmp_path_factory.mktemp("kept-failures")
    out = cwd / "ev"
    proc = park(
        "--only",
        "workloads.train,workloads.serve",
        "--model",
        "/nonexistent",
        "--keep",
        "--out",
        str(out),
        cwd=cwd,
        env={INJECT_TRAIN_ENV: "1.0"},
    )
    yield proc, out
    remove_kept(results_of(out)["run_id"])


@pytest.fixture(scope="module")
def failing_batch_beside_pytest_form(tmp_path_factory):
    """Two runs started together: ``park conformance --only storage,workloads.batch`` losing 25 batch rows
    (no --keep), and the pytest form of the suite on the first layers. Once both ended: the pytest form's
    process, output and evidence folder, then the CLI run's."""
    cwd = tmp_path_factory.mktemp("concurrent")
    logs = {name: (cwd / f"{name}.log").open("w+") for name in ("pytest", "cli")}
    pytest_form = subprocess.Popen(
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
            str(cwd / "ev-pytest"),
        ],
        cwd=cwd,
        stdout=logs["pytest"],
        stderr=subprocess.STDOUT,
        text=True,
    )
    cli = subprocess.Popen(
        [PARK, "conformance", "--only", "storage,workloads.batch", "--out", str(cwd / "ev-cli")],
        cwd=cwd,
        env={**os.environ, INJECT_BATCH_ENV: "25"},
        stdout=logs["cli"],
        stderr=subprocess.STDOUT,
        text=True,
    )
    for proc in (pytest_form, cli):
        proc.wait(timeout=600)
    output = {}
    for name, log in logs.items():
        log.seek(0)
        output[name] = log.read()
        log.close()
    return pytest_form, output["pytest"], cwd / "ev-pytest", cli, output["cli"], cwd / "ev-cli"


def test_a_model_path_that_does_not_exist_fails_workloads_serve(kept_failures):
    proc, out = kept_failures
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert (
        "FAILED workloads.serve: --model /nonexistent: model path '/nonexistent' does not exist"
        in proc.stdout
    )
    check = checks_of(out)["workloads.serve"]
    assert check["status"] == "failed"
    junit = ET.parse(out / "junit.xml").getroot()
    failure = next(c for c in junit.iter("testcase") if c.get("name") == "workloads.serve").find("failure")
    assert "/nonexistent" in failure.get("message")
    assert results_of(out)["verdict"] == "failed"


def test_training_that_misses_its_accuracy_bar_fails_and_keeps_its_checkpoints(kept_failures):
    proc, out = kept_failures
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "FAILED workloads.train: final test accuracy 0." in proc.stdout
    assert re.search(
        r"is below the bar 1 after 3 epoch\(s\) on (cpu|cuda) \(job FAILED\); checkpoints kept at file://",
        proc.stdout,
    )
    details = checks_of(out)["workloads.train"]["details"]
    checkpoints = [Path(uri.removeprefix("file://")) for uri in details["checkpoints"]]
    assert checkpoints and all((c / "state.pt").is_file() for c in checkpoints)  # left readable
    assert results_of(out)["options"]["injections"] == ["train min accuracy 1.0"]


def test_batch_that_loses_rows_fails_naming_the_missing_ids_and_the_failed_run_cleans_up(
    failing_batch_beside_pytest_form,
):
    *_, cli, output, out = failing_batch_beside_pytest_form
    assert cli.returncode == 1, output[-3000:]
    assert (
        "FAILED workloads.batch: output is not exactly the input rows: 25 of 2000 input ids missing" in output
    )
    details = checks_of(out)["workloads.batch"]["details"]
    assert (details["missing"], details["rows_out"]) == (25, 1975)
    assert leftovers(results_of(out)["run_id"]) == []


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


def test_two_concurrent_runs_do_not_collide(failing_batch_beside_pytest_form):
    """Started together, each run has a Ray head on ports of its own and storage of its own, and the storage
    check passes in both."""
    _, _, pytest_evidence, _, _, cli_evidence = failing_batch_beside_pytest_form
    first, second = checks_of(pytest_evidence), checks_of(cli_evidence)
    for checks in (first, second):
        assert checks["operators.ray-head"]["status"] == checks["storage.read-write"]["status"] == "passed"
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


def test_pytest_form_runs_the_same_checks(failing_batch_beside_pytest_form):
    proc, output, evidence, *_ = failing_batch_beside_pytest_form
    assert proc.returncode == 0, output[-3000:]
    assert "3 passed" in output
    names = {c["name"]: c["status"] for c in results_of(evidence)["checks"]}
    assert names == {
        "infrastructure.host": "passed",
        "operators.ray-head": "passed",
        "storage.read-write": "passed",
    }
