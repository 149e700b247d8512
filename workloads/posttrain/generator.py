"""The generator: a vLLM engine in a Ray actor, and the worker extension that reloads its weights in place.

Weight sync goes through vLLM's supported path: ``LLM.collective_rpc`` runs
:meth:`WeightReloadExtension.reload_from_safetensors` in every vLLM worker, which calls the model runner's
``reload_weights(weights_iterator=..., is_checkpoint_format=True)`` (vLLM 0.32
``model_executor/model_loader/reload/inplace.py``). The weights travel as safetensors bytes: the same bytes
the learner writes as its checkpoint, and a form that survives vLLM's RPC serialization (raw tensors in rpc
args arrived mangled on CPU). After a reload the prefix cache is reset: its KV blocks came from the old
weights.

This module is imported inside Ray actors and vLLM workers only (it imports torch and vLLM).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from park.workloads.batch.llm import CPU_ENV
from park.workloads.posttrain.config import local_model
from park.workloads.serve.app import GPU_MEMORY_SHARE
from safetensors.torch import load as load_safetensors

EXTENSION = "park.workloads.posttrain.generator.WeightReloadExtension"
MAX_MODEL_LEN = 512


class WeightReloadExtension:
    """Mixed into vLLM's worker class (``worker_extension_cls``); ``self`` is the worker."""

    def reload_from_safetensors(self, blob: bytes) -> int:
        """Load every tensor of ``blob`` into the running model; return how many were loaded."""
        weights = load_safetensors(blob)
        self.reload_weights(weights_iterator=iter(weights.items()), is_checkpoint_format=True)
        return len(weights)


def generator_env() -> dict[str, str]:
    """Environment of a generator actor on CPU: vLLM's CPU settings shared with the batch workload, the
    engine inside the actor's own process among them (see docs/benchmarks.md, "Post-training")."""
    return dict(CPU_ENV)


class Generator:
    """Ray actor: one vLLM engine sampling ``group_size`` completions per prompt with their log-probs."""

    def __init__(self, model: str, *, seed: int, gpu_share: float, max_tokens: int, temperature: float):
        from vllm import LLM

        on_gpu = torch.cuda.is_available()
        folder = local_model(model, Path(tempfile.mkdtemp(prefix="park-posttrain-gen-")))
        started = time.perf_counter()
        self.engine = LLM(
            model=str(folder), dtype="float32", enforce_eager=not on_gpu, max_model_len=MAX_MODEL_LEN, seed=seed,
            worker_extension_cls=EXTENSION, enable_prefix_caching=True, logprobs_mode="processed_logprobs",
            # a fractional engine takes that share of the memory vLLM may use, so engines sharing a GPU fit
            **({"gpu_memory_utilization": gpu_share * GPU_MEMORY_SHARE} if on_gpu else {}),
        )
        self.start_s = time.perf_counter() - started
        self.max_tokens, self.temperature = max_tokens, temperature
        self.device = "cuda" if on_gpu else "cpu"

    def info(self) -> dict[str, Any]:
        return {"start_s": round(self.start_s, 2), "device": self.device, "pid": os.getpid()}

    def generate(self, prompts: list[str], group_size: int, seed: int) -> list[dict[str, Any]]:
        """For each prompt, ``group_size`` samples: prompt ids, completion ids and text, and the engine's
        log-prob of each sampled token after temperature (``logprobs_mode="processed_logprobs"``; the learner
        divides its logits by the same temperature)."""
        from vllm import SamplingParams

        params = SamplingParams(n=group_size, temperature=self.temperature, top_p=1.0, top_k=-1,
                                max_tokens=self.max_tokens, logprobs=0, seed=seed)
        outputs = self.engine.generate(prompts, params, use_tqdm=False)
        samples = []
        for prompt, output in zip(prompts, outputs):
            for completion in output.outputs:
                ids = list(completion.token_ids)
                logprobs = [step[token].logprob for step, token in zip(completion.logprobs, ids)]
                samples.append({"prompt": prompt, "prompt_ids": list(output.prompt_token_ids),
                                "completion_ids": ids, "completion": completion.text, "logprobs": logprobs})
        return samples

    def load_weights(self, blob: bytes) -> int:
        """Reload the engine's weights from safetensors bytes; the number of tensors loaded."""
        loaded = self.engine.collective_rpc("reload_from_safetensors", args=(blob,))
        self.engine.reset_prefix_cache()
        return loaded[0]
