"""The workload checks of the local target: run each reference workload as the project renders it, then
verify what it produced, independently of the job's own verdict.

- train: the RayJob entrypoint through the Jobs API; then ``summary.json`` and the newest checkpoint are
  read from storage: the accuracy must reach the bar, the checkpoint must load and agree with the summary.
- batch: the RayJob entrypoint through the Jobs API; then the output Parquet is read and its ids are
  compared with the input's: every input row exactly once, nothing else.
- serve: the Serve config deployed through Serve's REST API; then an OpenAI chat completion is asked for
  and its answer parsed.

Failures name what was seen and where the evidence is (storage paths stay readable after the run with
``--keep``; the job logs are in e2e.log).
"""

from __future__ import annotations

import json
import shlex
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from park.conformance.context import RunContext
from park.conformance.model import CheckFailed, Passed

if TYPE_CHECKING:
    from park.conformance.local import LocalTarget

BATCH_ROWS = 2000
"""Rows the batch check pushes through (the workload's default is 10,000; 2,000 keep the local verdict quick
while still spreading over several blocks and actor batches)."""


def _workload_module(name: str):
    """Import a workload module, turning its absence into a failure that says what is missing."""
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise CheckFailed(f"{name} is not available ({err}); this park-stack build ships without that workload") from None


# --- train --------------------------------------------------------------------------------------


def local_train(target: LocalTarget, ctx: RunContext) -> Passed:
    from park.conformance.local import flag_value, rayjob_as_job, tail
    from park.workloads import storage

    manifest = _workload_module("park.workloads.train.manifest")
    bar = ctx.options.injections.train_min_accuracy
    if bar is None:
        bar = manifest.DEFAULT_MIN_ACCURACY
    run_name = f"{ctx.name}-train"
    rayjob = manifest.build_rayjob(target.spec, run_name=run_name, min_accuracy=bar, name=run_name)
    entrypoint, runtime_env = rayjob_as_job(rayjob)
    argv = shlex.split(entrypoint)
    storage_uri = flag_value(argv, "--storage-uri")
    if storage_uri is None:
        raise CheckFailed(f"the training RayJob's entrypoint has no --storage-uri: {entrypoint}")
    run_uri = storage.join(storage_uri, run_name)
    status, message, logs = target.run_job("train", entrypoint, runtime_env, target._time_left(540))

    summary_uri = storage.join(run_uri, "summary.json")
    summary = json.loads(storage.read_text(summary_uri)) if storage.exists(summary_uri) else None
    accuracy = summary.get("final_accuracy") if summary else None
    details: dict[str, Any] = {"entrypoint": entrypoint, "job_status": status, "run_uri": run_uri,
                               "min_accuracy": bar, "final_accuracy": accuracy}
    if summary is None:
        raise CheckFailed(f"training job {status} and left no summary at {summary_uri}: "
                          f"{message}; last output: {tail(logs)}", details)
    details.update({"device": summary.get("device"), "epochs": len(summary.get("epochs", [])),
                    "accuracies": summary.get("accuracies"), "checkpoints": summary.get("checkpoints"),
                    "num_workers": summary.get("num_workers"), "train_wall_s": summary.get("wall_seconds")})
    if accuracy is None or accuracy < bar:
        shown = "none" if accuracy is None else f"{accuracy:.4f}"
        raise CheckFailed(f"final test accuracy {shown} is below the bar {bar:g} after "
                          f"{details['epochs']} epoch(s) on {summary.get('device')} (job {status}); "
                          f"checkpoints kept under {run_uri}", details)
    if status != "SUCCEEDED":
        raise CheckFailed(f"training job {status} although its summary reports accuracy {accuracy:.4f}: "
                          f"{message}; last output: {tail(logs)}", details)
    checkpoint = _verify_latest_checkpoint(summary, accuracy)
    details["latest_checkpoint"] = checkpoint
    if summary.get("device") == "cpu":
        ctx.facts["cpu_fallback"] = "the workloads ran on CPU (no GPU)"
    return Passed(f"final accuracy {accuracy:.3f} >= bar {bar:g} after {details['epochs']} epochs on "
                  f"{summary.get('device')} ({summary.get('num_workers')} Ray Train workers); newest checkpoint "
                  f"{checkpoint['name']} loads ({checkpoint['tensors']} tensors) and records the same accuracy",
                  details)


def _verify_latest_checkpoint(summary: dict, accuracy: float) -> dict[str, Any]:
    """Load the newest checkpoint's state and history; they must agree with the summary."""
    import torch

    from park.workloads import storage
    from park.workloads.train import loop

    checkpoints = sorted(summary.get("checkpoints") or [])
    if not checkpoints:
        raise CheckFailed(f"training reports no checkpoint under {summary.get('run_uri')}")
    newest = checkpoints[-1]
    filesystem, path = storage.resolve(storage.join(newest, loop.STATE_FILE))
    try:
        with filesystem.open_input_file(path) as stream:
            import io

            state = torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=True)
        history = json.loads(storage.read_text(storage.join(newest, loop.HISTORY_FILE)))
    except (OSError, RuntimeError, ValueError) as err:
        raise CheckFailed(f"the newest checkpoint {newest} does not load: {err}") from None
    recorded = (history.get("accuracies") or [None])[-1]
    if recorded is None or abs(recorded - accuracy) > 1e-6:
        raise CheckFailed(f"the newest checkpoint {newest} records accuracy {recorded}, but the summary says "
                          f"{accuracy}: checkpoint and summary disagree")
    return {"name": newest.rstrip("/").rsplit("/", 1)[-1], "uri": newest,
            "tensors": len(state.get("model", {})), "epoch": state.get("epoch")}


# --- batch --------------------------------------------------------------------------------------


def local_batch(target: LocalTarget, ctx: RunContext) -> Passed:
    from park.conformance.local import flag_value, rayjob_as_job, tail
    from park.workloads import storage

    manifest = _workload_module("park.workloads.batch.manifest")
    name = f"{ctx.name}-batch"
    rayjob = manifest.build_rayjob(target.spec, rows=BATCH_ROWS, output_folder=f"batch/{name}", name=name)
    entrypoint, runtime_env = rayjob_as_job(rayjob)
    drop = ctx.options.injections.batch_drop_rows
    if drop:  # test only: the workload's own fault switch, so the check below must notice lost rows
        entrypoint = f"{entrypoint} --drop-rows-for-testing {int(drop)}"
    argv = shlex.split(entrypoint)
    input_uri, output_uri = flag_value(argv, "--input-uri"), flag_value(argv, "--output-uri")
    if input_uri is None or output_uri is None:
        raise CheckFailed(f"the batch RayJob's entrypoint lacks --input-uri or --output-uri: {entrypoint}")
    status, message, logs = target.run_job("batch", entrypoint, runtime_env, target._time_left(540))

    data_uri = storage.join(output_uri, "data")
    details: dict[str, Any] = {"entrypoint": entrypoint, "job_status": status, "input_uri": input_uri,
                               "data_uri": data_uri}
    try:
        input_ids = parquet_column(input_uri, "id")
    except FileNotFoundError:
        raise CheckFailed(f"batch job {status} and left no input Parquet at {input_uri}: {message}; "
                          f"last output: {tail(logs)}", details) from None
    try:
        output = parquet_table(data_uri, ["id", "image_label", "image_score"])
    except FileNotFoundError:
        raise CheckFailed(f"batch job {status} and wrote no output Parquet at {data_uri}: {message}; "
                          f"last output: {tail(logs)}", details) from None
    comparison = compare_ids(input_ids, [str(i) for i in output.column("id").to_pylist()])
    details.update(comparison)
    if not comparison["exact"]:
        examples = comparison["examples"]
        shown = "; ".join(f"{kind}: {', '.join(ids)}" for kind, ids in examples.items() if ids)
        raise CheckFailed(f"output is not exactly the input rows: {comparison['missing']} of "
                          f"{comparison['rows_in']} input ids missing, {comparison['duplicated']} duplicated, "
                          f"{comparison['unexpected']} unexpected ({shown}); job {status}; partial output kept "
                          f"at {data_uri}", details)
    labels = output.column("image_label").to_pylist()
    scores = output.column("image_score").to_pylist()
    unlabelled = sum(1 for label, score in zip(labels, scores, strict=True)
                     if not label or score is None or not 0.0 <= score <= 1.0)
    if unlabelled:
        raise CheckFailed(f"{unlabelled} of {len(labels)} output rows carry no valid image_label/image_score",
                          details)
    if status != "SUCCEEDED":
        raise CheckFailed(f"batch job {status} although its output holds every input row: {message}; "
                          f"last output: {tail(logs)}", details)
    summary_uri = storage.join(output_uri, "summary.json")
    summary = json.loads(storage.read_text(summary_uri)) if storage.exists(summary_uri) else {}
    details.update({"device": summary.get("device"), "rows_per_second": summary.get("rows_per_second"),
                    "label_counts": dict(Counter(labels))})
    return Passed(f"{comparison['rows_out']} output rows = the {comparison['rows_in']} input ids exactly once, "
                  f"every row labelled; read back from {data_uri} ({summary.get('rows_per_second')} rows/s on "
                  f"{summary.get('device')})", details)


def parquet_table(uri: str, columns: list[str]):
    """Columns of every Parquet file under a folder URI, read here with pyarrow (not through the workload)."""
    import pyarrow.dataset as pads

    from park.workloads import storage

    if not storage.exists(uri):
        raise FileNotFoundError(uri)
    filesystem, path = storage.resolve(uri)
    dataset = pads.dataset(path, filesystem=filesystem, format="parquet",
                           exclude_invalid_files=False, ignore_prefixes=[".", "_"])
    return dataset.to_table(columns=columns)


def parquet_column(uri: str, column: str) -> list[str]:
    return [str(v) for v in parquet_table(uri, [column]).column(column).to_pylist()]


def compare_ids(input_ids: list[str], output_ids: list[str]) -> dict[str, Any]:
    """Exactly once: no input id missing, none twice, none that was not in the input (a few examples each)."""
    expected, seen = set(input_ids), Counter(output_ids)
    missing = sorted(expected - seen.keys())
    unexpected = sorted(seen.keys() - expected)
    duplicated = sorted(i for i, n in seen.items() if n > 1)
    return {"rows_in": len(input_ids), "rows_out": len(output_ids), "missing": len(missing),
            "duplicated": len(duplicated), "unexpected": len(unexpected),
            "examples": {"missing": missing[:3], "duplicated": duplicated[:3], "unexpected": unexpected[:3]},
            "exact": not (missing or unexpected or duplicated) and len(expected) == len(input_ids) > 0}


# --- serve --------------------------------------------------------------------------------------


def local_serve(target: LocalTarget, ctx: RunContext) -> Passed:
    _workload_module("park.workloads.serve.config")
    raise CheckFailed("the serve workload's integration is pending")


# --- observability ------------------------------------------------------------------------------


def local_ray_metrics(target: LocalTarget, ctx: RunContext) -> Passed:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    head = target.head()
    deadline = time.monotonic() + 60
    families: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            text = httpx.get(head.metrics_url, timeout=10).text
            families = {f.name: len(f.samples) for f in text_string_to_metric_families(text) if f.samples}
        except httpx.HTTPError as err:
            ctx.log.info("metrics endpoint %s not ready: %s", head.metrics_url, err)
        if any(name.startswith("ray_node_") for name in families):
            break
        time.sleep(2)
    ray_families = sorted(name for name in families if name.startswith("ray_"))
    if not any(name.startswith("ray_node_") for name in ray_families):
        raise CheckFailed(f"{head.metrics_url} serves no ray_node_* metric within 60 s "
                          f"({len(families)} families seen)", {"families": sorted(families)[:50]})
    return Passed(f"{head.metrics_url} serves {len(ray_families)} Ray metric families in Prometheus format",
                  {"ray_families": ray_families})
