"""Checkpoints and the reward log in the run folder, on any storage URI (through workloads/storage.py).

Layout of ``<storage_uri>/<run_name>/``::

    checkpoints/step-000012/model.safetensors   policy weights (Hugging Face names: loadable by vLLM)
    checkpoints/step-000012/optimizer.pt        optimizer state
    checkpoints/step-000012/state.json          step, reward log so far; written LAST = the commit mark
    rewards.csv                                 one row per finished step, rewritten after each step
    summary.json                                written at the end, also when the run fails

A checkpoint without ``state.json`` (a learner killed mid-upload) is ignored, so a resume always loads a
whole one. The CSV is rewritten from the reward log that rides in the checkpoint, so after a resume it holds
each step once.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from park.workloads import storage

CHECKPOINT_FOLDER = "checkpoints"
CHECKPOINT_PREFIX = "step-"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
REWARDS_FILE = "rewards.csv"
SUMMARY_FILE = "summary.json"
FAULT_MARKER_FILE = "_fault_injected.json"
REWARD_COLUMNS = ("step", "reward_mean", "reward_std", "generate_s", "score_s", "learn_s", "sync_s",
                  "logprob_max_abs_diff", "tokens_generated")


def write_bytes(uri: str, data: bytes) -> None:
    filesystem, path = storage.resolve(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        filesystem.create_dir(parent, recursive=True)
    with filesystem.open_output_stream(path) as out:
        out.write(data)


def read_bytes(uri: str) -> bytes:
    filesystem, path = storage.resolve(uri)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def checkpoint_uri(run_uri: str, step: int) -> str:
    return storage.join(run_uri, CHECKPOINT_FOLDER, f"{CHECKPOINT_PREFIX}{step:06d}")


@dataclass(frozen=True)
class Checkpoint:
    uri: str
    step: int
    state: dict[str, Any]
    """``step``, ``history`` (the reward log rows up to this step), ``resumes``."""


def save_checkpoint(run_uri: str, step: int, model_bytes: bytes, optimizer_bytes: bytes,
                    state: dict[str, Any], keep: int) -> str:
    """Write one checkpoint (state.json last), then delete all but the newest ``keep``."""
    uri = checkpoint_uri(run_uri, step)
    write_bytes(storage.join(uri, MODEL_FILE), model_bytes)
    write_bytes(storage.join(uri, OPTIMIZER_FILE), optimizer_bytes)
    storage.write_text(storage.join(uri, STATE_FILE), json.dumps({**state, "step": step}, indent=1))
    folder = storage.join(run_uri, CHECKPOINT_FOLDER)
    steps = sorted(int(n.removeprefix(CHECKPOINT_PREFIX)) for n in storage.list_names(folder)
                   if n.startswith(CHECKPOINT_PREFIX))
    filesystem, _ = storage.resolve(run_uri)
    for old in steps[:-keep]:
        filesystem.delete_dir(storage.resolve(checkpoint_uri(run_uri, old))[1])
    return uri


def latest_checkpoint(run_uri: str) -> Checkpoint | None:
    """The newest complete checkpoint of the run, or None."""
    folder = storage.join(run_uri, CHECKPOINT_FOLDER)
    for name in reversed(storage.list_names(folder)):
        if not name.startswith(CHECKPOINT_PREFIX):
            continue
        uri = storage.join(folder, name)
        state_uri = storage.join(uri, STATE_FILE)
        if not storage.exists(state_uri):
            continue  # an upload that did not finish
        state = json.loads(storage.read_text(state_uri))
        return Checkpoint(uri=uri, step=int(state["step"]), state=state)
    return None


def write_rewards_csv(run_uri: str, rows: list[dict[str, Any]]) -> str:
    """Rewrite ``rewards.csv`` with ``rows`` (one per step, :data:`REWARD_COLUMNS`); return its URI."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REWARD_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    uri = storage.join(run_uri, REWARDS_FILE)
    storage.write_text(uri, out.getvalue())
    return uri


def read_rewards_csv(run_uri: str) -> list[dict[str, float]]:
    """The reward log as numbers (step as int)."""
    rows = csv.DictReader(io.StringIO(storage.read_text(storage.join(run_uri, REWARDS_FILE))))
    return [{k: (int(v) if k in ("step", "tokens_generated") else float(v)) for k, v in row.items()}
            for row in rows]
