"""The training driver: builds the TorchTrainer, runs it, checks the accuracy bar, writes the summary.

Runs wherever the Ray driver runs: a laptop (starts a local Ray), a Ray Job on a KubeRay cluster (joins
it), or the conformance suite's embedded Ray.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from park.workloads import storage

FAIL_AT_EPOCH_ENV = "PARK_TRAIN_FAIL_AT_EPOCH"
"""Test hook: kill one worker halfway through this epoch, once per run (see loop._maybe_inject_crash)."""
SUMMARY_FILE = "summary.json"
FAULT_MARKER_FILE = "_fault_injected.json"


@dataclass(frozen=True)
class TrainConfig:
    storage_uri: str
    """Where the run folder goes: a local path, file://, s3:// or gs://."""
    run_name: str
    """Run folder under storage_uri; rerunning under the same name resumes from its latest checkpoint."""
    epochs: int = 3
    num_workers: int = 2
    use_gpu: Literal["auto", "true", "false"] = "auto"
    """auto: GPUs when the Ray cluster has one per worker, else CPU (gloo)."""
    cpus_per_worker: float = 1
    min_accuracy: float | None = None
    summary_path: str | None = None
    max_failures: int = 2
    """Worker-group restarts Ray Train may do (each resumes from the latest checkpoint)."""
    fail_at_epoch: int | None = None
    batch_size: int = 64
    lr: float = 3e-3
    train_size: int = 4096
    test_size: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"--epochs must be 1 or more, got {self.epochs}")
        if self.num_workers < 1:
            problems.append(f"--num-workers must be 1 or more, got {self.num_workers}")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            problems.append(f"--min-accuracy must be between 0 and 1, got {self.min_accuracy}")
        if not self.run_name or "/" in self.run_name:
            problems.append(f"--run-name must be a non-empty folder name, got {self.run_name!r}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def run_uri(self) -> str:
        return storage.join(self.storage_uri, self.run_name)


class AccuracyBelowBar(RuntimeError):
    """Training finished but the final accuracy is under --min-accuracy; the summary says by how much."""


def decide_gpu(use_gpu: str, num_workers: int) -> bool:
    """``auto`` uses GPUs only when the running Ray cluster has one per worker (a detected condition:
    the driver may sit on a CPU-only head while the workers have GPUs, so the driver's own CUDA is no guide)."""
    if use_gpu in ("true", "false"):
        return use_gpu == "true"
    import ray

    return ray.cluster_resources().get("GPU", 0) >= num_workers


def _ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=True)


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Train, write ``summary.json`` beside the checkpoints (and to ``summary_path``), return it.

    Raises :class:`AccuracyBelowBar` after writing the summary when the bar is missed, and
    ``ray.train.TrainingFailedError`` when training fails beyond ``max_failures`` (checkpoints stay)."""
    _ensure_ray()
    from park.workloads.train.loop import (  # start-up time: torch (1.6 s), which argument errors skip
        train_loop_per_worker,
    )
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = decide_gpu(config.use_gpu, config.num_workers)
    filesystem, path = storage.resolve(config.storage_uri)
    loop_config = {
        **{k: getattr(config, k) for k in ("epochs", "batch_size", "lr", "train_size", "test_size", "seed",
                                            "fail_at_epoch")},
        "run_uri": config.run_uri,
        "fault_marker_uri": storage.join(config.run_uri, FAULT_MARKER_FILE),
    }
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": config.cpus_per_worker}),
        run_config=RunConfig(
            name=config.run_name, storage_path=path, storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=None),  # one per epoch, all kept
        ),
    )
    started = time.time()
    error: Exception | None = None
    try:
        result = trainer.fit()
        history = result.return_value
    except Exception as err:  # noqa: BLE001 - recorded in the summary, then re-raised
        error, history = err, None
    summary = _summary(config, history, use_gpu, time.time() - started, error)
    _write_summary(config, summary)
    if error is not None:
        raise error
    if not summary["passed"]:
        raise AccuracyBelowBar(summary["message"])
    return summary


def _summary(config: TrainConfig, history: dict[str, Any] | None, use_gpu: bool, seconds: float,
             error: Exception | None) -> dict[str, Any]:
    from park.workloads.train.loop import CHECKPOINT_PREFIX  # start-up time: torch, as in run_training

    history = history or {"epochs": [], "losses": [], "accuracies": [], "resumes": []}
    checkpoints = [storage.join(config.run_uri, name) for name in storage.list_names(config.run_uri)
                   if name.startswith(CHECKPOINT_PREFIX)]
    resumes = history.get("resumes", [])
    final_accuracy = history["accuracies"][-1] if history["accuracies"] else None
    fault = None
    marker = storage.join(config.run_uri, FAULT_MARKER_FILE)
    if storage.exists(marker):
        fault = json.loads(storage.read_text(marker))
    if error is not None:
        passed, message = False, f"training failed: {error}"
    elif config.min_accuracy is not None and (final_accuracy or 0.0) < config.min_accuracy:
        passed = False
        message = (f"final accuracy {final_accuracy:.4f} is below --min-accuracy {config.min_accuracy}; "
                   f"checkpoints kept under {config.run_uri}")
    else:
        passed, message = True, "ok"
    return {
        "run_name": config.run_name,
        "run_uri": config.run_uri,
        "epochs": history["epochs"],
        "losses": history["losses"],
        "accuracies": history["accuracies"],
        "final_accuracy": final_accuracy,
        "train_seconds": history.get("train_seconds", []),
        "samples": history.get("samples", []),
        "worker_peak_rss_mib": history.get("peak_rss_mib"),
        "min_accuracy": config.min_accuracy,
        "checkpoints": checkpoints,
        "device": history.get("device", "cuda" if use_gpu else "cpu"),
        "backend": "nccl" if use_gpu else "gloo",
        "num_workers": config.num_workers,
        "resumed_from": resumes[-1]["from_epoch"] if resumes else None,
        "resumes": resumes,
        "injected_fault": fault,
        "wall_seconds": round(seconds, 2),
        "passed": passed,
        "message": message,
        "config": asdict(config),
    }


def _write_summary(config: TrainConfig, summary: dict[str, Any]) -> None:
    text = json.dumps(summary, indent=2)
    storage.write_text(storage.join(config.run_uri, SUMMARY_FILE), text)
    if config.summary_path:
        storage.write_text(config.summary_path, text)


def fail_at_epoch_from_env() -> int | None:
    value = os.environ.get(FAIL_AT_EPOCH_ENV)
    return int(value) if value else None
