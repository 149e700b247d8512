"""The serving program: args -> Ray Serve LLM configs (pure), bucket downloads (pyarrow.fs), and the OpenAI
application running for real — two tiny Llamas in vLLM (CPU) on one local Ray, one Serve application.

The real part connects to the session's Ray head (tests/conftest.py) and deploys the app built from the
kind stack's Serve config args, with the model sources pointed at two tiny Llamas built in tmp (different
seeds, so their greedy answers differ and routing by ``model`` is visible). Hugging Face ``generate`` on
the same folders is the oracle. The killed-replica test runs last (it restarts one engine).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import httpx
import pytest
import torch
from park.components.spec import ServedModel, SpecError, load_stack_file, project_root
from park.workloads.serve import app as serve_app
from park.workloads.serve.app import (
    MODEL_PATH_ENV,
    MODEL_URI_ENV,
    ServeAppArgs,
    ServeArgsError,
    ServedModelArgs,
    check_local_model,
    locate_model,
    parse_args,
)
from park.workloads.serve.config import serve_config
from park.workloads.serve.tiny import TINY_SEED, build_tiny_llama

SERVE_READY_S = 480
"""Two vLLM CPU engines start in ~60 s on an idle 2-core machine; a shared, busy one needs several times
that."""
REPLICA_RECOVERY_S = 300
REQUEST_TIMEOUT_S = 120
MAX_TOKENS = 16
PROMPT = "The capital of France is"
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
MODEL_A, MODEL_B = "tiny-a", "tiny-b"


# --- model sources, without Ray -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind", "where"),
    [
        ("s3://bucket/models/qwen", "remote", "s3://bucket/models/qwen"),
        ("gs://bucket/models/qwen", "remote", "gs://bucket/models/qwen"),
        ("file:///mnt/park-storage/models/tiny", "local", "/mnt/park-storage/models/tiny"),
        ("/models/tiny", "local", "/models/tiny"),
        ("./models/tiny", "local", "./models/tiny"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "hub", "Qwen/Qwen2.5-0.5B-Instruct"),
    ],
)
def test_model_sources_are_classified(source, kind, where):
    location = locate_model(source)
    assert (location.kind, location.where) == (kind, where)


def test_an_existing_folder_named_like_a_hub_id_is_local(tmp_path, monkeypatch):
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert locate_model("org/name").kind == "local"


def test_unsupported_scheme_is_named():
    with pytest.raises(ServeArgsError, match="unsupported scheme 'hdfs'"):
        locate_model("hdfs://namenode/models/x")


def test_missing_model_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ServeArgsError, match=f"model path '{missing}' does not exist"):
        check_local_model(missing)


def test_folder_without_config_is_not_a_model(tmp_path):
    with pytest.raises(ServeArgsError, match="holds no config.json"):
        check_local_model(tmp_path)


def test_missing_model_fails_the_app_build_with_its_property_path(tmp_path):
    args = {"models": [{"name": "gone", "source": f"file://{tmp_path}/gone", "gpus": 0}]}
    with pytest.raises(ServeArgsError) as err:
        serve_app.serving_args(args)
    assert str(err.value) == f"models[0].source ('gone'): model path '{tmp_path}/gone' does not exist"


# --- application args ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"models": []}, "models: List should have at least 1 item"),
        (
            {"models": [{"name": "m", "source": "/x", "gpus": -1}]},
            "models[0].gpus: Input should be greater than",
        ),
        ({"models": [{"name": "m", "source": "/x", "replicas": 2}]}, "models[0].replicas: Extra inputs"),
        (
            {"models": [{"name": "m", "source": "/x"}, {"name": "m", "source": "/y"}]},
            "models[1].name: duplicate model name 'm'",
        ),
        (
            {"models": [{"name": "m", "source": "/x", "gpus": 1.5}]},
            "models[0].gpus: 1.5: above one GPU a replica takes whole GPUs",
        ),
        (
            {"models": [{"name": "m", "source": "/x", "min_replicas": 3, "max_replicas": 2}]},
            "models[0].min_replicas: 3 is above max_replicas 2",
        ),
        (
            {"models": [{"name": "m", "source": "/x", "gpus": 0.5, "gpu_time_slices": 4}]},
            "models[0].gpus: 0.5 is more than one of the 4 time slices of a GPU a pod holds; at most 0.25",
        ),
        (
            {"models": [{"name": "m", "source": "/x", "gpu_time_slices": 2}]},
            "models[0].gpus: left open (1 on a GPU cluster) is more than one of the 2 time slices",
        ),
    ],
)
def test_bad_args_name_their_property_path(args, message):
    with pytest.raises(ServeArgsError, match="invalid serve application args") as err:
        parse_args(args)
    assert message in str(err.value)


def _config_for(tmp_path, **model) -> dict:
    folder = tmp_path / "model"
    if not folder.exists():
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    app = ServeAppArgs(models=[ServedModelArgs(**{"name": "m", "source": str(folder), **model})])
    return serve_app.llm_config_dict(app.models[0], app)


def test_cpu_model_gets_vllm_cpu_settings(tmp_path):
    config = _config_for(tmp_path, gpus=0, min_replicas=0, max_replicas=3)
    assert config["accelerator_config"] == {"kind": "cpu"}
    assert config["engine_kwargs"] == {"dtype": "float32", "enforce_eager": True}
    assert config["runtime_env"]["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert config["placement_group_config"]["bundles"] == [{"CPU": 1.0}]
    assert config["deployment_config"]["autoscaling_config"] == {
        "min_replicas": 0,
        "initial_replicas": 1,
        "max_replicas": 3,
        "target_ongoing_requests": serve_app.DEFAULT_TARGET_ONGOING_REQUESTS,
    }


def test_fractional_gpu_shares_the_device_and_its_memory(tmp_path):
    config = _config_for(tmp_path, gpus=0.25)
    assert config["accelerator_config"] == {"kind": "gpu"}
    assert config["placement_group_config"]["bundles"] == [{"CPU": 1.0, "GPU": 0.25}]
    assert config["engine_kwargs"]["gpu_memory_utilization"] == pytest.approx(0.9 * 0.25)
    assert config["engine_kwargs"]["tensor_parallel_size"] == 1


@pytest.mark.parametrize(
    ("gpus", "slices", "bundle_gpu", "memory"),
    [(0.25, 4, 1.0, 0.225), (0.125, 4, 0.5, 0.1125), (0.5, 2, 1.0, 0.45), (0.1, 3, 0.3, 0.09)],
)
def test_time_sliced_gpu_bundles_are_scaled_to_the_pods_slice(tmp_path, gpus, slices, bundle_gpu, memory):
    """A pod on a GPU sliced R ways has one Ray GPU (the whole device) but owns 1/R of it: the bundle asks
    gpus x R of that Ray GPU, while vLLM's memory share stays gpus x 0.9 of the physical device."""
    config = _config_for(tmp_path, gpus=gpus, gpu_time_slices=slices)
    assert config["placement_group_config"]["bundles"] == [{"CPU": 1.0, "GPU": bundle_gpu}]
    assert config["engine_kwargs"]["gpu_memory_utilization"] == memory
    replicas_per_pod = int(1 // bundle_gpu)
    assert slices * replicas_per_pod * memory <= serve_app.GPU_MEMORY_SHARE + 1e-9


def test_rounding_never_lets_a_sliced_gpu_exceed_its_memory_share():
    """Ray keeps 4 decimals: the bundle rounds up (Ray packs no extra replica), the memory share rounds down
    (1/7 x 0.9 = 0.12857..., rounded to 0.129, would make 7 slices ask for 0.903)."""
    for slices in range(2, 49):
        gpus = 1 / slices
        bundle = serve_app.bundle_gpus(gpus, slices)
        assert bundle >= gpus * slices - 1e-12
        assert slices * math.floor(1 / bundle + 1e-9) * serve_app.memory_utilization(gpus) <= 0.9 + 1e-12


def test_without_time_slices_nothing_changes(tmp_path):
    """A local Ray or an unshared pool: gpu_time_slices left at 1 gives the bundle the plain fraction."""
    assert _config_for(tmp_path, gpus=0.25)["placement_group_config"] == _config_for(
        tmp_path, gpus=0.25, gpu_time_slices=1
    )["placement_group_config"]


def test_several_whole_gpus_become_tensor_parallel_workers(tmp_path):
    config = _config_for(tmp_path, gpus=2, max_model_len=4096)
    assert config["placement_group_config"]["bundles"] == [{"CPU": 1.0, "GPU": 1}, {"CPU": 1.0, "GPU": 1}]
    assert config["engine_kwargs"]["tensor_parallel_size"] == 2
    assert config["engine_kwargs"]["max_model_len"] == 4096


def test_gpus_left_open_follow_the_cluster(tmp_path, monkeypatch):
    monkeypatch.setattr(serve_app, "cluster_has_gpus", lambda: False)
    assert _config_for(tmp_path)["accelerator_config"] == {"kind": "cpu"}
    monkeypatch.setattr(serve_app, "cluster_has_gpus", lambda: True)
    assert _config_for(tmp_path)["accelerator_config"] == {"kind": "gpu"}


def test_bucket_model_is_loaded_from_a_node_cache_the_replica_fills(tmp_path, monkeypatch):
    monkeypatch.setenv(serve_app.MODEL_CACHE_ENV, str(tmp_path / "cache"))
    app = ServeAppArgs(models=[ServedModelArgs(name="m", source="s3://bucket/models/qwen", gpus=1)])
    config = serve_app.llm_config_dict(app.models[0], app)
    local = config["model_loading_config"]["model_source"]
    assert local.startswith(str(tmp_path / "cache" / "qwen-"))
    assert config["runtime_env"]["env_vars"][MODEL_URI_ENV] == "s3://bucket/models/qwen"
    assert config["runtime_env"]["env_vars"][MODEL_PATH_ENV] == local


def test_hub_model_is_left_to_the_hub(tmp_path):
    app = ServeAppArgs(models=[ServedModelArgs(name="m", source="Qwen/Qwen2.5-0.5B-Instruct", gpus=1)])
    config = serve_app.llm_config_dict(app.models[0], app)
    assert config["model_loading_config"]["model_source"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert config["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "0"  # the image's offline default, lifted


def test_configs_are_accepted_by_ray_serve_llm(tmp_path):
    """The dicts are only useful if Ray Serve LLM's own models accept them (and resolve the server class)."""
    from park.workloads.serve.server import ParkLLMServer
    from ray.serve.llm import LLMConfig

    for gpus in (0, 0.25, 2):
        llm_config = LLMConfig.model_validate(_config_for(tmp_path, gpus=gpus))
        assert llm_config.server_cls is ParkLLMServer
        bundles = llm_config.get_engine_config().placement_bundles
        assert sum(b.get("GPU", 0) for b in bundles) == gpus
    sliced = LLMConfig.model_validate(_config_for(tmp_path, gpus=0.25, gpu_time_slices=4))
    assert [b.get("GPU") for b in sliced.get_engine_config().placement_bundles] == [1.0], (
        "a quarter of a GPU time-sliced 4 ways takes the pod's whole slice"
    )


@pytest.mark.ray
def test_direct_streaming_args_are_built_by_ray_serve_llm(tmp_path, monkeypatch, local_ray):
    """Under direct streaming Ray Serve LLM refuses any ``ingress_deployment_config`` (ray 2.60.0,
    python/ray/llm/_internal/serve/core/ingress/builder.py, ``_validate_direct_streaming_ingress_config``);
    the args leave it out, and the builder (its flag is read at import, so patched there) accepts them.
    The builder talks to Ray: on the session's head, not a private cluster of its own (15-20 s)."""
    from ray.llm._internal.serve.core.ingress import builder

    _config_for(tmp_path)  # makes the model folder
    args = {"models": [{"name": "m", "source": str(tmp_path / "model"), "gpus": 0}]}
    assert "ingress_deployment_config" in serve_app.serving_args(args)
    monkeypatch.setenv(serve_app.DIRECT_STREAMING_ENV, "1")
    monkeypatch.setattr(builder, "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING", True)
    direct = serve_app.serving_args(args)
    assert "ingress_deployment_config" not in direct
    assert builder.build_openai_app(direct) is not None


def test_direct_streaming_with_two_models_names_the_property(tmp_path, monkeypatch):
    _config_for(tmp_path)
    models = [{"name": n, "source": str(tmp_path / "model"), "gpus": 0} for n in ("a", "b")]
    monkeypatch.setenv(serve_app.DIRECT_STREAMING_ENV, "1")
    with pytest.raises(ServeArgsError, match=r"^models: 2 models, but direct streaming"):
        serve_app.serving_args({"models": models})


# --- bucket download through pyarrow.fs ---------------------------------------------------------


def test_fetch_copies_a_model_folder_once(tmp_path):
    from park.workloads.serve.server import COMPLETE_MARKER, fetch_model

    source = tmp_path / "bucket" / "model"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text('{"model_type": "llama"}')
    (source / "sub" / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    target = tmp_path / "cache" / "model"
    fetched = fetch_model(source.as_uri(), target)
    assert fetched == target
    assert (target / "sub" / "weights.bin").read_bytes() == b"\x00\x01" * 1000
    assert (target / COMPLETE_MARKER).is_file()
    assert [p.name for p in target.parent.iterdir()] == ["model"], "no partial folder left behind"
    (source / "config.json").write_text('{"changed": true}')
    fetch_model(source.as_uri(), target)
    assert json.loads((target / "config.json").read_text()) == {"model_type": "llama"}, (
        "a finished copy is reused"
    )


def test_fetch_of_a_missing_uri_names_it(tmp_path):
    from park.workloads.serve.server import fetch_model

    uri = (tmp_path / "nothing-here").as_uri()
    with pytest.raises(ServeArgsError, match=f"model URI '{uri}' is not a folder"):
        fetch_model(uri, tmp_path / "cache")


# --- the Serve config the RayService carries ------------------------------------------------------


def test_serve_config_of_a_stack_without_models_is_a_spec_error(kind_spec):
    with pytest.raises(SpecError, match="^models: no served models"):
        serve_config(kind_spec.model_copy(update={"models": []}))


def test_serve_config_args_are_valid_app_args(kind_spec):
    args = serve_config(kind_spec)["applications"][0]["args"]
    parsed = parse_args(args)
    assert [m.name for m in parsed.models] == [m.name for m in kind_spec.models]
    assert all(m.gpus == 0 for m in parsed.models), "kind has no GPU pools: every model runs on CPU"
    assert all(m.gpu_time_slices == 1 for m in parsed.models)


@pytest.mark.parametrize(("stack", "slices"), [("aws", 4), ("gcp", 1)])
def test_serve_config_passes_the_serving_pools_time_slices(stack, slices):
    """aws serves on l4-shared (gpuSharing.replicas 4); gcp's L4 pool is not shared."""
    spec = load_stack_file(project_root() / "stacks" / f"Pulumi.{stack}.yaml")
    parsed = parse_args(serve_config(spec)["applications"][0]["args"])
    assert [m.gpu_time_slices for m in parsed.models] == [slices] * len(spec.models)


# --- the real application -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kind_spec():
    from schemas import shipped_specs

    return shipped_specs()["kind"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("served-models")
    return {
        MODEL_A: build_tiny_llama(root / MODEL_A),
        MODEL_B: build_tiny_llama(root / MODEL_B, seed=TINY_SEED + 1),
    }


@pytest.fixture(scope="module")
def oracle(tiny_models):
    """Greedy decoding with transformers on the same folders (the answers vLLM must reproduce)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = {
        name: (AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval())
        for name, path in tiny_models.items()
    }

    def greedy(model: str, *, prompt: str | None = None, messages: list[dict] | None = None) -> str:
        tokenizer, hf_model = loaded[model]
        if messages is not None:
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            inputs = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            output = hf_model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=False)
        return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    return greedy


def _free_port() -> int:
    from park.conformance.local_ray import free_ports

    return free_ports(1)[0]


def _wait_running(app_name: str, timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app_name)
        if status is not None and status.status == "DEPLOY_FAILED":
            pytest.fail(f"Serve application {app_name} failed to deploy: {status.message[-2000:]}")
        if status is not None and status.status == "RUNNING":
            return
        time.sleep(2)
    pytest.fail(f"Serve application {app_name} not RUNNING within {timeout_s} s: {status}")


@pytest.fixture(scope="module")
def served(local_ray, kind_spec, tiny_models):
    """Base URL of the OpenAI app serving both tiny models (built from the kind stack's Serve config args), on
    the session's Ray head (tests/conftest.py); Serve is shut down with the module."""
    from ray import serve

    spec = kind_spec.model_copy(
        update={
            "models": [
                ServedModel(name=MODEL_A, source=tiny_models[MODEL_A].as_uri()),  # file:// URI
                ServedModel(name=MODEL_B, source=str(tiny_models[MODEL_B])),  # plain path
            ]
        }
    )
    application = serve_config(spec)["applications"][0]
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(
            serve_app.build_app(application["args"]),
            name=application["name"],
            route_prefix=application["route_prefix"],
            blocking=False,
        )
        _wait_running(application["name"], SERVE_READY_S)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def _post(base: str, path: str, body: dict) -> dict:
    response = httpx.post(f"{base}{path}", json=body, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:500]}"
    return response.json()


def _completion(base: str, model: str) -> str:
    body = {"model": model, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0}
    return _post(base, "/v1/completions", body)["choices"][0]["text"]


def _chat(base: str, model: str) -> str:
    body = {"model": model, "messages": CHAT, "max_tokens": MAX_TOKENS, "temperature": 0}
    return _post(base, "/v1/chat/completions", body)["choices"][0]["message"]["content"]


def _sse_events(base: str, path: str, body: dict) -> tuple[str, list]:
    events = []
    with httpx.stream(
        "POST", f"{base}{path}", json={**body, "stream": True}, timeout=REQUEST_TIMEOUT_S
    ) as response:
        assert response.status_code == 200, response.read()[:500]
        content_type = response.headers["content-type"]
        for line in response.iter_lines():
            if line.startswith("data: "):
                payload = line.removeprefix("data: ")
                events.append(payload if payload == "[DONE]" else json.loads(payload))
    return content_type, events


@pytest.mark.ray
@pytest.mark.vllm
def test_models_endpoint_lists_every_configured_model(served):
    listed = httpx.get(f"{served}/v1/models", timeout=REQUEST_TIMEOUT_S).json()
    assert sorted(m["id"] for m in listed["data"]) == [MODEL_A, MODEL_B]


@pytest.mark.ray
@pytest.mark.vllm
def test_health_endpoints_answer(served):
    assert httpx.get(f"{served}/-/healthz", timeout=30).status_code == 200
    assert httpx.get(f"{served}/-/routes", timeout=30).json() == {"/": serve_app.APP_NAME}


@pytest.mark.ray
@pytest.mark.vllm
@pytest.mark.parametrize("model", [MODEL_A, MODEL_B])
def test_greedy_completion_equals_hugging_face_generate(served, oracle, model):
    assert _completion(served, model) == oracle(model, prompt=PROMPT)


@pytest.mark.ray
@pytest.mark.vllm
def test_requests_are_routed_by_model(served, oracle):
    """The two models answer the same prompt differently, each as its own oracle says: routing is real."""
    expected = {m: oracle(m, prompt=PROMPT) for m in (MODEL_A, MODEL_B)}
    assert expected[MODEL_A] != expected[MODEL_B], (
        "the two tiny models must differ for this test to mean anything"
    )
    assert {m: _completion(served, m) for m in (MODEL_A, MODEL_B)} == expected


@pytest.mark.ray
@pytest.mark.vllm
def test_chat_completion_applies_the_chat_template(served, oracle):
    assert _chat(served, MODEL_A) == oracle(MODEL_A, messages=CHAT)


@pytest.mark.ray
@pytest.mark.vllm
def test_streamed_chat_concatenates_to_the_whole_answer(served):
    body = {"model": MODEL_A, "messages": CHAT, "max_tokens": MAX_TOKENS, "temperature": 0}
    content_type, events = _sse_events(served, "/v1/chat/completions", body)
    assert content_type.startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    pieces = [e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"]]
    assert sum(1 for p in pieces if p) > 1, f"expected several content chunks, got {pieces}"
    assert "".join(pieces) == _chat(served, MODEL_A)


@pytest.mark.ray
@pytest.mark.vllm
def test_streamed_completion_concatenates_to_the_whole_answer(served):
    body = {"model": MODEL_B, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0}
    _, events = _sse_events(served, "/v1/completions", body)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"]) == _completion(
        served, MODEL_B
    )


@pytest.mark.ray
@pytest.mark.vllm
def test_unknown_model_is_a_404_naming_it(served):
    response = httpx.post(
        f"{served}/v1/completions",
        json={"model": "no-such-model", "prompt": "x", "max_tokens": 2},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 404
    assert "no-such-model" in response.text


@pytest.mark.ray
@pytest.mark.vllm
def test_bucket_and_hub_models_build_before_their_files_exist(served, tmp_path, monkeypatch):
    """The app is built on the head, where a bucket model is not (yet) on disk: building must not read it.
    (The download itself runs in the replica; fetch_model is tested above with pyarrow's local filesystem.)"""
    from ray.serve import Application

    monkeypatch.setenv(serve_app.MODEL_CACHE_ENV, str(tmp_path / "cache"))
    args = {"models": [{"name": "bucket", "source": "s3://bucket/models/qwen", "gpus": 0.25},
                       {"name": "hub", "source": "Qwen/Qwen2.5-0.5B-Instruct", "gpus": 1}]}
    assert isinstance(serve_app.build_app(args), Application)
    assert not (tmp_path / "cache").exists()


def _replica_names(deployment: str) -> set[str]:
    import ray

    prefix = f"SERVE_REPLICA::{serve_app.APP_NAME}#{deployment}#"
    return {
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)
    }


@pytest.mark.ray
@pytest.mark.vllm
def test_killed_replica_is_replaced_and_serves_again(served, oracle):
    """Runs last in this module: kill model B's only replica, wait for Serve to start a new one (a new
    engine), then B answers again as before."""
    import ray
    from ray import serve

    deployment = serve_app.deployment_name(MODEL_B)
    before = _replica_names(deployment)
    assert len(before) == 1, f"expected one replica of {deployment}, found {before}"
    ray.kill(ray.get_actor(next(iter(before)), namespace="serve"), no_restart=True)

    deadline = time.monotonic() + REPLICA_RECOVERY_S
    replaced = False
    while time.monotonic() < deadline:
        after = _replica_names(deployment)
        status = serve.status().applications[serve_app.APP_NAME].deployments[deployment]
        if after and not after & before and status.replica_states.get("RUNNING") == 1:
            replaced = True
            break
        time.sleep(2)
    assert replaced, f"{deployment} not replaced within {REPLICA_RECOVERY_S} s: {status}"
    assert _completion(served, MODEL_B) == oracle(MODEL_B, prompt=PROMPT)
