"""The serving workload (vLLM on Ray Serve, OpenAI API) against vLLM's own OpenAI server and a naive
Hugging Face server, side by side in one run, on the same tiny Llama and the same load.

Run: ``.venv/bin/python benchmarks/bench_serve.py [--model-size tiny|small] [--clients 16] [--rounds 3]
[--json out.json]``. The three systems are started one after the other, then measured in interleaved rounds
(one at a time, the others idle) so drift in this shared machine's background load falls on all alike;
each figure is the median over rounds:

- ``serve``: the kind stack's Serve config (model source pointed at the tiny Llama), deployed through Serve's
  REST API on a ``ray start --head`` of free ports and its own temp dir — what the RayService runs;
- ``serve-direct``: the same, on a head started with Ray 2.60's short proxy path (:data:`DIRECT_STREAMING_ENV`):
  HAProxy as the ingress and the model's replicas serving HTTP themselves (no ``OpenAiIngress`` hop); the app
  builder then leaves the ingress out (``park.workloads.serve.app.direct_streaming``);
- ``vllm``: ``python -m vllm.entrypoints.openai.api_server`` with the same engine settings (float32, eager,
  ``VLLM_CPU_KVCACHE_SPACE=1``);
- ``hf``: this file's ``--hf-server`` mode: a FastAPI server that answers each request with its own
  ``model.generate`` call, one request at a time (what a first, naive model server does).

``--model-size small`` serves a wider random Llama (hidden 512, 8 layers) with the same tokenizer: on the tiny
model a forward pass costs next to nothing, so there is little for batching to amortise.

Load: ``--clients`` concurrent clients, each sending ``--requests-per-client`` completions back to back
(greedy, ``ignore_eos`` so every answer has exactly ``--max-tokens`` tokens), after a short warm-up; then
the same requests from one client, for latency without queueing. Figures: output tokens/s, requests/s,
p50/p95 latency, time to ready, CPU time per request of the server's processes under load (by process:
what each hop costs; less sensitive than throughput to the machine's background load), and peak memory
(summed RSS of each server's whole process tree, sampled every 0.2 s from its start to the end; shared
pages count once per process, so it overstates all alike).
Ratios and latency differences are taken within each round (same background load) and then the median over
rounds is reported with the per-round values, so the spread shows how far one figure can be trusted.
Aims (issue 10): serve/vllm throughput >= 0.95 at 16 clients, <= 10 ms added p50 at 1 client, serve/hf >= 5
at 16 clients on the small model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from bench_train import PeakMemory  # same folder: the memory sampler every benchmark uses

MODEL_NAME = "tiny-llama"
PROMPT = "The PARK stack serves models with Ray Serve and vLLM. Tell me a story:"
READY_TIMEOUT_S = 600
WARMUP_REQUESTS = 4
DIRECT_STREAMING_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING": "1",
}
"""Ray 2.60's short proxy path ("Enable High Throughput on Ray Serve with KubeRay", "Direct streaming" in the
Ray docs): HAProxy instead of the Python proxy, gRPC between replicas, and the model's replicas as the ingress
(no OpenAiIngress hop). Set on the head of the ``serve-direct`` system."""


class TreePeakMemory(PeakMemory):
    """Peak summed RSS of one process and its descendants (a server, not this benchmark's client)."""

    def __init__(self, root_pid: int, interval_s: float = 0.2):
        super().__init__(interval_s)
        self.root_pid = root_pid

    def _sample(self) -> int:
        try:
            root = psutil.Process(self.root_pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in processes:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total


def tree_cpu_seconds(root_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of each process in a tree, keyed ``"<pid> <name>"``."""
    try:
        root = psutil.Process(root_pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    seconds = {}
    for proc in processes:
        try:
            name = proc.name()
            if name.startswith("python"):
                name = " ".join(proc.cmdline()[1:3])
            times = proc.cpu_times()
            seconds[f"{proc.pid} {name}"] = times.user + times.system
        except psutil.Error:
            continue
    return seconds


def cpu_by_process(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds spent between two samples, summed per process name (pids dropped)."""
    spent: dict[str, float] = {}
    for key, total in after.items():
        name = key.split(" ", 1)[1]
        spent[name] = spent.get(name, 0.0) + total - before.get(key, 0.0)
    return dict(sorted(spent.items(), key=lambda item: -item[1]))


# --- the naive baseline server ----------------------------------------------------------------------


def hf_server(model_dir: str, port: int) -> None:
    """One ``generate`` per request, one request at a time: no batching, no KV cache shared across
    requests."""
    import threading

    import torch
    import uvicorn
    from fastapi import FastAPI
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    one_at_a_time = threading.Lock()
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model"}]}

    @app.post("/v1/completions")
    def completions(request: dict) -> dict:
        max_tokens = int(request.get("max_tokens", 16))
        inputs = tokenizer(request["prompt"], return_tensors="pt")
        limits = {"max_new_tokens": max_tokens}
        if request.get("ignore_eos"):
            limits["min_new_tokens"] = max_tokens
        with one_at_a_time, torch.inference_mode():
            output = model.generate(**inputs, do_sample=False, **limits)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return {
            "object": "text_completion",
            "model": MODEL_NAME,
            "choices": [{"index": 0, "text": tokenizer.decode(new_tokens, skip_special_tokens=True)}],
            "usage": {
                "prompt_tokens": int(inputs["input_ids"].shape[1]),
                "completion_tokens": int(new_tokens.shape[0]),
            },
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the systems under test ------------------------------------------------------------------------


def environment() -> dict[str, str]:
    from park.conformance.local_ray import local_environment

    return {**local_environment(), "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}


def wait_ready(base: str, process: subprocess.Popen | None, timeout_s: float = READY_TIMEOUT_S) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            listed = httpx.get(f"{base}/v1/models", timeout=5).json()
            if any(m.get("id") == MODEL_NAME for m in listed.get("data", [])):
                return time.monotonic() - started
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"{base} not ready within {timeout_s} s")


def stop_tree(process: subprocess.Popen) -> None:
    """Stop a server this benchmark started: its process group (it was started in a session of its own)."""
    try:
        root = psutil.Process(process.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for proc in tree:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(tree, timeout=20)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


class Server:
    """Start a system, measure it, stop it: ``with Server(...) as base_url:``."""

    def __init__(self, kind: str, model_dir: Path, workdir: Path):
        self.kind, self.model_dir, self.workdir = kind, model_dir, workdir
        self.ready_s = 0.0
        self.memory: TreePeakMemory | None = None
        self._process: subprocess.Popen | None = None
        self._head = None

    @property
    def root_pid(self) -> int:
        return self._head.process.pid if self._head is not None else self._process.pid

    def __enter__(self) -> str:
        from park.conformance.local_ray import free_ports

        port = free_ports(1)[0]
        base = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        if self.kind.startswith("serve"):
            self._start_serve(port, direct=self.kind == "serve-direct")
        else:
            if self.kind == "vllm":
                command = [
                    sys.executable,
                    "-m",
                    "vllm.entrypoints.openai.api_server",
                    "--model",
                    str(self.model_dir),
                    "--served-model-name",
                    MODEL_NAME,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--dtype",
                    "float32",
                    "--enforce-eager",
                ]
            else:
                command = [sys.executable, __file__, "--hf-server", str(self.model_dir), str(port)]
            log = open(self.workdir / f"{self.kind}.log", "wb")
            self._process = subprocess.Popen(
                command, env=environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.memory = TreePeakMemory(self._process.pid).__enter__()
        wait_ready(base, self._process, READY_TIMEOUT_S - (time.monotonic() - started))
        self.ready_s = time.monotonic() - started
        return base

    def _start_serve(self, port: int, direct: bool = False) -> None:
        import yaml
        from park.components.spec import load_stack_file, project_root
        from park.conformance.local_ray import LocalRayHead
        from park.workloads.serve.manifest import build_rayservice

        spec = load_stack_file(project_root() / "stacks" / "Pulumi.kind.yaml")
        model = spec.models[0].model_copy(update={"name": MODEL_NAME, "source": self.model_dir.as_uri()})
        spec = spec.model_copy(update={"models": [model]})
        config = yaml.safe_load(build_rayservice(spec)["spec"]["serveConfigV2"])
        # short folder names: Ray's socket paths under it must stay within 107 bytes
        self._head = LocalRayHead(temp_dir=self.workdir / ("rayd" if direct else "ray"), num_cpus=2)
        saved = dict(os.environ)
        if direct:  # the head (LocalRayHead) and `serve start` inherit this environment
            os.environ.update(DIRECT_STREAMING_ENV)
        try:
            self._head.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.memory = TreePeakMemory(self._head.process.pid).__enter__()
        serve_cli = str(Path(sys.executable).parent / "serve")
        started = subprocess.run(
            [
                serve_cli,
                "start",
                "--address",
                f"127.0.0.1:{self._head.ports['port']}",
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(port),
            ],
            env={**environment(), **(DIRECT_STREAMING_ENV if direct else {})},
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(f"serve start failed ({started.returncode}): {(started.stdout + started.stderr)[-3000:]}")
        answer = httpx.put(f"{self._head.dashboard_url}/api/serve/applications/", json=config, timeout=60)
        answer.raise_for_status()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            application = httpx.get(f"{self._head.dashboard_url}/api/serve/applications/", timeout=30).json()
            application = application.get("applications", {}).get(config["applications"][0]["name"], {})
            if application.get("status") == "RUNNING":
                return
            if application.get("status") == "DEPLOY_FAILED":
                raise RuntimeError(
                    f"Serve could not deploy the app: {application.get('message', '')[-1500:]}"
                )
            time.sleep(2)

    def __exit__(self, *exc) -> None:
        if self.memory is not None:
            self.memory.__exit__()
        if self._head is not None:
            self._head.stop()
        if self._process is not None:
            stop_tree(self._process)


# --- the load ------------------------------------------------------------------------------------


async def run_load(base: str, clients: int, requests_per_client: int, max_tokens: int) -> dict:
    body = {
        "model": MODEL_NAME,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
    }
    latencies: list[float] = []
    tokens: list[int] = []

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as client:

        async def one_client() -> None:
            for _ in range(requests_per_client):
                sent = time.perf_counter()
                response = await client.post(f"{base}/v1/completions", json=body)
                latencies.append(time.perf_counter() - sent)
                response.raise_for_status()
                tokens.append(response.json()["usage"]["completion_tokens"])

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - started
    if set(tokens) != {max_tokens}:
        raise RuntimeError(
            f"{base}: answers with {sorted(set(tokens))} tokens, expected exactly {max_tokens}"
        )
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "seconds": wall,
        "tokens_per_s": sum(tokens) / wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000,
    }


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def measure_all(kinds: list[str], model_dir: Path, workdir: Path, args) -> dict:
    """Start every system (one after the other), then measure them in interleaved rounds, so drift in the
    machine's background load (it is shared) falls on all alike; each figure is the median over rounds."""
    servers = {kind: Server(kind, model_dir, workdir) for kind in kinds}
    bases: dict[str, str] = {}
    try:
        for kind, server in servers.items():
            bases[kind] = server.__enter__()
            print(f"{kind:>5}: ready in {server.ready_s:.1f} s", flush=True)
        for kind in kinds:
            asyncio.run(run_load(bases[kind], 1, WARMUP_REQUESTS, args.max_tokens))
        loaded: dict[str, list[dict]] = {kind: [] for kind in kinds}
        single: dict[str, list[dict]] = {kind: [] for kind in kinds}
        cpu: dict[str, dict[str, float]] = {kind: {} for kind in kinds}
        for round_number in range(1, args.rounds + 1):
            for kind in kinds:
                before = tree_cpu_seconds(servers[kind].root_pid)
                loaded[kind].append(
                    asyncio.run(
                        run_load(bases[kind], args.clients, args.requests_per_client, args.max_tokens)
                    )
                )
                for name, seconds in cpu_by_process(before, tree_cpu_seconds(servers[kind].root_pid)).items():
                    cpu[kind][name] = cpu[kind].get(name, 0.0) + seconds
                single[kind].append(
                    asyncio.run(run_load(bases[kind], 1, args.single_requests, args.max_tokens))
                )
                print(
                    f"round {round_number} {kind:>5}: {loaded[kind][-1]['tokens_per_s']:7.1f} tok/s at "
                    f"{args.clients} clients, 1 client p50 {single[kind][-1]['p50_ms']:.0f} ms",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.__exit__()
    results = {}
    for kind, server in servers.items():
        results[kind] = {
            "ready_s": server.ready_s,
            "peak_rss_mib": server.memory.peak_mib if server.memory else None,
            "loaded": median_of(loaded[kind]),
            "single": median_of(single[kind]),
            "loaded_tokens_per_s_rounds": [round(r["tokens_per_s"], 1) for r in loaded[kind]],
            "single_p50_ms_rounds": [round(r["p50_ms"], 1) for r in single[kind]],
        }
        requests = sum(run["requests"] for run in loaded[kind])
        by_cost = sorted(cpu[kind].items(), key=lambda item: -item[1])
        top = {name: round(seconds * 1000 / requests, 1) for name, seconds in by_cost if seconds > 0.01}
        results[kind]["cpu_ms_per_request"] = round(sum(cpu[kind].values()) * 1000 / requests, 1)
        results[kind]["cpu_ms_per_request_by_process"] = top
        r = results[kind]
        print(
            f"{kind:>5}: ready {r['ready_s']:5.1f} s | {args.clients} clients: "
            f"{r['loaded']['tokens_per_s']:7.1f} tok/s, p50 {r['loaded']['p50_ms']:6.0f} ms, "
            f"p95 {r['loaded']['p95_ms']:6.0f} ms | 1 client: p50 {r['single']['p50_ms']:5.0f} ms | "
            f"peak RSS {r['peak_rss_mib']:6.0f} MiB | CPU per request {r['cpu_ms_per_request']:.0f} ms: "
            + ", ".join(f"{n} {ms:.0f}" for n, ms in list(top.items())[:5]),
            flush=True,
        )
    return results


MODEL_SIZES = {"tiny": (64, 2), "small": (512, 8)}
"""``tiny``: the 2-layer model the tests serve; ``small``: a wider random Llama (~25M parameters) whose
forward pass costs enough for batching to show."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests-per-client", type=int, default=8)
    parser.add_argument(
        "--single-requests", type=int, default=8, help="requests of the one-client latency run"
    )
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model-size", choices=sorted(MODEL_SIZES), default="tiny")
    parser.add_argument("--systems", default="vllm,serve,serve-direct,hf",
                        help="comma-separated subset of vllm,serve,serve-direct,hf")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--hf-server", nargs=2, metavar=("MODEL_DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_server:
        hf_server(args.hf_server[0], int(args.hf_server[1]))
        return

    from park.workloads.serve.tiny import build_random_llama

    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-", dir="/tmp"))  # short: Ray's socket paths are in it
    hidden, layers = MODEL_SIZES[args.model_size]
    model_dir = build_random_llama(workdir / MODEL_NAME, hidden=hidden, layers=layers)
    print(
        f"{args.model_size} random Llama (hidden {hidden}, {layers} layers) at {model_dir}; "
        f"logs in {workdir}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    load_before = os.getloadavg()[0]
    results = measure_all(args.systems.split(","), model_dir, workdir, args)
    figures: dict = {
        "model_size": args.model_size,
        "clients": args.clients,
        "requests_per_client": args.requests_per_client,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "load_average_before": load_before,
        "systems": results,
    }
    for serve in ("serve", "serve-direct"):
        if serve not in results or "vllm" not in results:
            continue
        # each ratio and difference within one round (same background load), then the median over rounds
        mine, theirs = results[serve], results["vllm"]
        ratios = [a / b for a, b in zip(mine["loaded_tokens_per_s_rounds"], theirs["loaded_tokens_per_s_rounds"])]
        added = [a - b for a, b in zip(mine["single_p50_ms_rounds"], theirs["single_p50_ms_rounds"])]
        figures[f"{serve}_vs_vllm_throughput"] = round(statistics.median(ratios), 3)
        figures[f"{serve}_vs_vllm_throughput_rounds"] = [round(r, 3) for r in ratios]
        figures[f"{serve}_added_p50_ms_single"] = round(statistics.median(added), 1)
        figures[f"{serve}_added_p50_ms_single_rounds"] = [round(a, 1) for a in added]
        print(
            f"{serve} / vllm throughput at {args.clients} clients: median {figures[f'{serve}_vs_vllm_throughput']:.2f}"
            f" (rounds {min(ratios):.2f}-{max(ratios):.2f}; aim >= 0.95); added p50 at 1 client: median "
            f"{figures[f'{serve}_added_p50_ms_single']:+.0f} ms (rounds {min(added):+.0f} to {max(added):+.0f}; "
            "aim <= 10 ms)"
        )
    for serve in ("serve", "serve-direct", "vllm"):
        if serve in results and "hf" in results:
            ratios = [a / b for a, b in zip(results[serve]["loaded_tokens_per_s_rounds"],
                                            results["hf"]["loaded_tokens_per_s_rounds"])]
            figures[f"{serve}_vs_hf_throughput"] = round(statistics.median(ratios), 2)
            print(f"{serve} / naive HF throughput at {args.clients} clients: median {statistics.median(ratios):.1f}x "
                  f"(rounds {min(ratios):.1f}-{max(ratios):.1f}; aim >= 5)")
    figures["load_average_after"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
