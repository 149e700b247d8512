"""What every Ray Train worker runs: data-parallel training of GlyphNet with a checkpoint per epoch.

The checkpoint carries the model, the optimizer and the run's history (loss and accuracy per epoch,
resumes), so a restarted worker group — or a rerun of the whole job under the same run name — picks up
after the last finished epoch and the history stays whole.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from park.workloads import storage
from park.workloads.train.data import train_and_test_sets
from park.workloads.train.model import GlyphNet
from torch.utils.data import DataLoader

STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"
CHECKPOINT_PREFIX = "epoch-"


def checkpoint_dir_name(epoch: int) -> str:
    return f"{CHECKPOINT_PREFIX}{epoch:04d}"


def _across_workers(values: list[float], device: torch.device, op: str = "sum") -> list[float]:
    """Element-wise sum or max over all workers (one all-reduce; a no-op with a single worker)."""
    tensor = torch.tensor(values, dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor.tolist()


def _maybe_inject_crash(config: dict[str, Any], epoch: int, batch_index: int, batches: int, rank: int,
                        world_size: int) -> None:
    """Test hook: SIGKILL the last worker halfway through epoch ``fail_at_epoch``, once per run.

    "Once" is remembered by a marker file in the run's storage folder (worker processes do not survive
    the crash, the storage does); the marker holds the crash time for the recovery benchmark."""
    fail_at = config.get("fail_at_epoch")
    if fail_at is None or epoch != fail_at or batch_index != batches // 2 or rank != world_size - 1:
        return
    marker = config["fault_marker_uri"]
    if storage.exists(marker):
        return
    storage.write_text(marker, json.dumps({"epoch": epoch, "rank": rank, "crashed_at": time.time()}))
    print(f"[fault injection] killing worker rank {rank} in epoch {epoch}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _load_checkpoint_folder(folder: str) -> tuple[dict[str, Any], dict[str, Any]]:
    state = torch.load(Path(folder, STATE_FILE), map_location="cpu", weights_only=True)
    history = json.loads(Path(folder, HISTORY_FILE).read_text())
    return state, history


def _latest_checkpoint(registered, run_uri: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(state, history) of the newest usable checkpoint: Ray's registered one, or a newer complete one in the
    run folder.

    Why look in storage too: Ray Train 2.60 registers a reported checkpoint when its controller next polls
    the workers (every ~2 s); a worker dying in between loses that registration although the upload is
    complete. Scanning the folder keeps "lose at most one epoch" true. A half-written folder fails to
    load and is skipped."""
    import ray.train

    best = None
    if registered is not None:
        with registered.as_directory() as folder:
            best = _load_checkpoint_folder(folder)
    filesystem, run_path = storage.resolve(run_uri)
    for name in reversed(storage.list_names(run_uri)):
        if not name.startswith(CHECKPOINT_PREFIX):
            continue
        epoch = int(name.removeprefix(CHECKPOINT_PREFIX))
        if best is not None and best[0]["epoch"] >= epoch:
            break
        try:
            candidate = ray.train.Checkpoint(f"{run_path}/{name}", filesystem=filesystem)
            with candidate.as_directory() as folder:
                return _load_checkpoint_folder(folder)
        except Exception as err:  # noqa: BLE001 - an incomplete upload; try the one before
            print(f"skipping checkpoint {name}: {err}", flush=True)
    return best


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Train for ``config["epochs"]`` epochs in total (counting epochs done before a resume)."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(config["seed"])

    train_set, test_set = train_and_test_sets(config["train_size"], config["test_size"], config["seed"])
    model = GlyphNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    history: dict[str, Any] = {"epochs": [], "losses": [], "accuracies": [], "train_seconds": [], "samples": [],
                               "resumes": [], "device": device.type, "world_size": world_size}
    first_epoch = 1

    restored = _latest_checkpoint(ray.train.get_checkpoint(), config["run_uri"])
    resuming = restored is not None
    if restored is not None:
        state, history = restored
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first_epoch = state["epoch"] + 1
        history["resumes"].append({"from_epoch": state["epoch"], "at": time.time()})
        history["device"], history["world_size"] = device.type, world_size
        if rank == 0:
            print(f"resumed from the checkpoint of epoch {state['epoch']}", flush=True)

    model = ray.train.torch.prepare_model(model)
    train_loader = ray.train.torch.prepare_data_loader(
        DataLoader(train_set, batch_size=config["batch_size"], shuffle=True))
    test_loader = ray.train.torch.prepare_data_loader(DataLoader(test_set, batch_size=256))
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")

    for epoch in range(first_epoch, config["epochs"] + 1):
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every worker
        model.train()
        loss_sum, seen = 0.0, 0
        epoch_started = time.perf_counter()
        batches = len(train_loader)
        for batch_index, (images, labels) in enumerate(train_loader):
            _maybe_inject_crash(config, epoch, batch_index, batches, rank, world_size)
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            (loss / len(labels)).backward()
            optimizer.step()
            loss_sum += loss.item()
            seen += len(labels)
            if resuming:
                history["resumes"][-1]["training_again_at"] = time.time()
                resuming = False

        train_seconds = time.perf_counter() - epoch_started
        model.eval()
        correct, total = 0, 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += (model(images).argmax(dim=1) == labels).sum().item()
                total += len(labels)
        (slowest,) = _across_workers([train_seconds], device, op="max")
        loss_sum, seen, correct, total = _across_workers([loss_sum, seen, correct, total], device)
        epoch_loss, accuracy = loss_sum / seen, correct / total
        history["epochs"].append(epoch)
        history["losses"].append(epoch_loss)
        history["accuracies"].append(accuracy)
        history["train_seconds"].append(slowest)  # the epoch's training steps, slowest worker
        history["samples"].append(int(seen))
        history["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # rank 0's process
        metrics = {"epoch": epoch, "loss": epoch_loss, "accuracy": accuracy}

        with tempfile.TemporaryDirectory() as folder:
            new_checkpoint = None
            if rank == 0:
                unwrapped = model.module if hasattr(model, "module") else model
                torch.save({"model": unwrapped.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
                           Path(folder, STATE_FILE))
                Path(folder, HISTORY_FILE).write_text(json.dumps(history, indent=1))
                new_checkpoint = ray.train.Checkpoint.from_directory(folder)
                print(f"epoch {epoch}: loss {epoch_loss:.4f} accuracy {accuracy:.4f}", flush=True)
            ray.train.report(metrics, checkpoint=new_checkpoint, checkpoint_dir_name=checkpoint_dir_name(epoch))
    return history
