"""Workloads: each reference workload runs as the project renders it, and what it produced is verified
independently of the job's own verdict.

- train: the RayJob (locally its entrypoint through the Jobs API); then ``summary.json`` (and locally the
  newest checkpoint) is read from storage: the accuracy must reach the bar, the checkpoint must load and
  agree with the summary.
- batch: the RayJob; then the output Parquet is read and its ids compared with the input's: every input row
  exactly once, nothing else.
- serve: locally the Serve config deployed through Serve's REST API, on clusters the RayService; then an
  OpenAI chat completion is asked for and its answer parsed.

On clusters the RayJobs run at ``size="conformance"`` through Kueue; the runner may lack bucket credentials,
so an unreadable output leaves the verdict to the job. Failures name what was seen and where the evidence is
(storage paths stay readable after the run with ``--keep``; the job logs are in e2e.log).

Adding a workload check: a function per target here, marked ``@checks.local`` / ``@checks.cluster`` (with
``creates=`` the builder of what it submits, for the plan), and its entry in ``checks.py``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import statistics
import time
from collections import Counter
from typing import Any

import httpx
from park.components.spec import ServedModel, StackSpec
from park.conformance import judgements as judge
from park.conformance.context import RunContext
from park.conformance.kube import KubeCluster, judged, wait_until
from park.conformance.layers.table import CheckTable
from park.conformance.local import LocalMachine, flag_value, rayjob_as_job, tail
from park.conformance.local_ray import free_ports
from park.conformance.model import CheckFailed, Passed
from park.workloads import storage
from park.workloads.batch import manifest as batch_manifest
from park.workloads.cluster import WorkloadSize
from park.workloads.posttrain import checkpoint as posttrain_checkpoint
from park.workloads.posttrain import manifest as posttrain_manifest
from park.workloads.posttrain.config import DEFAULT_LOGPROB_TOLERANCE
from park.workloads.serve import app as serve_app
from park.workloads.serve.config import serve_config
from park.workloads.serve.manifest import build_rayservice
from park.workloads.serve.tiny import build_tiny_llama
from park.workloads.train import manifest as train_manifest

checks = CheckTable("workloads")

BATCH_ROWS = 2000
"""Rows the batch check pushes through (the workload's default is 10,000; 2,000 keep the local verdict quick
while still spreading over several blocks and actor batches)."""
SERVE_READY_S = 420.0
"""vLLM's CPU engine starts in ~30 s on an idle 2-core machine; a busy one needs several times that."""
CHAT_MAX_TOKENS = 8
CHAT_PROMPT = "What is the capital of France?"


def _left_at(ctx: RunContext, what: str, uri: str) -> str:
    """Where a failed workload's output is, and whether it outlives the run (local storage is in the run's
    scratch folder, removed at the end unless --keep)."""
    if ctx.options.keep:
        return f"{what} kept at {uri}"
    return f"{what} at {uri} (removed with the run's scratch folder; rerun with --keep to inspect them)"


def run_rayjob(cluster: KubeCluster, rayjob: dict, budget: float) -> tuple[dict, str]:
    """Create the RayJob, wait until it finished, note whether Kueue admitted it; (live object, submitter
    output)."""
    cluster.create(rayjob)
    name, namespace = rayjob["metadata"]["name"], rayjob["metadata"]["namespace"]
    cluster.ctx.facts[f"{name}.team"] = cluster.team_of(rayjob).name

    def finished() -> tuple[bool, str]:
        live = cluster.api.get("ray.io/v1", "RayJob", name, namespace) or {}
        return judge.rayjob_outcome(live)

    wait_until(finished, cluster.time_left(budget), f"RayJob {namespace}/{name} finished", poll_s=5)
    live = cluster.api.get("ray.io/v1", "RayJob", name, namespace) or {}
    workload = cluster.workload_of("RayJob", name, namespace)
    cluster.ctx.facts[f"{name}.admitted_by_kueue"] = judge.admitted(workload) or bool(
        workload and judge.condition(workload, "Finished")
    )
    submitter = cluster.api.list("v1", "Pod", namespace, f"job-name={name}").get("items", [])
    logs = cluster.api.pod_log(namespace, submitter[-1]["metadata"]["name"]) if submitter else ""
    cluster.ctx.log.info(
        "RayJob %s: %s; submitter output:\n%s",
        name,
        judge.rayjob_outcome(live)[1],
        "\n".join(f"    | {line}" for line in logs.splitlines()),
    )
    return live, logs


# --- workloads.train ------------------------------------------------------------------------------------


@checks.local("workloads.train")
def local_train(machine: LocalMachine, ctx: RunContext) -> Passed:
    machine.require_gpu_if_asked()
    bar = ctx.options.injections.train_min_accuracy
    if bar is None:
        bar = train_manifest.DEFAULT_MIN_ACCURACY
    run_name = f"{ctx.name}-train"
    rayjob = train_manifest.build_rayjob(
        machine.spec,
        team=ctx.options.team,
        priority=ctx.options.priority,
        run_name=run_name,
        min_accuracy=bar,
        name=run_name,
    )
    entrypoint, runtime_env = rayjob_as_job(rayjob)
    argv = shlex.split(entrypoint)
    storage_uri = flag_value(argv, "--storage-uri")
    if storage_uri is None:
        raise CheckFailed(f"the training RayJob's entrypoint has no --storage-uri: {entrypoint}")
    run_uri = storage.join(storage_uri, run_name)
    status, message, logs = machine.run_job("train", entrypoint, runtime_env, machine.time_left(540))

    summary_uri = storage.join(run_uri, "summary.json")
    summary = json.loads(storage.read_text(summary_uri)) if storage.exists(summary_uri) else None
    accuracy = summary.get("final_accuracy") if summary else None
    details: dict[str, Any] = {
        "entrypoint": entrypoint,
        "job_status": status,
        "run_uri": run_uri,
        "min_accuracy": bar,
        "final_accuracy": accuracy,
    }
    if summary is None:
        raise CheckFailed(
            f"training job {status} and left no summary at {summary_uri}: {message}; last output: {tail(logs)}",
            details,
        )
    details.update(
        {
            "device": summary.get("device"),
            "epochs": len(summary.get("epochs", [])),
            "accuracies": summary.get("accuracies"),
            "checkpoints": summary.get("checkpoints"),
            "num_workers": summary.get("num_workers"),
            "train_wall_s": summary.get("wall_seconds"),
        }
    )
    if accuracy is None or accuracy < bar:
        shown = "none" if accuracy is None else f"{accuracy:.4f}"
        raise CheckFailed(
            f"final test accuracy {shown} is below the bar {bar:g} after "
            f"{details['epochs']} epoch(s) on {summary.get('device')} (job {status}); "
            f"{_left_at(ctx, 'checkpoints', run_uri)}",
            details,
        )
    if status != "SUCCEEDED":
        raise CheckFailed(
            f"training job {status} although its summary reports accuracy {accuracy:.4f}: "
            f"{message}; last output: {tail(logs)}",
            details,
        )
    if ctx.options.gpu == "require" and summary.get("device") != "cuda":
        raise CheckFailed(
            f"training ran on {summary.get('device')} although --gpu require (the Ray cluster "
            f"offers fewer GPUs than the {summary.get('num_workers')} training workers)",
            details,
        )
    checkpoint = _verify_latest_checkpoint(summary, accuracy)
    details["latest_checkpoint"] = checkpoint
    if summary.get("device") == "cpu":
        ctx.facts["cpu_fallback"] = "the workloads ran on CPU (no GPU)"
    return Passed(
        f"final accuracy {accuracy:.3f} >= bar {bar:g} after {details['epochs']} epochs on "
        f"{summary.get('device')} ({summary.get('num_workers')} Ray Train workers); newest checkpoint "
        f"{checkpoint['name']} loads ({checkpoint['tensors']} tensors) and records the same accuracy",
        details,
    )


def _verify_latest_checkpoint(summary: dict, accuracy: float) -> dict[str, Any]:
    """Load the newest checkpoint's state and history; they must agree with the summary."""
    # torch and pyarrow (park.workloads.train.loop, park.workloads.storage) are the workloads extra.
    import torch
    from park.workloads.train import loop  # imports torch (workloads extra)

    checkpoints = sorted(summary.get("checkpoints") or [])
    if not checkpoints:
        raise CheckFailed(f"training reports no checkpoint under {summary.get('run_uri')}")
    newest = checkpoints[-1]
    filesystem, path = storage.resolve(storage.join(newest, loop.STATE_FILE))
    try:
        with filesystem.open_input_file(path) as stream:
            state = torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=True)
        history = json.loads(storage.read_text(storage.join(newest, loop.HISTORY_FILE)))
    except (OSError, RuntimeError, ValueError) as err:
        raise CheckFailed(f"the newest checkpoint {newest} does not load: {err}") from None
    recorded = (history.get("accuracies") or [None])[-1]
    if recorded is None or abs(recorded - accuracy) > 1e-6:
        raise CheckFailed(
            f"the newest checkpoint {newest} records accuracy {recorded}, but the summary says "
            f"{accuracy}: checkpoint and summary disagree"
        )
    return {
        "name": newest.rstrip("/").rsplit("/", 1)[-1],
        "uri": newest,
        "tensors": len(state.get("model", {})),
        "epoch": state.get("epoch"),
    }


def train_bar(cluster: KubeCluster) -> float:
    bar = cluster.ctx.options.injections.train_min_accuracy
    return train_manifest.DEFAULT_MIN_ACCURACY if bar is None else bar


def train_rayjob(cluster: KubeCluster) -> dict:
    """The training RayJob at the conformance size, under this run's name."""
    name = cluster.object_name("train")
    return train_manifest.build_rayjob(
        cluster.spec,
        **cluster.workload_placement(),
        run_name=name,
        min_accuracy=train_bar(cluster),
        name=name,
        size="conformance",
    )


@checks.cluster("workloads.train", creates=lambda cluster: [train_rayjob(cluster)])
def cluster_train(cluster: KubeCluster, ctx: RunContext) -> Passed:
    # pyarrow (park.workloads.storage, under the train manifest too) is the workloads extra.
    bar = train_bar(cluster)
    name = cluster.object_name("train")
    rayjob = train_rayjob(cluster)
    run_uri = storage.join(cluster.spec.storage_uri, train_manifest.CHECKPOINT_FOLDER, name)
    cluster.remove_at_cleanup(run_uri)
    live, logs = run_rayjob(cluster, rayjob, 3000)
    summary_uri = storage.join(run_uri, "summary.json")
    try:
        summary = json.loads(storage.read_text(summary_uri))
    except Exception as err:  # noqa: BLE001 - the runner may lack bucket credentials; the job log has its verdict
        summary = None
        ctx.log.warning("cannot read %s from here: %s", summary_uri, err)
    accuracy = summary.get("final_accuracy") if summary else None
    if not judge.rayjob_succeeded(live):
        raise CheckFailed(
            f"RayJob {name} did not succeed ({judge.rayjob_outcome(live)[1]}); accuracy "
            f"{accuracy} vs bar {bar}; submitter output: {logs[-400:]}"
        )
    if accuracy is not None and accuracy < bar:
        raise CheckFailed(f"final accuracy {accuracy:.4f} is below the bar {bar} ({summary_uri})")
    shown = (
        f"{accuracy:.3f}" if accuracy is not None else "(summary unreadable from here; job log says PASSED)"
    )
    return Passed(
        f"RayJob {name} admitted by Kueue and completed; final accuracy {shown} >= {bar}",
        {"summary_uri": summary_uri, "final_accuracy": accuracy},
    )


# --- workloads.batch ------------------------------------------------------------------------------------


def parquet_table(uri: str, columns: list[str]):
    """Columns of every Parquet file under a folder URI, read here with pyarrow (not through the workload)."""
    # pyarrow (also under park.workloads.storage) is the workloads extra.
    import pyarrow.dataset as pads

    if not storage.exists(uri):
        raise FileNotFoundError(uri)
    filesystem, path = storage.resolve(uri)
    dataset = pads.dataset(
        path, filesystem=filesystem, format="parquet", exclude_invalid_files=False, ignore_prefixes=[".", "_"]
    )
    return dataset.to_table(columns=columns)


def parquet_column(uri: str, column: str) -> list[str]:
    return [str(v) for v in parquet_table(uri, [column]).column(column).to_pylist()]


def compare_ids(input_ids: list[str], output_ids: list[str]) -> dict[str, Any]:
    """Exactly once: no input id missing, none twice, none that was not in the input (a few examples each)."""
    expected, seen = set(input_ids), Counter(output_ids)
    missing = sorted(expected - seen.keys())
    unexpected = sorted(seen.keys() - expected)
    duplicated = sorted(i for i, n in seen.items() if n > 1)
    return {
        "rows_in": len(input_ids),
        "rows_out": len(output_ids),
        "missing": len(missing),
        "duplicated": len(duplicated),
        "unexpected": len(unexpected),
        "examples": {"missing": missing[:3], "duplicated": duplicated[:3], "unexpected": unexpected[:3]},
        "exact": not (missing or unexpected or duplicated) and len(expected) == len(input_ids) > 0,
    }


@checks.local("workloads.batch")
def local_batch(machine: LocalMachine, ctx: RunContext) -> Passed:
    machine.require_gpu_if_asked()
    name = f"{ctx.name}-batch"
    rayjob = batch_manifest.build_rayjob(
        machine.spec,
        team=ctx.options.team,
        priority=ctx.options.priority,
        rows=BATCH_ROWS,
        output_folder=f"batch/{name}",
        name=name,
    )
    entrypoint, runtime_env = rayjob_as_job(rayjob)
    drop = ctx.options.injections.batch_drop_rows
    if drop:  # test only: the workload's own fault switch, so the check below must notice lost rows
        entrypoint = f"{entrypoint} --drop-rows-for-testing {int(drop)}"
    argv = shlex.split(entrypoint)
    input_uri, output_uri = flag_value(argv, "--input-uri"), flag_value(argv, "--output-uri")
    if input_uri is None or output_uri is None:
        raise CheckFailed(f"the batch RayJob's entrypoint lacks --input-uri or --output-uri: {entrypoint}")
    status, message, logs = machine.run_job("batch", entrypoint, runtime_env, machine.time_left(540))

    data_uri = storage.join(output_uri, "data")
    details: dict[str, Any] = {
        "entrypoint": entrypoint,
        "job_status": status,
        "input_uri": input_uri,
        "data_uri": data_uri,
    }
    try:
        input_ids = parquet_column(input_uri, "id")
    except FileNotFoundError:
        raise CheckFailed(
            f"batch job {status} and left no input Parquet at {input_uri}: {message}; last output: {tail(logs)}",
            details,
        ) from None
    try:
        output = parquet_table(data_uri, ["id", "image_label", "image_score"])
    except FileNotFoundError:
        raise CheckFailed(
            f"batch job {status} and wrote no output Parquet at {data_uri}: {message}; last output: {tail(logs)}",
            details,
        ) from None
    comparison = compare_ids(input_ids, [str(i) for i in output.column("id").to_pylist()])
    details.update(comparison)
    if not comparison["exact"]:
        examples = comparison["examples"]
        shown = "; ".join(f"{kind}: {', '.join(ids)}" for kind, ids in examples.items() if ids)
        raise CheckFailed(
            f"output is not exactly the input rows: {comparison['missing']} of "
            f"{comparison['rows_in']} input ids missing, {comparison['duplicated']} duplicated, "
            f"{comparison['unexpected']} unexpected ({shown}); job {status}; "
            f"{_left_at(ctx, 'partial output', data_uri)}",
            details,
        )
    labels = output.column("image_label").to_pylist()
    scores = output.column("image_score").to_pylist()
    unlabelled = sum(
        1
        for label, score in zip(labels, scores, strict=True)
        if not label or score is None or not 0.0 <= score <= 1.0
    )
    if unlabelled:
        raise CheckFailed(
            f"{unlabelled} of {len(labels)} output rows carry no valid image_label/image_score", details
        )
    if status != "SUCCEEDED":
        raise CheckFailed(
            f"batch job {status} although its output holds every input row: {message}; last output: {tail(logs)}",
            details,
        )
    from park.workloads.batch import pipeline  # numpy, under the batch pipeline, is the workloads extra

    summary_uri = storage.join(output_uri, pipeline.SUMMARY_FILE)
    summary = json.loads(storage.read_text(summary_uri)) if storage.exists(summary_uri) else {}
    details.update(
        {
            "device": summary.get("device"),
            "rows_per_second": summary.get("rows_per_second"),
            "label_counts": dict(Counter(labels)),
            "job_verdict": summary.get("passed"),  # the workload's own exactness verdict, beside ours
            "success_marker": storage.exists(storage.join(output_uri, pipeline.SUCCESS_FILE)),
        }
    )
    if ctx.options.gpu == "require" and summary.get("device") != "cuda":
        raise CheckFailed(f"batch inference ran on {summary.get('device')} although --gpu require", details)
    return Passed(
        f"{comparison['rows_out']} output rows = the {comparison['rows_in']} input ids exactly once, "
        f"every row labelled; read back from {data_uri} ({summary.get('rows_per_second')} rows/s on "
        f"{summary.get('device')})",
        details,
    )


def batch_rayjob(cluster: KubeCluster) -> dict:
    """The batch RayJob at the conformance size, writing to this run's folder (plus the injected fault)."""
    name = cluster.object_name("batch")
    rayjob = batch_manifest.build_rayjob(
        cluster.spec,
        **cluster.workload_placement(),
        rows=BATCH_ROWS,
        output_folder=f"batch/{name}",
        name=name,
        size="conformance",
    )
    drop = cluster.ctx.options.injections.batch_drop_rows
    if drop:
        argv = shlex.split(rayjob["spec"]["entrypoint"]) + ["--drop-rows-for-testing", str(int(drop))]
        rayjob["spec"]["entrypoint"] = shlex.join(argv)
    return rayjob


@checks.cluster("workloads.batch", creates=lambda cluster: [batch_rayjob(cluster)])
def cluster_batch(cluster: KubeCluster, ctx: RunContext) -> Passed:
    name = cluster.object_name("batch")
    rayjob = batch_rayjob(cluster)
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    input_uri = argv[argv.index("--input-uri") + 1]
    output_uri = argv[argv.index("--output-uri") + 1]
    data_uri = storage.join(output_uri, "data")
    cluster.remove_at_cleanup(output_uri)  # the shared input folder stays: later runs reuse it
    live, logs = run_rayjob(cluster, rayjob, 1800)
    try:
        comparison = compare_ids(parquet_column(input_uri, "id"), parquet_column(data_uri, "id"))
    except Exception as err:  # noqa: BLE001 - the runner may lack bucket credentials
        comparison = None
        ctx.log.warning("cannot read %s / %s from here: %s", input_uri, data_uri, err)
    if comparison is not None and not comparison["exact"]:
        raise CheckFailed(
            f"output is not exactly the input rows: {comparison['missing']} missing, "
            f"{comparison['duplicated']} duplicated, {comparison['unexpected']} unexpected of "
            f"{comparison['rows_in']} ({data_uri})",
            comparison,
        )
    if not judge.rayjob_succeeded(live):
        raise CheckFailed(
            f"RayJob {name} did not succeed ({judge.rayjob_outcome(live)[1]}); submitter output: {logs[-400:]}"
        )
    shown = (
        f"{comparison['rows_out']} output ids = {comparison['rows_in']} input ids"
        if comparison
        else "output unreadable from here; the job verified its own ids"
    )
    return Passed(f"RayJob {name} admitted by Kueue and completed; {shown}", comparison or {})


# --- workloads.post-train -------------------------------------------------------------------------------

POSTTRAIN_STEPS = 12
"""Steps of the conformance run (the workload's default is 20): the default task's reward rises past the
margin within a dozen steps on CPU (docs/benchmarks.md, "Post-training"), and each step costs ~1 s there."""
POSTTRAIN_FAULT_AFTER_STEP = 2
"""The run's own fault hook (``--fail-after-step``) SIGKILLs a learner rank in the step after this one; the
run must replace the learner group from this step's checkpoint and go on: the resume the check proves."""
POSTTRAIN_CURVE_COLUMNS = ("step", "reward_mean", "reward_std", "logprob_max_abs_diff")


def posttrain_rayjob(
    spec: StackSpec, *, name: str, size: WorkloadSize = "reference", **placement: Any
) -> dict:
    """The post-training RayJob under this run's name, with the learner fault switched on."""
    rayjob = posttrain_manifest.build_rayjob(
        spec, **placement, run_name=name, name=name, steps=POSTTRAIN_STEPS, size=size
    )
    argv = shlex.split(rayjob["spec"]["entrypoint"]) + ["--fail-after-step", str(POSTTRAIN_FAULT_AFTER_STEP)]
    rayjob["spec"]["entrypoint"] = shlex.join(argv)
    return rayjob


def _float_flag(argv: list[str], flag: str, default: float | None) -> float | None:
    value = flag_value(argv, flag)
    return default if value is None else float(value)


def read_reward_log(run_uri: str) -> list[dict[str, float]]:
    """``rewards.csv`` of a run, parsed here with the csv module (not through the workload's reader)."""
    text = storage.read_text(storage.join(run_uri, posttrain_checkpoint.REWARDS_FILE))
    return [
        {k: float(v) for k, v in row.items() if v not in (None, "")}
        for row in csv.DictReader(io.StringIO(text))
    ]


def judge_post_train(
    rows: list[dict[str, float]],
    summary: dict[str, Any],
    *,
    margin: float,
    tolerance: float,
    fault_after: int,
    steps: int,
) -> tuple[list[str], dict[str, Any]]:
    """(problems, facts) of a finished post-training run, from its reward log and summary: the reward rose
    by ``margin`` (mean of the last window of steps over the first's, computed here from the log), every
    step's generator-vs-learner log-prob deviation is within ``tolerance``, each step is logged once, and
    the learner killed after ``fault_after`` was replaced from that step's checkpoint."""
    problems: list[str] = []
    step_numbers = [int(r["step"]) for r in rows]
    window = max(1, min(int(summary.get("window") or 3), len(rows) // 2))
    first = statistics.fmean(r["reward_mean"] for r in rows[:window]) if rows else None
    last = statistics.fmean(r["reward_mean"] for r in rows[-window:]) if rows else None
    worst = max((r["logprob_max_abs_diff"] for r in rows), default=None)
    resumes = summary.get("resumes") or []
    fault = summary.get("injected_fault") or {}
    facts: dict[str, Any] = {
        "steps_logged": len(rows),
        "window": window,
        "first_reward_mean": first,
        "last_reward_mean": last,
        "reward_gain": None if first is None else last - first,
        "min_reward_gain": margin,
        "logprob_tolerance": tolerance,
        "logprob_max_abs_diff": worst,
        "learner_killed_in_step": fault.get("step"),
        "learner_restarts": summary.get("learner_restarts"),
        "resumed_from_steps": [r.get("from_step") for r in resumes],
    }
    if step_numbers != list(range(1, steps + 1)):
        shown = ", ".join(map(str, step_numbers[:30]))
        problems.append(f"the reward log holds steps [{shown}], not each of 1..{steps} once")
    if first is not None and last - first < margin:
        curve = ", ".join(f"{r['reward_mean']:.2f}" for r in rows)
        problems.append(
            f"reward rose {last - first:.3f} (first {window} steps {first:.3f}, last {window} {last:.3f}), below "
            f"the margin {margin:g}; curve: {curve}"
        )
    if worst is not None and worst > tolerance:
        bad = [
            f"{int(r['step'])}:{r['logprob_max_abs_diff']:.1e}"
            for r in rows
            if r["logprob_max_abs_diff"] > tolerance
        ]
        problems.append(
            f"generator off-policy after a weight sync: log-prob deviation {worst:.2e} > tolerance {tolerance:g} "
            f"(steps {', '.join(bad[:5])})"
        )
    if fault.get("step") != fault_after + 1:
        problems.append(
            f"no learner was killed in step {fault_after + 1} (fault marker: {fault or 'none'}), so no resume "
            f"was exercised"
        )
    elif fault_after not in facts["resumed_from_steps"]:
        problems.append(
            f"the learner killed in step {fault_after + 1} did not resume from the step-{fault_after} checkpoint "
            f"(resumes: {resumes or 'none'}; learner restarts: {summary.get('learner_restarts')})"
        )
    return problems, facts


def _newest_posttrain_checkpoint(run_uri: str, rows: list[dict[str, float]]) -> dict[str, Any]:
    """The newest checkpoint must load (weights and state), hold finite weights, and record the last logged
    step and reward."""
    # safetensors and numpy come with torch and transformers (the workloads extra); the numpy loader needs
    # no torch (tens of seconds to import on a loaded machine) and the learner writes float32.
    import numpy
    import safetensors.numpy
    from safetensors import SafetensorError

    folder = storage.join(run_uri, posttrain_checkpoint.CHECKPOINT_FOLDER)
    names = sorted(
        n for n in storage.list_names(folder) if n.startswith(posttrain_checkpoint.CHECKPOINT_PREFIX)
    )
    if not names:
        raise CheckFailed(f"the post-training run left no checkpoint under {folder}")
    uri = storage.join(folder, names[-1])
    try:
        state = json.loads(storage.read_text(storage.join(uri, posttrain_checkpoint.STATE_FILE)))
        filesystem, path = storage.resolve(storage.join(uri, posttrain_checkpoint.MODEL_FILE))
        with filesystem.open_input_file(path) as stream:
            weights = safetensors.numpy.load(stream.read())
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise CheckFailed(f"the newest checkpoint {uri} does not load: {err}") from None
    broken = sorted(name for name, tensor in weights.items() if not numpy.isfinite(tensor).all())
    if not weights or broken:
        raise CheckFailed(f"the newest checkpoint {uri} holds no weights or non-finite ones: {broken[:3]}")
    tensors = len(weights)
    recorded = (state.get("history") or [{}])[-1]
    if rows and (
        state.get("step") != int(rows[-1]["step"])
        or abs(recorded.get("reward_mean", float("nan")) - rows[-1]["reward_mean"]) > 1e-9
    ):
        raise CheckFailed(
            f"the newest checkpoint {uri} is of step {state.get('step')} with reward "
            f"{recorded.get('reward_mean')}, but the reward log ends at step {int(rows[-1]['step'])} with "
            f"{rows[-1]['reward_mean']}: checkpoint and log disagree"
        )
    return {"name": names[-1], "uri": uri, "step": state.get("step"), "tensors": tensors}


def reward_curve(rows: list[dict[str, float]], margin: float, first: float | None, fault_step: int) -> dict:
    """The reward curve in the shape evidence.py writes as CSV and plots as PNG."""
    return {
        "title": "post-training reward per step",
        "x": "step",
        "y": "reward_mean",
        "band": "reward_std",
        "columns": list(POSTTRAIN_CURVE_COLUMNS),
        "rows": [[r.get(c) for c in POSTTRAIN_CURVE_COLUMNS] for r in rows],
        "hline": None
        if first is None
        else {"y": first + margin, "label": f"first steps' mean + margin {margin:g}"},
        "vline": {"x": fault_step, "label": "learner killed, resumed from checkpoint"},
    }


def _posttrain_passed(facts: dict[str, Any], where: str) -> str:
    return (
        f"reward {facts['first_reward_mean']:.3f} -> {facts['last_reward_mean']:.3f} (gain "
        f"{facts['reward_gain']:.3f} >= margin {facts['min_reward_gain']:g}) over {facts['steps_logged']} steps; "
        f"log-prob deviation {facts['logprob_max_abs_diff']:.1e} <= tolerance {facts['logprob_tolerance']:g} "
        f"after every sync; learner killed in step {facts['learner_killed_in_step']} resumed from the step-"
        f"{POSTTRAIN_FAULT_AFTER_STEP} checkpoint{where}"
    )


def read_posttrain_run(run_uri: str) -> tuple[list[dict], dict]:
    """The reward log and summary a post-training run leaves in its run folder (both targets read them)."""
    rows = read_reward_log(run_uri)
    summary = json.loads(storage.read_text(storage.join(run_uri, posttrain_checkpoint.SUMMARY_FILE)))
    return rows, summary


def judge_posttrain_run(rows: list[dict], summary: dict, margin: float, tolerance: float) -> tuple[list[str], dict]:
    """:func:`judge_post_train` at this suite's step count and fault step, with the reward curve the evidence
    plots added to the facts."""
    problems, facts = judge_post_train(
        rows, summary, margin=margin, tolerance=tolerance, fault_after=POSTTRAIN_FAULT_AFTER_STEP,
        steps=POSTTRAIN_STEPS,
    )
    curve = reward_curve(rows, margin, facts["first_reward_mean"], POSTTRAIN_FAULT_AFTER_STEP + 1)
    return problems, {**facts, "curve": curve}


@checks.local("workloads.post-train")
def local_post_train(machine: LocalMachine, ctx: RunContext) -> Passed:
    machine.require_gpu_if_asked()
    name = f"{ctx.name}-post-train"
    rayjob = posttrain_rayjob(machine.spec, name=name, team=ctx.options.team, priority=ctx.options.priority)
    entrypoint, runtime_env = rayjob_as_job(rayjob)
    argv = shlex.split(entrypoint)
    storage_uri = flag_value(argv, "--storage-uri")
    if storage_uri is None:
        raise CheckFailed(f"the post-training RayJob's entrypoint has no --storage-uri: {entrypoint}")
    margin = _float_flag(argv, "--min-reward-gain", posttrain_manifest.DEFAULT_MIN_REWARD_GAIN)
    tolerance = _float_flag(argv, "--logprob-tolerance", DEFAULT_LOGPROB_TOLERANCE)
    run_uri = storage.join(storage_uri, name)
    status, message, logs = machine.run_job("post-train", entrypoint, runtime_env, machine.time_left(540))

    details: dict[str, Any] = {"entrypoint": entrypoint, "job_status": status, "run_uri": run_uri}
    try:
        rows, summary = read_posttrain_run(run_uri)
    except (OSError, ValueError) as err:
        raise CheckFailed(
            f"post-training job {status} and left no readable reward log and summary under {run_uri} ({err}): "
            f"{message}; last output: {tail(logs)}",
            details,
        ) from None
    problems, facts = judge_posttrain_run(rows, summary, margin, tolerance)
    details.update(facts)
    details.update(
        {
            "device": summary.get("device"),
            "backend": summary.get("backend"),
            "mean_step_timings_s": summary.get("mean_step_timings_s"),
            "generator_start_s": [g.get("start_s") for g in summary.get("generators") or []],
            "run_wall_s": summary.get("wall_s"),
        }
    )
    if problems:
        raise CheckFailed(
            f"{'; '.join(problems)} (job {status}); {_left_at(ctx, 'checkpoints', run_uri)}", details
        )
    if status != "SUCCEEDED":
        raise CheckFailed(
            f"post-training job {status} although its log shows the reward rising and the generator on-policy: "
            f"{message}; last output: {tail(logs)}",
            details,
        )
    if ctx.options.gpu == "require" and summary.get("device") != "cuda":
        raise CheckFailed(f"post-training ran on {summary.get('device')} although --gpu require", details)
    details["newest_checkpoint"] = _newest_posttrain_checkpoint(run_uri, rows)
    return Passed(
        _posttrain_passed(
            facts,
            f"; newest checkpoint {details['newest_checkpoint']['name']} loads "
            f"({details['newest_checkpoint']['tensors']} tensors) on {summary.get('device')}",
        ),
        details,
    )


def cluster_posttrain_rayjob(cluster: KubeCluster) -> dict:
    """The post-training RayJob at the conformance size, under this run's name (learner fault included)."""
    return posttrain_rayjob(
        cluster.spec,
        name=cluster.object_name("post-train"),
        size="conformance",
        **cluster.workload_placement(),
    )


POSTTRAIN_RESUMED_LINE = re.compile(r"resumed from the checkpoint of step (\d+)")


@checks.cluster("workloads.post-train", creates=lambda cluster: [cluster_posttrain_rayjob(cluster)])
def cluster_post_train(cluster: KubeCluster, ctx: RunContext) -> Passed:
    name = cluster.object_name("post-train")
    rayjob = cluster_posttrain_rayjob(cluster)
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    storage_uri = flag_value(argv, "--storage-uri") or ""
    margin = _float_flag(argv, "--min-reward-gain", posttrain_manifest.DEFAULT_MIN_REWARD_GAIN)
    tolerance = _float_flag(argv, "--logprob-tolerance", DEFAULT_LOGPROB_TOLERANCE)
    run_uri = storage.join(storage_uri, name)
    cluster.remove_at_cleanup(run_uri)
    live, logs = run_rayjob(cluster, rayjob, 3000)
    try:
        rows, summary = read_posttrain_run(run_uri)
    except Exception as err:  # noqa: BLE001 - the runner may lack bucket credentials; the job log has its verdict
        rows, summary = None, None
        ctx.log.warning("cannot read the reward log of %s from here: %s", run_uri, err)
    details: dict[str, Any] = {"run_uri": run_uri, "min_reward_gain": margin, "logprob_tolerance": tolerance}
    if rows is not None and summary is not None:
        problems, facts = judge_posttrain_run(rows, summary, margin, tolerance)
        details.update(facts)
        details["device"] = summary.get("device")
        if problems:
            raise CheckFailed(f"{'; '.join(problems)} ({run_uri})", details)
    if not judge.rayjob_succeeded(live):
        raise CheckFailed(
            f"RayJob {name} did not succeed ({judge.rayjob_outcome(live)[1]}); submitter output: {logs[-400:]}",
            details,
        )
    if rows is not None and summary is not None:
        return Passed(
            f"RayJob {name} admitted by Kueue and completed; " + _posttrain_passed(details, ""), details
        )
    # Unreadable from here: the job's own verdict (the CLI exits non-zero when the margin or the on-policy
    # check fails) plus the resume it printed.
    resumed = [int(step) for step in POSTTRAIN_RESUMED_LINE.findall(logs)]
    details["resumed_from_steps"] = resumed
    if POSTTRAIN_FAULT_AFTER_STEP not in resumed:
        raise CheckFailed(
            f"RayJob {name} succeeded, but its output shows no resume from the step-{POSTTRAIN_FAULT_AFTER_STEP} "
            f"checkpoint after the learner was killed (resumed from: {resumed or 'none'}); the reward log at "
            f"{run_uri} is unreadable from here",
            details,
        )
    passed_line = next(
        (line.strip() for line in logs.splitlines() if line.strip().startswith("PASSED:")), None
    )
    return Passed(
        f"RayJob {name} admitted by Kueue and completed; reward log unreadable from here, the job says: "
        f"{passed_line or 'PASSED'}; it resumed from the step-{POSTTRAIN_FAULT_AFTER_STEP} checkpoint after its "
        f"learner was killed",
        details,
    )


# --- workloads.serve ------------------------------------------------------------------------------------


def _model_name_for(path: str) -> str:
    """A valid served-model id from a folder name (``/models/Qwen2.5-0.5B`` -> ``Qwen2.5-0.5B``)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", path.rstrip("/").rsplit("/", 1)[-1]).strip("-.") or "model"
    return name[:128]


@checks.local("workloads.serve")
def local_serve(machine: LocalMachine, ctx: RunContext) -> Passed:
    machine.require_gpu_if_asked()
    if ctx.options.model:
        try:
            folder = serve_app.check_local_model(ctx.options.model.removeprefix("file://"))
        except serve_app.ServeArgsError as err:
            raise CheckFailed(
                f"--model {ctx.options.model}: {err}; pass a folder holding a Hugging Face model "
                f"(config.json, weights, tokenizer), or leave --model out to serve a fresh tiny "
                f"Llama"
            ) from None
        model = ServedModel(
            name=_model_name_for(str(folder)), source=str(folder), gpu_fraction=machine.served_model_gpus()
        )
        built = False
    else:
        from transformers.utils import logging as transformers_logging  # the workloads extra

        transformers_logging.disable_progress_bar()  # keep the run's output to one line per check
        started = time.monotonic()
        folder = build_tiny_llama(ctx.workdir / "models" / "tiny-llama")
        ctx.log.info("built the tiny Llama in %.1f s at %s", time.monotonic() - started, folder)
        name = machine.spec.models[0].name if machine.spec.models else "tiny-llama"
        model = ServedModel(name=name, source=str(folder), gpu_fraction=machine.served_model_gpus())
        built = True
    spec = machine.spec.model_copy(update={"models": [model]})
    config = serve_config(spec)
    port = free_ports(1)[0]
    config = {**config, "proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": port}}
    head = machine.head()
    ctx.log.info("deploying Serve config: %s", json.dumps(config))
    answer = httpx.put(f"{head.dashboard_url}/api/serve/applications/", json=config, timeout=60)
    if answer.status_code != 200:
        raise CheckFailed(f"Serve refused the config ({answer.status_code}): {answer.text[:500]}")
    machine.ctx.on_cleanup(
        "delete the Serve applications",
        lambda: httpx.delete(f"{head.dashboard_url}/api/serve/applications/", timeout=30),
    )
    names = [a["name"] for a in config["applications"]]
    deploy_s = _wait_serve_running(head.dashboard_url, names, machine.time_left(SERVE_READY_S), ctx)
    ctx.facts["serve_application"] = names[0]
    route = config["applications"][0].get("route_prefix", "/").rstrip("/")
    base = f"http://127.0.0.1:{port}{route}"
    listed = httpx.get(f"{base}/v1/models", timeout=30).json()
    if model.name not in [m.get("id") for m in listed.get("data", [])]:
        raise CheckFailed(f"/v1/models does not list {model.name!r}: {listed}")
    request = {
        "model": model.name,
        "temperature": 0,
        "max_tokens": CHAT_MAX_TOKENS,
        "messages": [{"role": "user", "content": CHAT_PROMPT}],
    }
    started = time.monotonic()
    response = httpx.post(f"{base}/v1/chat/completions", json=request, timeout=120)
    latency = time.monotonic() - started
    if response.status_code != 200:
        raise CheckFailed(f"POST /v1/chat/completions answered {response.status_code}: {response.text[:400]}")
    verdict = judge.judge_chat_completion(response.json(), model.name)
    details = {
        "model": model.name,
        "model_path": str(folder),
        "deploy_s": round(deploy_s, 1),
        "first_answer_s": round(latency, 2),
        **verdict.facts,
    }
    if not verdict.ok:
        raise CheckFailed("; ".join(verdict.problems), details)
    oracle = ""
    if built:
        expected = _greedy_reference(folder, request["messages"], CHAT_MAX_TOKENS)
        details["reference_text"] = expected
        if verdict.facts["content"] != expected:
            raise CheckFailed(
                f"the served tiny Llama answered {verdict.facts['content']!r}, but greedy decoding of "
                f"the same model with transformers gives {expected!r}: the served model or its chat "
                f"template is not the one built for this run",
                details,
            )
        oracle = "; identical to transformers' greedy output of the same model"
    return Passed(
        f"{model.name} deployed on Serve in {deploy_s:.0f} s; /v1/chat/completions answered "
        f"{verdict.facts['content']!r} ({verdict.facts['usage'].get('completion_tokens')} tokens, "
        f"{latency:.1f} s){oracle}",
        details,
    )


def _wait_serve_running(dashboard: str, names: list[str], timeout_s: float, ctx: RunContext) -> float:
    """Seconds until every application is RUNNING; DEPLOY_FAILED fails at once with Serve's message."""
    started = time.monotonic()
    statuses: dict[str, Any] = {}
    while time.monotonic() - started < timeout_s:
        details = httpx.get(f"{dashboard}/api/serve/applications/", timeout=30).json()
        statuses = {name: details.get("applications", {}).get(name, {}) for name in names}
        failed = {n: a for n, a in statuses.items() if a.get("status") in ("DEPLOY_FAILED", "UNHEALTHY")}
        if failed:
            name, app = next(iter(failed.items()))
            raise CheckFailed(
                f"Serve application {name!r} is {app['status']}: {app.get('message', '')[:800]}"
            )
        if statuses and all(a.get("status") == "RUNNING" for a in statuses.values()):
            return time.monotonic() - started
        time.sleep(2)
    shown = {n: (a.get("status"), a.get("message", "")[:200]) for n, a in statuses.items()}
    raise CheckFailed(f"Serve applications not RUNNING within {timeout_s:.0f} s: {shown}")


def _greedy_reference(folder, messages: list[dict], max_tokens: int) -> str:
    """What greedy decoding of the model gives with transformers: the oracle for the served answer."""
    # torch and transformers are the workloads extra.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        output = model.generate(**prompt, max_new_tokens=max_tokens, do_sample=False)
    return tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)


def serve_rayservice(cluster: KubeCluster) -> dict:
    """The serving RayService as rendered (its serving pool, its models' minimum replicas)."""
    return build_rayservice(cluster.spec, **cluster.workload_placement(), name=cluster.object_name("serve"))


@checks.cluster("workloads.serve", creates=lambda cluster: [serve_rayservice(cluster)])
def cluster_serve(cluster: KubeCluster, ctx: RunContext) -> Passed:
    name = cluster.object_name("serve")
    rayservice = serve_rayservice(cluster)
    namespace = rayservice["metadata"]["namespace"]
    cluster.ctx.facts[f"{name}.team"] = cluster.team_of(rayservice).name
    cluster.create(rayservice)

    def ready() -> tuple[bool, str]:
        return judge.rayservice_ready(cluster.api.get("ray.io/v1", "RayService", name, namespace) or {})

    wait_until(ready, cluster.time_left(1500), f"RayService {namespace}/{name} Ready", poll_s=10)
    model = cluster.spec.models[0].name if cluster.spec.models else "default"
    answer = cluster.api.service_proxy(
        "POST",
        namespace,
        f"{name}-serve-svc",
        8000,
        "v1/chat/completions",
        body={
            "model": model,
            "max_tokens": 16,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Say hello."}],
        },
    )
    verdict = judge.judge_chat_completion(answer if isinstance(answer, dict) else {}, model)
    return judged(
        verdict, f"RayService {name} Ready; chat completion from {model}: {verdict.facts.get('content')!r}"
    )
