"""The post-training workload (issue 9): where a GRPO step's time goes, the vLLM generator's rollout speed
against plain ``transformers.generate`` on the same model and prompts, and peak memory; one run.

Run: ``.venv/bin/python benchmarks/bench_posttrain.py [--steps 12] [--rounds 5] [--json out.json]``.

1. Rollouts (a subprocess of this benchmark, so its engine is gone before the loop starts): the workload's
   own :class:`~park.workloads.posttrain.generator.Generator` (vLLM, the settings the loop uses) and
   ``model.generate`` of transformers on the same tiny Llama, the default task's prompts, ``group_size``
   samples each, ``max_tokens`` new tokens at temperature 1, no top-k/top-p (what the loop samples). Rounds
   alternate between the two after one warm-up each, so drift in this shared machine's load falls on both;
   the figure is the median over rounds of generated tokens per second.
2. The loop: ``run()`` of the workload on a fresh local Ray (2 CPUs; the kind stack's shape: 2 learner ranks,
   1 engine, 0.6 CPU each) for ``--steps`` steps. Step time split into generate / score / learn / sync
   (and checkpoint) from its reward log; the mean leaves out step 1 (first-call warm-up) and says so.
3. Peak memory: the summed RSS of this process and all its descendants (Ray's processes, the actors, vLLM's
   engine core), sampled every 0.2 s through the loop, and per role at its peak: learner ranks and the
   generator with its engine process. In the rollout subprocess, the peak of each side.

There is no aim in issue 9; the figures are in docs/benchmarks.md ("Post-training (issue 9)").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from bench_train import PeakMemory  # same folder: the memory sampler every benchmark uses
from park.workloads.posttrain.checkpoint import read_rewards_csv
from park.workloads.posttrain.config import build_config
from park.workloads.posttrain.generator import Generator, generator_env
from park.workloads.posttrain.run import run
from park.workloads.posttrain.tasks import prompts as default_prompts
from park.workloads.serve.tiny import build_tiny_llama

GROUP_SIZE = 4
MAX_TOKENS = 16
TEMPERATURE = 1.0
ROLES = {"learner": "ray::Learner", "generator": "ray::Generator"}
"""Ray names an actor's process ``ray::<Class>``; vLLM's engine core is a child of the generator's."""
RAY_START_ATTEMPTS = 3


class RolePeakMemory(PeakMemory):
    """Also the peak summed RSS per role (learner ranks, generator + its engine processes)."""

    def __init__(self, interval_s: float = 0.2):
        super().__init__(interval_s)
        self.role_peaks = {role: 0 for role in ROLES}

    def _sample(self) -> int:
        total, roles = 0, {role: 0 for role in ROLES}
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                rss = proc.memory_info().rss
                total += rss
                lineage = [proc.name(), *(p.name() for p in proc.parents()[:3])]
                titles = [" ".join(proc.cmdline()[:1])] + lineage
            except psutil.Error:
                continue
            for role, title in ROLES.items():
                if any(t.startswith(title) for t in titles):
                    roles[role] += rss
        for role, value in roles.items():
            self.role_peaks[role] = max(self.role_peaks[role], value)
        return total


def _mib(value: float) -> float:
    return round(value / 2**20, 1)


# --- rollouts: vLLM generator vs transformers.generate (run in a subprocess) -------------------------------


def rollouts(model: Path, rounds: int, repeat: int) -> dict:
    """Median tokens/s of both generators over alternating rounds; peak RSS with both loaded."""
    os.environ.update(generator_env())  # vLLM's CPU settings, as the loop's generator actor gets them
    import torch  # the rollout subprocess only: the loop's process never loads a model itself
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = default_prompts() * repeat
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    started = time.perf_counter()
    generator = Generator(str(model), seed=0, gpu_share=0.5, max_tokens=MAX_TOKENS, temperature=TEMPERATURE)
    vllm_start_s = time.perf_counter() - started
    engine_tree = PeakMemory()  # this process + vLLM's engine core while vLLM generates
    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    hf_model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def vllm_round(seed: int) -> int:
        samples = generator.generate(prompts, GROUP_SIZE, seed)
        return sum(len(s["completion_ids"]) for s in samples)

    def hf_round(seed: int) -> int:
        torch.manual_seed(seed)
        batch = tokenizer(prompts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = hf_model.generate(**batch, do_sample=True, temperature=TEMPERATURE, top_k=0, top_p=1.0,
                                    max_new_tokens=MAX_TOKENS, num_return_sequences=GROUP_SIZE, pad_token_id=pad)
        new = out[:, batch["input_ids"].shape[1]:]
        # tokens up to and including the first EOS, as vLLM counts them
        counts = []
        for row in new.tolist():
            counts.append(row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row))
        return sum(counts)

    speeds: dict[str, list[float]] = {"vllm": [], "hf": []}
    tokens: dict[str, list[int]] = {"vllm": [], "hf": []}
    with engine_tree:
        vllm_round(999), hf_round(999)  # warm-up
        for index in range(rounds):
            for name, one_round in (("vllm", vllm_round), ("hf", hf_round)):
                started = time.perf_counter()
                count = one_round(index)
                speeds[name].append(count / (time.perf_counter() - started))
                tokens[name].append(count)
    return {
        "sequences_per_round": len(prompts) * GROUP_SIZE,
        "max_tokens": MAX_TOKENS,
        "rounds": rounds,
        "vllm_tokens_per_s": round(statistics.median(speeds["vllm"]), 1),
        "hf_tokens_per_s": round(statistics.median(speeds["hf"]), 1),
        "ratio_vllm_over_hf": round(statistics.median(speeds["vllm"]) / statistics.median(speeds["hf"]), 2),
        "tokens_per_round": {k: statistics.median(v) for k, v in tokens.items()},
        "vllm_engine_start_s": round(vllm_start_s, 1),
        "peak_rss_mib_both_loaded": _mib(engine_tree.peak_bytes),
    }


# --- the loop -------------------------------------------------------------------------------------------


def loop(model_option: str, steps: int, scratch: Path) -> dict:
    import ray  # only the loop's process starts Ray (the rollout subprocess does not)

    config = build_config(model=model_option, storage_uri=str(scratch / "storage"), run_name="bench",
                          steps=steps, group_size=GROUP_SIZE, max_tokens=MAX_TOKENS, learners=2, generators=1,
                          learner_cpus=0.6, generator_cpus=0.6, use_gpu="false")
    with RolePeakMemory() as memory:
        for attempt in range(RAY_START_ATTEMPTS):
            try:
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(scratch / "ray"))
                break
            except Exception as err:  # Ray waits only 30 s for its raylet: too little on a loaded machine
                print(f"ray.init failed ({err}); attempt {attempt + 1} of {RAY_START_ATTEMPTS}", file=sys.stderr)
                ray.shutdown()
                if attempt + 1 == RAY_START_ATTEMPTS:
                    raise
        try:
            started = time.perf_counter()
            summary = run(config)
            wall = time.perf_counter() - started
        finally:
            ray.shutdown()

    rows = read_rewards_csv(config.run_uri)
    later = rows[1:] or rows
    split = {key: round(statistics.fmean(r[key] for r in later), 3)
             for key in ("generate_s", "score_s", "learn_s", "sync_s")}
    first = {key: rows[0][key] for key in split}
    step_s = round(sum(split.values()), 3)
    tokens = sum(r["tokens_generated"] for r in later)
    generate_s = sum(r["generate_s"] for r in later)
    return {
        "steps": steps,
        "wall_s": round(wall, 1),
        "generator_start_s": [g["start_s"] for g in summary["generators"]],
        "mean_step_s_without_step_1": step_s,
        "split_s": split,
        "split_share": {k: round(v / step_s, 3) for k, v in split.items()} if step_s else {},
        "step_1_s": first,
        "checkpoint_s": summary["mean_step_timings_s"]["checkpoint_s"],
        "in_loop_rollout_tokens_per_s": round(tokens / generate_s, 1) if generate_s else None,
        "reward": [round(summary["first_reward_mean"], 3), round(summary["last_reward_mean"], 3)],
        "logprob_max_abs_diff": summary["logprob_max_abs_diff"],
        "peak_rss_mib_all_processes": _mib(memory.peak_bytes),
        "peak_rss_mib_by_role": {role: _mib(value) for role, value in memory.role_peaks.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1,
                        help="rollout comparison: the prompts this many times over (1 = one loop step's batch)")
    parser.add_argument("--json", type=Path)
    # the subprocess's mode: the model folder, and a file for the result (vLLM writes to stdout too)
    parser.add_argument("--rollouts-only", type=Path, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rollouts_only:
        model, out = args.rollouts_only
        out.write_text(json.dumps(rollouts(model, args.rounds, args.repeat)))
        return


    started = time.time()
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "cpus": len(os.sched_getaffinity(0)), "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-pt-", dir="/tmp") as folder:  # short: Ray's socket paths
        scratch = Path(folder)
        model = build_tiny_llama(scratch / "tiny-llama")
        rollout_file = scratch / "rollouts.json"
        rollout_process = subprocess.run(
            [sys.executable, __file__, "--rollouts-only", str(model), str(rollout_file), "--rounds",
             str(args.rounds), "--repeat", str(args.repeat)],
            capture_output=True, text=True, check=False)
        if rollout_process.returncode != 0 or not rollout_file.exists():
            sys.exit(f"rollout comparison failed:\n{(rollout_process.stdout + rollout_process.stderr)[-3000:]}")
        result["rollouts"] = json.loads(rollout_file.read_text())
        print(f"rollouts: {json.dumps(result['rollouts'])}", file=sys.stderr, flush=True)
        result["loop"] = loop(str(model), args.steps, scratch)
    result["load_average_end"] = os.getloadavg()
    result["total_s"] = round(time.time() - started, 1)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
