"""The post-training workload (issue 9): GRPO with vLLM generators and a DDP learner on Ray.

Fast tests check the loss math, the checkpoint layout, the RayJob shapes and that bad input fails before any
Ray work. The Ray/vLLM tests read ONE module fixture (:func:`runs`), which on the session's Ray head (tests/conftest.py):

1. runs the job for ``FIRST_RUN_STEPS`` steps (the builder's command for the same cluster) with a learner
   rank SIGKILLed in step ``FAULT_AFTER_STEP + 1`` (the group is replaced from the newest checkpoint
   within the run);
2. submits the kind stack's rendered RayJob entrypoint unchanged (its storage URI pointed at the same
   folder) through the Jobs API, as KubeRay's submitter would on a retry: it resumes from step
   ``FIRST_RUN_STEPS`` and runs to the manifest's ``DEFAULT_STEPS``, checking the reward margin itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from park.workloads import storage
from park.workloads.posttrain import checkpoint, manifest
from park.workloads.posttrain.cli import app
from park.workloads.posttrain.config import (
    DEFAULT_LOGPROB_TOLERANCE,
    TINY_MODEL,
    ConfigError,
    build_config,
)
from park.workloads.posttrain.learner import Learner, group_advantages, grpo_loss
from park.workloads.posttrain.tasks import digit_share
from park.workloads.serve.tiny import build_tiny_llama
from schemas import shipped_specs
from typer.testing import CliRunner

FAULT_AFTER_STEP = 3
FIRST_RUN_STEPS = 8
MARGIN = manifest.DEFAULT_MIN_REWARD_GAIN
"""The reward gain the tests and the rendered RayJob (``--min-reward-gain``) ask for."""
JOB_TIMEOUT_S = 420
AGENT_WAIT_S = 120
POLL_S = 1


# --- fast: the math ------------------------------------------------------------------------------------


def test_advantages_are_relative_to_each_group():
    advantages = group_advantages([0.0, 1.0, 0.5, 0.5], group_size=2)
    assert advantages[0] < 0 < advantages[1], "the better completion of a group gets the positive advantage"
    assert advantages[2:] == [0.0, 0.0], "a group whose rewards are equal teaches nothing"
    assert abs(sum(advantages[:2])) < 1e-9


def test_loss_raises_the_log_prob_of_the_better_completion_and_kl_is_zero_at_the_reference():
    logprobs = torch.tensor([[-1.0, -1.0], [-1.0, -1.0]], requires_grad=True)
    loss, kl = grpo_loss(logprobs, logprobs.detach().clone(), torch.tensor([1.0, -1.0]), torch.ones(2, 2),
                         kl_coef=0.1)
    loss.backward()
    assert kl.item() == 0.0
    # gradient descent moves logprobs against the gradient: up for advantage +1, down for -1
    assert (logprobs.grad[0] < 0).all() and (logprobs.grad[1] > 0).all(), logprobs.grad


def test_default_reward_is_the_share_of_digits():
    assert digit_share(["p", "p", "p"], ["a1b2", "", "123"]) == [0.5, 0.0, 1.0]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("posttrain-model") / "tiny-llama")


def test_on_policy_check_passes_when_synced_and_catches_a_stale_generator(tiny_model):
    """The stated tolerance separates a generator holding the learner's weights from one a step behind:
    log-probs computed with the current weights deviate ~1e-7; the same log-probs after one update (what a
    generator that missed the sync would report) deviate far beyond the tolerance."""
    learner = Learner(str(tiny_model), rank=0, world_size=1, lr=1e-2, kl_coef=0.02, temperature=1.0, seed=0)
    learner.ddp = learner.policy  # one rank, no process group: the module DDP would wrap
    prompt = learner.policy.generation_config.bos_token_id
    torch.manual_seed(0)
    samples = []
    for _ in range(4):
        completion = torch.randint(10, 400, (12,)).tolist()
        samples.append({"prompt_ids": [prompt, 42, 43], "completion_ids": completion, "logprobs": []})
    ids, attention, _ = learner._batch(samples)
    with torch.no_grad():
        current = learner._token_logprobs(learner.policy, ids, attention)
    for row, sample in enumerate(samples):
        sample["logprobs"] = current[row, 2:2 + 12].tolist()
    synced = learner.learn(samples, [1.0, -1.0, 1.0, -1.0])["logprob_max_abs_diff"]
    stale = learner.learn(samples, [1.0, -1.0, 1.0, -1.0])["logprob_max_abs_diff"]
    assert synced <= DEFAULT_LOGPROB_TOLERANCE / 100, f"same weights, deviation {synced:.2e}"
    assert stale > DEFAULT_LOGPROB_TOLERANCE * 10, f"one step stale, deviation only {stale:.2e}"


# --- fast: checkpoints ---------------------------------------------------------------------------------


def test_newest_complete_checkpoint_wins_and_old_ones_are_pruned(tmp_path):
    run_uri = f"file://{tmp_path}/run"
    for step in (1, 2, 3):
        checkpoint.save_checkpoint(run_uri, step, b"weights", b"optimizer", {"history": []}, keep=2)
    names = sorted(p.name for p in (tmp_path / "run" / checkpoint.CHECKPOINT_FOLDER).iterdir())
    assert names == ["step-000002", "step-000003"]
    # a step-4 upload killed before state.json (the commit mark) is not a checkpoint
    checkpoint.write_bytes(f"{checkpoint.checkpoint_uri(run_uri, 4)}/{checkpoint.MODEL_FILE}", b"half")
    latest = checkpoint.latest_checkpoint(run_uri)
    assert latest is not None and latest.step == 3


def test_reward_log_round_trips_through_csv(tmp_path):
    rows = [{"step": s, "reward_mean": 0.1 * s, "reward_std": 0.0, "generate_s": 0.1, "score_s": 0.0,
             "learn_s": 0.1, "sync_s": 0.1, "logprob_max_abs_diff": 1e-6, "tokens_generated": 64,
             "loss": 0.5} for s in (1, 2)]
    checkpoint.write_rewards_csv(str(tmp_path), rows)
    header = (tmp_path / checkpoint.REWARDS_FILE).read_text().splitlines()[0]
    assert header == ",".join(checkpoint.REWARD_COLUMNS)
    assert [r["step"] for r in checkpoint.read_rewards_csv(str(tmp_path))] == [1, 2]


def test_a_run_that_breaks_writes_its_summary_beside_the_log_and_reraises(tmp_path, monkeypatch):
    """The loop (actors) is replaced by one that finishes two steps and then breaks; run() itself is real."""
    from park.workloads.posttrain import run as run_module

    class BrokenLoop:
        backend, generators, resumes, learner_restarts = "gloo", [], [], 0

        def __init__(self, config, use_gpu):
            self.config, self.rows, self.checkpoint_uri = config, [], None

        def start_learners(self):
            return 0

        def step(self, step):
            if step == 3:
                raise RuntimeError("storage went away")
            self.rows.append({"step": step, "reward_mean": 0.1, "reward_std": 0.0, "generate_s": 0.1,
                              "score_s": 0.0, "learn_s": 0.1, "sync_s": 0.1, "logprob_max_abs_diff": 1e-6,
                              "tokens_generated": 8})
            checkpoint.write_rewards_csv(self.config.run_uri, self.rows)

        def stop_learners(self):
            pass

    monkeypatch.setattr(run_module, "_Loop", BrokenLoop)
    monkeypatch.setattr(run_module, "_ensure_ray", lambda: None)
    monkeypatch.setattr(run_module, "decide_gpu", lambda config: False)
    monkeypatch.setattr(run_module.ray, "get", lambda refs: [])
    config = build_config(model=TINY_MODEL, storage_uri=str(tmp_path), steps=5)
    with pytest.raises(RuntimeError, match="storage went away"):
        run_module.run(config)
    summary = json.loads((tmp_path / config.run_name / checkpoint.SUMMARY_FILE).read_text())
    assert summary["passed"] is False and "storage went away" in summary["message"]
    assert summary["steps_done"] == 2
    assert [r["step"] for r in checkpoint.read_rewards_csv(config.run_uri)] == [1, 2]


# --- fast: bad input -----------------------------------------------------------------------------------


BAD_INPUT = {
    "unimportable reward": (["--reward", "no_such_module_xyz:score"], "--reward: cannot import module"),
    "reward not a function": (["--reward", "park.workloads.posttrain.tasks:nothing"], "has no function"),
    "group size below 2": (["--group-size", "1"], "--group-size: Input should be greater than or equal to 2"),
    "missing model path": (["--model", "/no/such/model"], "--model: model path '/no/such/model' does not exist"),
    "unsupported storage": (["--storage-uri", "ftp://host/x"], "--storage-uri: unsupported scheme"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_before_any_run(case, monkeypatch, tmp_path):
    extra, expected = BAD_INPUT[case]
    started = []
    monkeypatch.setattr("park.workloads.posttrain.run.run", lambda config: started.append(config))
    args = ["--model", TINY_MODEL, "--storage-uri", str(tmp_path), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output
    assert "Traceback" not in result.output and not started


def test_bad_input_never_imports_ray():
    """Run as the RayJob would (``python -m``), in a fresh interpreter: exit 2 and Ray never imported."""
    code = ("import sys, runpy; sys.argv = ['x', '--model', '/no/such/model', '--storage-uri', '/tmp/x'];\n"
            "try:\n    runpy.run_module('park.workloads.posttrain', run_name='__main__')\n"
            "except SystemExit as exit:\n    print('ray' in sys.modules, exit.code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.split() == ["False", "2"], result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr, result.stderr


def test_build_config_reads_the_fault_hook_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PARK_POSTTRAIN_FAIL_AFTER_STEP", "4")
    assert build_config(model=TINY_MODEL, storage_uri=str(tmp_path)).fail_after_step == 4
    with pytest.raises(ConfigError, match="--prompts"):
        build_config(model=TINY_MODEL, storage_uri=str(tmp_path), prompts="park.workloads.posttrain.tasks:digit_share")


# --- fast: the RayJob ----------------------------------------------------------------------------------


def _entrypoint_options(job: dict) -> dict[str, str]:
    words = job["spec"]["entrypoint"].split()
    assert words[:3] == ["python", "-m", "park.workloads.posttrain"]
    return dict(zip(words[3::2], words[4::2]))


def _ray_resources(group: dict) -> dict:
    raw = group["rayStartParams"].get("resources")
    return json.loads(json.loads(raw)) if raw else {}


def test_gpu_stack_puts_learners_on_whole_gpus_and_engines_on_shared_ones():
    job = manifest.build_rayjob(shipped_specs()["aws"])
    groups = {g["groupName"]: g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    options = _entrypoint_options(job)
    learner_gpus = int(groups["learners"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    generator_gpus = int(groups["generators"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert options["--learner-gpus"] == "1" and int(options["--learners"]) == learner_gpus
    assert float(options["--generator-gpus"]) < 1
    assert int(options["--generators"]) * float(options["--generator-gpus"]) <= generator_gpus
    # each group offers the custom resource its actors ask for, one unit per actor
    assert _ray_resources(groups["learners"]) == {options["--learner-resource"]: int(options["--learners"])}
    assert _ray_resources(groups["generators"]) == {options["--generator-resource"]: int(options["--generators"])}
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"].startswith("research")


@pytest.mark.parametrize("stack", ["aws", "gcp"])
def test_conformance_size_shares_one_gpu_between_learner_and_engine(stack):
    job = manifest.build_rayjob(shipped_specs()[stack], size="conformance")
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    options = _entrypoint_options(job)
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert float(options["--learner-gpus"]) + float(options["--generator-gpus"]) <= 1


def test_kind_stack_runs_on_cpu_within_the_pods_cpus():
    job = manifest.build_rayjob(shipped_specs()["kind"])
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    options = _entrypoint_options(job)
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits and "--learner-resource" not in options
    wanted = int(options["--learners"]) * float(options["--learner-cpus"]) + float(options["--generator-cpus"])
    assert wanted <= group["replicas"] * float(limits["cpu"])


def test_rendered_entrypoint_passes_the_cli_checks(monkeypatch):
    """Every option the builder writes is one the CLI takes, with values it accepts."""
    captured = []
    monkeypatch.setattr("park.workloads.posttrain.run.run", lambda config: captured.append(config) or {})
    for stack, spec in shipped_specs().items():
        words = manifest.build_rayjob(spec)["spec"]["entrypoint"].split()[3:]
        result = CliRunner().invoke(app, words)
        assert captured and captured[-1].steps == manifest.DEFAULT_STEPS, f"{stack}: {result.output}"


# --- Ray + vLLM: one run fixture ------------------------------------------------------------------------


def _run_job(client, submission_id: str, entrypoint: str, runtime_env: dict) -> tuple[object, str, float]:
    """(final status, logs, seconds) of one job through the Jobs API.

    Submission is retried for up to :data:`AGENT_WAIT_S`: the dashboard answers before its agent registers
    ("No available agent to submit job"), and on a loaded machine it may drop the connection; a fixed
    submission id keeps a retry from submitting twice."""
    started = time.monotonic()
    while True:
        try:
            client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id)
            break
        except (RuntimeError, OSError) as err:
            try:
                client.get_job_status(submission_id)
                break  # the first try got through; only its answer was lost
            except (RuntimeError, OSError):
                pass
            if time.monotonic() - started > AGENT_WAIT_S:
                raise RuntimeError(f"could not submit {submission_id} in {AGENT_WAIT_S} s: {err}") from err
            time.sleep(POLL_S)
    status = client.get_job_status(submission_id)
    while not status.is_terminal() and time.monotonic() - started < JOB_TIMEOUT_S:
        time.sleep(POLL_S)
        status = client.get_job_status(submission_id)
    if not status.is_terminal():
        client.stop_job(submission_id)
    return status, client.get_job_logs(submission_id), time.monotonic() - started


@pytest.fixture(scope="module")
def runs(ray_head, tmp_path_factory):
    """Both runs as Ray jobs on the session's Ray head (tests/conftest.py; see the module docstring); yields
    what the tests read."""
    import shlex

    from park.workloads.posttrain.config import FAIL_AFTER_STEP_ENV
    from ray.job_submission import JobStatus, JobSubmissionClient

    scratch = tmp_path_factory.mktemp("posttrain")
    spec = shipped_specs()["kind"]
    job = manifest.build_rayjob(spec)
    options = _entrypoint_options(job)
    storage_uri = f"file://{scratch}/storage"
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    run_dir = scratch / "storage" / manifest.OUTPUT_FOLDER / manifest.NAME
    result: dict = {"run_dir": run_dir}
    client = JobSubmissionClient(ray_head.dashboard_url)
    # 1: the builder's command for the same cluster, fewer steps, no margin, a learner killed once
    first = manifest.entrypoint(
        spec, steps=FIRST_RUN_STEPS, min_reward_gain=None, learners=int(options["--learners"]),
        generators=int(options["--generators"]), learner_cpus=float(options["--learner-cpus"]),
        generator_cpus=float(options["--generator-cpus"]),
        storage_uri=storage.join(storage_uri, manifest.OUTPUT_FOLDER))
    fault_env = {**runtime_env, "env_vars": {**runtime_env["env_vars"], FAIL_AFTER_STEP_ENV: str(FAULT_AFTER_STEP)}}
    status, logs, seconds = _run_job(client, "posttrain-first", shlex.join(first), fault_env)
    assert status == JobStatus.SUCCEEDED, f"first run ended {status}:\n{logs[-6000:]}"
    result["first"] = json.loads((run_dir / checkpoint.SUMMARY_FILE).read_text())
    result["first_csv"] = checkpoint.read_rewards_csv(str(run_dir))
    result["first_s"] = seconds
    # 2: the rendered RayJob unchanged but for its storage folder, as KubeRay's retry would submit it
    entrypoint = job["spec"]["entrypoint"].replace(spec.storage_uri, storage_uri)
    status, logs, seconds = _run_job(client, "posttrain-rerun", entrypoint, runtime_env)
    result.update(job_status=status, job_logs=logs, job_s=seconds, succeeded=status == JobStatus.SUCCEEDED)
    summary_path = run_dir / checkpoint.SUMMARY_FILE
    result["second"] = json.loads(summary_path.read_text()) if summary_path.exists() else None
    result["csv"] = checkpoint.read_rewards_csv(str(run_dir))
    return result


def _second(runs) -> dict:
    assert runs["second"] is not None, f"the job wrote no summary ({runs['job_status']}):\n{runs['job_logs'][-4000:]}"
    return runs["second"]


@pytest.mark.ray
@pytest.mark.vllm
def test_rendered_rayjob_succeeds_through_the_jobs_api(runs):
    assert runs["succeeded"], f"job ended {runs['job_status']}:\n{runs['job_logs'][-6000:]}"


@pytest.mark.ray
@pytest.mark.vllm
def test_reward_of_the_last_steps_beats_the_first_by_the_margin(runs):
    rows = runs["csv"]
    window = _second(runs)["window"]
    first = sum(r["reward_mean"] for r in rows[:window]) / window
    last = sum(r["reward_mean"] for r in rows[-window:]) / window
    curve = ", ".join(f"{r['reward_mean']:.2f}" for r in rows)
    assert last - first >= MARGIN, (f"mean reward of the last {window} steps {last:.3f} vs the first {window} "
                                    f"{first:.3f}: gain {last - first:.3f} < margin {MARGIN}; curve: {curve}")
    assert _second(runs)["reward_gain"] == pytest.approx(last - first)


@pytest.mark.ray
@pytest.mark.vllm
def test_generator_matches_the_learner_after_every_sync(runs):
    rows = runs["csv"]
    worst = max(r["logprob_max_abs_diff"] for r in rows)
    per_step = ", ".join(f"{r['step']}:{r['logprob_max_abs_diff']:.1e}" for r in rows)
    assert _second(runs)["logprob_tolerance"] == DEFAULT_LOGPROB_TOLERANCE
    assert worst <= DEFAULT_LOGPROB_TOLERANCE, (f"generator log-probs off the learner's by {worst:.2e} > "
                                                f"tolerance {DEFAULT_LOGPROB_TOLERANCE:g}; per step {per_step}")
    assert _second(runs)["logprob_max_abs_diff"] == pytest.approx(worst) and _second(runs)["on_policy"]


@pytest.mark.ray
@pytest.mark.vllm
def test_killed_learner_is_replaced_from_the_newest_checkpoint_losing_one_step(runs):
    first = runs["first"]
    assert first["injected_fault"]["step"] == FAULT_AFTER_STEP + 1, first["injected_fault"]
    assert first["learner_restarts"] == 1
    assert first["resumes"][0]["from_step"] == FAULT_AFTER_STEP, first["resumes"]
    assert [r["step"] for r in runs["first_csv"]] == list(range(1, FIRST_RUN_STEPS + 1)), "each step once"


@pytest.mark.ray
@pytest.mark.vllm
def test_rerun_resumes_from_the_newest_checkpoint(runs):
    second = _second(runs)
    assert second["resumed_from_step"] == FIRST_RUN_STEPS, second["resumes"]
    assert second["first_step_this_run"] == FIRST_RUN_STEPS + 1
    assert [r["step"] for r in runs["csv"]] == list(range(1, manifest.DEFAULT_STEPS + 1))
    # the steps of the first run are kept as they were, not redone
    assert runs["csv"][:FIRST_RUN_STEPS] == runs["first_csv"]
    assert second["checkpoint_uri"].endswith(f"step-{manifest.DEFAULT_STEPS:06d}")
