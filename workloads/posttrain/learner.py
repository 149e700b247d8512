"""The learner: one Ray actor per data-parallel rank, PyTorch DDP between them (gloo on CPU, NCCL on GPU).

Each rank holds the policy (trained) and a frozen reference copy of the starting model. Per step it gets its
share of the rollouts, computes the policy's log-probs of the sampled tokens (compared with the generator's:
the on-policy check), the GRPO loss with a KL penalty to the reference, and takes one optimizer step. Rank 0
returns the new weights as safetensors bytes (sent to the generators and written as the checkpoint).

The loss math is in plain functions (:func:`group_advantages`, :func:`grpo_loss`) so tests check it without
Ray.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
import torch.distributed as dist
from park.workloads import storage
from park.workloads.posttrain import checkpoint
from park.workloads.posttrain.config import local_model
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

PROCESS_GROUP_TIMEOUT = datetime.timedelta(seconds=120)
"""A rank stuck in an all-reduce because its peer died gives up after this (the default is 30 minutes)."""
ADVANTAGE_EPS = 1e-4


def group_advantages(rewards: list[float], group_size: int) -> list[float]:
    """GRPO's advantage: each reward less its group's mean, over the group's standard deviation (groups are
    consecutive runs of ``group_size``). A group whose rewards are all equal gets zeros: nothing to learn."""
    values = torch.tensor(rewards, dtype=torch.float64).view(-1, group_size)
    centred = values - values.mean(dim=1, keepdim=True)
    scaled = centred / (values.std(dim=1, keepdim=True) + ADVANTAGE_EPS)
    return scaled.flatten().tolist()


def grpo_loss(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mean KL) for one on-policy update. ``logprobs`` [B, T] carry gradients; ``mask`` marks the
    completion tokens. Per token: -ratio * advantage + kl_coef * k3-KL(policy || reference), where the ratio
    exp(logp - logp.detach()) is 1 in value and gives the policy gradient; averaged over each sequence's
    tokens, then over sequences (the GRPO paper's normalisation)."""
    ratio = torch.exp(logprobs - logprobs.detach())
    log_ratio_ref = ref_logprobs - logprobs
    kl = torch.exp(log_ratio_ref) - log_ratio_ref - 1
    per_token = -ratio * advantages[:, None] + kl_coef * kl
    lengths = mask.sum(dim=1).clamp(min=1)
    loss = ((per_token * mask).sum(dim=1) / lengths).mean()
    mean_kl = ((kl.detach() * mask).sum(dim=1) / lengths).mean()
    return loss, mean_kl


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


class Learner:
    """Ray actor: one DDP rank."""

    def __init__(self, model: str, *, rank: int, world_size: int, lr: float, kl_coef: float, temperature: float,
                 seed: int):
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        self.rank, self.world_size = rank, world_size
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(1)  # the generator shares these cores
        folder = local_model(model, Path(tempfile.mkdtemp(prefix="park-posttrain-learner-")))
        self.policy = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(self.device)
        self.reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(self.device).eval()
        self.reference.requires_grad_(False)
        self.pad_id = self.policy.config.pad_token_id or 0
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.kl_coef, self.temperature = kl_coef, temperature
        self.ddp: torch.nn.Module | None = None

    # -- set-up --

    def address(self) -> tuple[str, int]:
        return ray.util.get_node_ip_address(), free_port()

    def join(self, master: tuple[str, int]) -> str:
        """Join the process group and wrap the policy in DDP; returns the backend."""
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://{master[0]}:{master[1]}", rank=self.rank,
                                world_size=self.world_size, timeout=PROCESS_GROUP_TIMEOUT)
        self.ddp = torch.nn.parallel.DistributedDataParallel(
            self.policy, device_ids=[self.device.index or 0] if self.device.type == "cuda" else None,
            broadcast_buffers=False)  # the only buffers are rotary tables, equal on every rank
        return backend

    def restore(self, checkpoint_uri: str) -> int:
        """Load policy weights and optimizer state from a checkpoint folder; the step it was taken at."""
        weights = load_safetensors(checkpoint.read_bytes(storage.join(checkpoint_uri, checkpoint.MODEL_FILE)))
        self.policy.load_state_dict(weights, strict=False)  # tied weights are stored once
        optimizer_state = torch.load(io.BytesIO(checkpoint.read_bytes(
            storage.join(checkpoint_uri, checkpoint.OPTIMIZER_FILE))), map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(optimizer_state)
        state = json.loads(storage.read_text(storage.join(checkpoint_uri, checkpoint.STATE_FILE)))
        return int(state["step"])

    # -- the step --

    def _batch(self, samples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input ids [B, L], attention mask [B, L], completion mask [B, L-1] over next-token positions)."""
        sequences = [s["prompt_ids"] + s["completion_ids"] for s in samples]
        length = max(len(s) for s in sequences)
        ids = torch.full((len(samples), length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(samples), length), dtype=torch.long)
        completion = torch.zeros((len(samples), length - 1))
        for row, (sample, sequence) in enumerate(zip(samples, sequences)):
            ids[row, :len(sequence)] = torch.tensor(sequence)
            attention[row, :len(sequence)] = 1
            start = len(sample["prompt_ids"]) - 1  # position predicting the first completion token
            completion[row, start:start + len(sample["completion_ids"])] = 1
        return ids.to(self.device), attention.to(self.device), completion.to(self.device)

    def _token_logprobs(self, model: torch.nn.Module, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float() / self.temperature
        return torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)

    def learn(self, samples: list[dict[str, Any]], advantages: list[float], fault: dict | None = None
              ) -> dict[str, float]:
        """One optimizer step on this rank's share; returns loss, KL and the on-policy deviation."""
        if fault is not None:
            self._maybe_die(fault)
        ids, attention, mask = self._batch(samples)
        self.ddp.train()
        logprobs = self._token_logprobs(self.ddp, ids, attention)
        with torch.no_grad():
            ref_logprobs = self._token_logprobs(self.reference, ids, attention)
        generator_logprobs = torch.zeros_like(mask)
        for row, sample in enumerate(samples):
            start = len(sample["prompt_ids"]) - 1
            generator_logprobs[row, start:start + len(sample["logprobs"])] = torch.tensor(sample["logprobs"])
        deviation = ((logprobs.detach() - generator_logprobs).abs() * mask).max().item()
        loss, kl = grpo_loss(logprobs, ref_logprobs, torch.tensor(advantages, device=self.device), mask,
                             self.kl_coef)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "kl": kl.item(), "logprob_max_abs_diff": deviation}

    def _maybe_die(self, fault: dict) -> None:
        """Test hook: SIGKILL this process (a reclaimed node), once per run: the marker in the run's storage
        survives the process."""
        if self.rank != self.world_size - 1 or storage.exists(fault["marker_uri"]):
            return
        storage.write_text(fault["marker_uri"], json.dumps({"step": fault["step"], "rank": self.rank,
                                                            "killed_at": time.time()}))
        print(f"[fault injection] killing learner rank {self.rank} in step {fault['step']}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    # -- weights out --

    def weights(self) -> bytes:
        """The policy's weights as safetensors bytes (Hugging Face names, what vLLM loads)."""
        state, seen = {}, set()
        for name, tensor in self.policy.state_dict().items():
            if tensor.data_ptr() in seen:
                continue  # a tied weight (lm_head = embeddings): safetensors stores it once, vLLM ties it back
            seen.add(tensor.data_ptr())
            state[name] = tensor.detach().contiguous().cpu()
        return save_safetensors(state)

    def save(self, run_uri: str, step: int, state: dict[str, Any], keep: int, model_bytes: bytes) -> str:
        """Rank 0: write the checkpoint of ``step`` (``model_bytes`` from :meth:`weights`); its URI."""
        buffer = io.BytesIO()
        torch.save(self.optimizer.state_dict(), buffer)
        return checkpoint.save_checkpoint(run_uri, step, model_bytes, buffer.getvalue(), state, keep)

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
