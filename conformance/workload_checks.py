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
        raise CheckFailed(
            f"{name} is not available ({err}); this park-stack build ships without that workload"
        ) from None


def _left_at(ctx: RunContext, what: str, uri: str) -> str:
    """Where a failed workload's output is, and whether it outlives the run (local storage is in the run's
    scratch folder, removed at the end unless --keep)."""
    if ctx.options.keep:
        return f"{what} kept at {uri}"
    return f"{what} at {uri} (removed with the run's scratch folder; rerun with --keep to inspect them)"


# --- train --------------------------------------------------------------------------------------


def local_train(target: LocalTarget, ctx: RunContext) -> Passed:
    from park.conformance.local import flag_value, rayjob_as_job, tail
    from park.workloads import storage

    target.require_gpu_if_asked()
    manifest = _workload_module("park.workloads.train.manifest")
    bar = ctx.options.injections.train_min_accuracy
    if bar is None:
        bar = manifest.DEFAULT_MIN_ACCURACY
    run_name = f"{ctx.name}-train"
    rayjob = manifest.build_rayjob(
        target.spec,
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
    status, message, logs = target.run_job("train", entrypoint, runtime_env, target._time_left(540))

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
            f"training job {status} and left no summary at {summary_uri}: "
            f"{message}; last output: {tail(logs)}",
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


# --- batch --------------------------------------------------------------------------------------


def local_batch(target: LocalTarget, ctx: RunContext) -> Passed:
    from park.conformance.local import flag_value, rayjob_as_job, tail
    from park.workloads import storage

    target.require_gpu_if_asked()
    manifest = _workload_module("park.workloads.batch.manifest")
    name = f"{ctx.name}-batch"
    rayjob = manifest.build_rayjob(
        target.spec,
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
    status, message, logs = target.run_job("batch", entrypoint, runtime_env, target._time_left(540))

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
            f"batch job {status} and left no input Parquet at {input_uri}: {message}; "
            f"last output: {tail(logs)}",
            details,
        ) from None
    try:
        output = parquet_table(data_uri, ["id", "image_label", "image_score"])
    except FileNotFoundError:
        raise CheckFailed(
            f"batch job {status} and wrote no output Parquet at {data_uri}: {message}; "
            f"last output: {tail(logs)}",
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
            f"batch job {status} although its output holds every input row: {message}; "
            f"last output: {tail(logs)}",
            details,
        )
    summary_uri = storage.join(output_uri, "summary.json")
    summary = json.loads(storage.read_text(summary_uri)) if storage.exists(summary_uri) else {}
    details.update(
        {
            "device": summary.get("device"),
            "rows_per_second": summary.get("rows_per_second"),
            "label_counts": dict(Counter(labels)),
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


def parquet_table(uri: str, columns: list[str]):
    """Columns of every Parquet file under a folder URI, read here with pyarrow (not through the workload)."""
    import pyarrow.dataset as pads
    from park.workloads import storage

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


# --- serve --------------------------------------------------------------------------------------


SERVE_READY_S = 420.0
"""vLLM's CPU engine starts in ~30 s on an idle 2-core machine; a busy one needs several times that."""
CHAT_MAX_TOKENS = 8
CHAT_PROMPT = "What is the capital of France?"


def serve_module():
    """The serve workload's builders: ``serve_config`` (config module) and ``build_rayservice`` (manifest)."""
    import types

    config = _workload_module("park.workloads.serve.config")
    manifest = _workload_module("park.workloads.serve.manifest")
    return types.SimpleNamespace(
        serve_config=config.serve_config,
        build_rayservice=manifest.build_rayservice,
        config=config,
        manifest=manifest,
    )


def _model_name_for(path: str) -> str:
    """A valid served-model id from a folder name (``/models/Qwen2.5-0.5B`` -> ``Qwen2.5-0.5B``)."""
    import re

    name = re.sub(r"[^A-Za-z0-9._-]", "-", path.rstrip("/").rsplit("/", 1)[-1]).strip("-.") or "model"
    return name[:128]


def local_serve(target: LocalTarget, ctx: RunContext) -> Passed:
    import httpx
    from park.components.spec import ServedModel
    from park.conformance.local_ray import free_ports

    target.require_gpu_if_asked()
    app = _workload_module("park.workloads.serve.app")
    if ctx.options.model:
        try:
            folder = app.check_local_model(ctx.options.model.removeprefix("file://"))
        except app.ServeArgsError as err:
            raise CheckFailed(
                f"--model {ctx.options.model}: {err}; pass a folder holding a Hugging Face model "
                f"(config.json, weights, tokenizer), or leave --model out to serve a fresh tiny "
                f"Llama"
            ) from None
        model = ServedModel(
            name=_model_name_for(str(folder)), source=str(folder), gpu_fraction=target.served_model_gpus()
        )
        built = False
    else:
        from park.workloads.serve.tiny import build_tiny_llama
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # keep the run's output to one line per check
        started = time.monotonic()
        folder = build_tiny_llama(ctx.workdir / "models" / "tiny-llama")
        ctx.log.info("built the tiny Llama in %.1f s at %s", time.monotonic() - started, folder)
        name = target.spec.models[0].name if target.spec.models else "tiny-llama"
        model = ServedModel(name=name, source=str(folder), gpu_fraction=target.served_model_gpus())
        built = True
    spec = target.spec.model_copy(update={"models": [model]})
    serve = serve_module()
    config = serve.serve_config(spec)
    port = free_ports(1)[0]
    config = {**config, "proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": port}}
    head = target.head()
    ctx.log.info("deploying Serve config: %s", json.dumps(config))
    answer = httpx.put(f"{head.dashboard_url}/api/serve/applications/", json=config, timeout=60)
    if answer.status_code != 200:
        raise CheckFailed(f"Serve refused the config ({answer.status_code}): {answer.text[:500]}")
    target.ctx.on_cleanup(
        "delete the Serve applications",
        lambda: httpx.delete(f"{head.dashboard_url}/api/serve/applications/", timeout=30),
    )
    names = [a["name"] for a in config["applications"]]
    deploy_s = _wait_serve_running(head.dashboard_url, names, target._time_left(SERVE_READY_S), ctx)
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
    from park.conformance.judgements import judge_chat_completion

    verdict = judge_chat_completion(response.json(), model.name)
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
    import httpx

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


# --- observability ------------------------------------------------------------------------------


def local_ray_metrics(target: LocalTarget, ctx: RunContext) -> Passed:
    """The head's Prometheus endpoint serves Ray's node metrics, and — when this run deployed the serving
    workload — Serve's per-replica health of that application and vLLM's engine metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    head = target.head()
    serve_app = ctx.facts.get("serve_application")
    deadline = time.monotonic() + 60
    families: dict[str, list] = {}
    missing: list[str] = ["ray_node_*"]
    while time.monotonic() < deadline:
        try:
            text = httpx.get(head.metrics_url, timeout=10).text
            families = {f.name: f.samples for f in text_string_to_metric_families(text) if f.samples}
        except httpx.HTTPError as err:
            ctx.log.info("metrics endpoint %s not ready: %s", head.metrics_url, err)
        missing = _missing_metrics(families, serve_app)
        if not missing:
            break
        time.sleep(2)
    ray_families = sorted(name for name in families if name.startswith("ray_"))
    details = {"ray_families": ray_families, "endpoint": head.metrics_url}
    if missing:
        raise CheckFailed(
            f"{head.metrics_url} lacks {', '.join(missing)} after 60 s ({len(ray_families)} Ray "
            f"metric families seen)",
            details,
        )
    served = ""
    if serve_app:
        vllm = [name for name in ray_families if name.startswith("ray_vllm")]
        served = (
            f"; Serve reports application {serve_app!r} healthy (ray_serve_deployment_replica_healthy) and "
            f"vLLM exports {len(vllm)} engine metric families"
        )
    return Passed(
        f"{head.metrics_url} serves {len(ray_families)} Ray metric families in Prometheus format{served}",
        details,
    )


def _missing_metrics(families: dict[str, list], serve_app: str | None) -> list[str]:
    missing = []
    if not any(name.startswith("ray_node_") for name in families):
        missing.append("ray_node_*")
    if serve_app:
        healthy = [
            s
            for s in families.get("ray_serve_deployment_replica_healthy", [])
            if s.labels.get("application") == serve_app and s.value == 1
        ]
        if not healthy:
            missing.append(f"ray_serve_deployment_replica_healthy{{application={serve_app!r}}} == 1")
        if not any(name.startswith("ray_vllm") for name in families):
            missing.append("ray_vllm_*")
    return missing
