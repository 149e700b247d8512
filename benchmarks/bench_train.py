"""Ray Train (2 data-parallel workers) against a plain single-process PyTorch loop, same data and model.

Run: ``.venv/bin/python benchmarks/bench_train.py [--epochs 3] [--json out.json]``. Starts its own local
Ray (temp folder under a fresh mkdtemp, dashboard off) and shuts it down. Figures:

- samples/s in training steps (slowest worker per epoch, as the loop measures it) vs the plain loop with the
  same global batch (per-worker batch x workers) on one thread and on all cores, the faster of the two
  counting, and the ratio (aim >= 0.8 on 2 cores);
- end-to-end seconds including Ray start-up, worker-group start and checkpointing;
- seconds from an injected worker kill (SIGKILL mid-epoch) to the first training step after the resume;
- peak resident memory: the plain loop's process; for Ray, the sum over the driver and every process it
  started (raylet, GCS, train workers...), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from typing import Self

import psutil


class PeakMemory:
    """Peak of the summed RSS of this process and all its descendants, sampled in a background thread."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s, self.peak_bytes = interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


def plain_loop(epochs: int, batch_size: int, lr: float, train_size: int, seed: int, threads: int) -> dict:
    """The baseline: one process, ``threads`` torch intra-op threads, the same model, data and global batch."""
    import torch
    from park.workloads.train.data import train_and_test_sets
    from park.workloads.train.model import GlyphNet
    from torch.utils.data import DataLoader

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    train_set, _ = train_and_test_sets(train_size, 256, seed)
    model = GlyphNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
    seconds, samples = 0.0, 0
    for _ in range(epochs):
        started = time.perf_counter()
        for images, labels in loader:
            optimizer.zero_grad()
            loss_fn(model(images), labels).backward()
            optimizer.step()
            samples += len(labels)
        seconds += time.perf_counter() - started
    return {"samples_per_s": samples / seconds, "train_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (data, Ray logs)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray
    from park.workloads.train.run import TrainConfig, run_training

    config = TrainConfig(storage_uri="", run_name="bench", epochs=args.epochs, num_workers=args.workers)
    # The strongest baseline: one thread and all cores both tried, the faster counts. (On a busy machine,
    # intra-op threads that spin-wait for each other can be many times slower than one thread.)
    baselines = {}
    with PeakMemory() as baseline_memory:
        for threads in sorted({1, os.cpu_count() or 1}):
            baselines[threads] = plain_loop(args.epochs, config.batch_size * args.workers, config.lr,
                                            config.train_size, config.seed, threads)
    best_threads = max(baselines, key=lambda t: baselines[t]["samples_per_s"])
    baseline = baselines[best_threads]

    scratch = tempfile.mkdtemp(prefix="park-bench-train-")
    started = time.perf_counter()
    with PeakMemory() as ray_memory:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=f"{scratch}/ray", log_to_driver=False)
        try:
            clean = run_training(TrainConfig(storage_uri=f"{scratch}/storage", run_name="clean", epochs=args.epochs,
                                             num_workers=args.workers))
            end_to_end = time.perf_counter() - started
            crashed = run_training(TrainConfig(storage_uri=f"{scratch}/storage", run_name="crash",
                                               epochs=args.epochs, num_workers=args.workers, fail_at_epoch=2))
        finally:
            ray.shutdown()
            if not args.keep:
                shutil.rmtree(scratch, ignore_errors=True)
    ray_rate = sum(clean["samples"]) / sum(clean["train_seconds"])
    recovery = crashed["resumes"][0]["training_again_at"] - crashed["injected_fault"]["crashed_at"]
    figures = {
        "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1), "epochs": args.epochs, "workers": args.workers,
        **{f"baseline_{t}_threads_samples_per_s": round(b["samples_per_s"], 1) for t, b in baselines.items()},
        "baseline_samples_per_s": round(baseline["samples_per_s"], 1),
        "ray_train_samples_per_s": round(ray_rate, 1),
        "ratio": round(ray_rate / baseline["samples_per_s"], 3),
        "baseline_train_seconds": round(baseline["train_seconds"], 2),
        "ray_train_end_to_end_seconds": round(end_to_end, 2),
        "failure_to_training_again_seconds": round(recovery, 2),
        "baseline_peak_rss_mib": round(baseline_memory.peak_mib),
        "ray_peak_rss_mib_all_processes": round(ray_memory.peak_mib),
        "ray_train_worker_peak_rss_mib": round(clean["worker_peak_rss_mib"] or 0),
        "final_accuracy": round(clean["final_accuracy"], 4),
    }
    report("Ray Train vs plain PyTorch (glyph digits, GlyphNet)", figures, args.json)


def report(title: str, figures: dict, json_path: str | None) -> None:
    """Print the figures as an aligned table, and write them as JSON when asked (shared by the benchmarks)."""
    width = max(len(k) for k in figures)
    print(f"\n{title}")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
    if json_path:
        with open(json_path, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
