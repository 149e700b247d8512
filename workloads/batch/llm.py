"""The optional LLM stage: vLLM's offline engine inside a Ray Data actor.

Only built when ``--llm-model PATH`` is given. vLLM is imported inside the actor, never at module import,
so the rest of the pipeline (and ``park --help``) does not pay for it. On CPU vLLM needs float32, eager
mode and a small KV cache (``VLLM_CPU_KVCACHE_SPACE`` in GiB); the actor's runtime env sets those.
"""

from __future__ import annotations

import numpy as np

PROMPT = "Moderate this post. Answer SAFE or UNSAFE.\nPost: {text}\nAnswer:"
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
"""The environment of an actor that runs a vLLM offline engine on CPU (here and the post-training generators).
The last setting keeps the engine inside the actor's own process, with its one worker: otherwise an
engine-core process and a worker process each import vLLM again before the first batch (18 of this stage's
44 s of start-up on a loaded 2-core machine)."""
MAX_MODEL_LEN = 512


def llm_actor_options(gpu: bool) -> dict:
    """Ray resources of the LLM actor: one GPU, or half a CPU (vLLM's CPU backend runs its own threads;
    claiming more would starve the read tasks on a 2-CPU machine), with :data:`CPU_ENV`."""
    if gpu:
        return {"num_gpus": 1}
    return {"num_cpus": 0.5, "runtime_env": {"env_vars": dict(CPU_ENV)}}


class LLMModerator:
    """Actor: one vLLM engine; adds ``llm_output`` (greedy, a few tokens) for each row's text."""

    def __init__(self, model_path: str, max_tokens: int = 8):
        import torch
        from vllm import LLM, SamplingParams

        on_gpu = torch.cuda.is_available()
        self.engine = LLM(model=model_path, dtype="auto" if on_gpu else "float32", enforce_eager=not on_gpu,
                          max_model_len=MAX_MODEL_LEN, seed=0)
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prompts = [PROMPT.format(text=t) for t in batch["text"]]
        outputs = self.engine.generate(prompts, self.sampling, use_tqdm=False)
        return {**batch, "llm_output": np.array([o.outputs[0].text for o in outputs], dtype=object)}
