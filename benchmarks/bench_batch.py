"""The Ray Data batch pipeline against a single-process PyTorch loop doing the same work, in interleaved rounds.

Run: ``.venv/bin/python benchmarks/bench_batch.py [--rows 100000] [--rounds 2] [--json out.json]
[--stats stats.txt]``. Starts its own local Ray (temp folder under a fresh mkdtemp, dashboard off) once and
shuts it down at the end. Both sides start from the same input Parquet (generated first, not timed) and do the
same work: read, decode and normalise images, flag texts, run the vision CNN, write Parquet.

Each round runs the pipeline (``run_pipeline``, a fresh actor pool each time), then the plain loop in a fresh
process with one torch thread and with one per core; the order of the three rotates from round to round, so
drift in this shared machine's background load falls on all alike. Each ratio is taken within one round
(pipeline against the faster loop of that round); the figures are the medians over rounds, with min-max.

- **start-up**: pipeline: from calling ``run_pipeline`` to the first output file's modification time (plan,
  actor start, first read and batch); loop: from launching its process to its first labelled batch (imports,
  reading the whole table, loading the model);
- **steady state**: rows that came out after that first output, divided by the time from it to the last
  output (pipeline: the last Parquet file's modification time; loop: the end of its single Parquet write).
  Start-up is thereby excluded from both; the tail (the last blocks draining) stays in;
- **end to end**: rows over the whole span (pipeline: read to written, as the job reports it);
- **peak memory**: the loop's process (``ru_maxrss``); for Ray, the summed RSS of the driver and every process
  it started (raylet, GCS, workers, actors), sampled every 0.2 s while the pipeline runs. The loop holds the
  whole table; the pipeline streams it;
- **CPU ms per row**: user + system CPU time of the same processes over the whole run, and over the steady
  span only, per row: the work each side spends, which unlike rows/s does not depend on how much of the
  shared cores the other processes leave.

``--stats`` writes Ray Data's per-operator stats of the last round (``Dataset.stats()``: wall and CPU time,
rows and blocks per operator), the profile this benchmark reads to see where the pipeline's time goes.
Aim (issue 10): steady-state ratio >= 0.8 at 100,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from bench_train import PeakMemory, report  # same folder: the memory sampler and table both benchmarks use


def plain_loop(input_dir: str, output_dir: str, model_uri: str, batch_size: int, threads: int) -> dict:
    """The baseline, in its own process: the whole table in memory, one batch after another."""
    launched = float(os.environ.get("PARK_BENCH_LAUNCHED_AT", time.time()))
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq
    import torch
    from park.workloads.batch.pipeline import VisionClassifier, preprocess

    torch.set_num_threads(threads)
    table = pads.dataset(input_dir, format="parquet").to_table()
    classifier = VisionClassifier(model_uri)  # uses the threads set above
    outputs, first_batch_at, first_batch_rows = [], None, 0
    for offset in range(0, table.num_rows, batch_size):
        chunk = table.slice(offset, batch_size)
        batch = {name: np.array(chunk.column(name).to_pylist(), dtype=object) for name in ("id", "image", "text")}
        labelled = classifier(preprocess(batch))
        outputs.append(pa.table({k: list(v) for k, v in labelled.items()}))
        if first_batch_at is None:
            first_batch_at, first_batch_rows = time.time(), len(labelled["id"])
            cpu_at_first_batch = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    os.makedirs(output_dir, exist_ok=True)
    pq.write_table(pa.concat_tables(outputs), f"{output_dir}/part-00000.parquet")
    finished = time.time()
    rows = table.num_rows
    return {
        "rows": rows,
        "startup_s": first_batch_at - launched,
        "steady_rows_per_s": (rows - first_batch_rows) / (finished - first_batch_at),
        "end_to_end_rows_per_s": rows / (finished - launched),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_ms_per_row": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) * 1000 / rows,
        "steady_cpu_ms_per_row": (sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu_at_first_batch) * 1000
                                 / (rows - first_batch_rows),
    }


def run_plain_loop(scratch: str, input_dir: str, model_uri: str, batch_size: int, threads: int) -> dict:
    """Launch the baseline in a fresh process (its memory then is its own) and read its figures."""
    out = f"{scratch}/plain-{threads}.json"
    env = {**os.environ, "PARK_BENCH_LAUNCHED_AT": repr(time.time())}
    subprocess.run([sys.executable, __file__, "--plain-loop", input_dir, f"{scratch}/plain-{threads}",
                    model_uri, str(batch_size), str(threads), out], check=True, env=env)
    return json.loads(Path(out).read_text())


class TreeUsage(PeakMemory):
    """Peak summed RSS, plus CPU seconds, of this process and all its descendants: each process's CPU time is
    remembered as last sampled, so actors and workers that exit before the end still count."""

    def __init__(self, interval_s: float = 0.2):
        super().__init__(interval_s)
        self._cpu_by_pid: dict[int, float] = {}
        self.cpu_series: list[tuple[float, float]] = []
        """(time, CPU seconds so far) at each sample."""

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                    self._cpu_by_pid[proc.pid] = times.user + times.system
            except psutil.Error:
                continue
        self.cpu_series.append((time.time(), self.cpu_s))
        return total

    def cpu_s_between(self, start: float, end: float) -> float:
        """CPU seconds spent between two times (the samples nearest to them)."""
        def at(when: float) -> float:
            return min(self.cpu_series, key=lambda sample: abs(sample[0] - when))[1]
        return at(end) - at(start)

    def __enter__(self):
        self._cpu_at_start = {p.pid: sum(p.cpu_times()[:2]) for p in [psutil.Process(),
                                                                        *psutil.Process().children(recursive=True)]}
        return super().__enter__()

    @property
    def cpu_s(self) -> float:
        return sum(cpu - self._cpu_at_start.get(pid, 0.0) for pid, cpu in self._cpu_by_pid.items())


def output_times(data_dir: str) -> list[tuple[float, int]]:
    """(modification time, rows) of each Parquet file the pipeline wrote, oldest first."""
    import pyarrow.parquet as pq

    files = sorted(Path(data_dir).glob("*.parquet"), key=lambda p: p.stat().st_mtime)
    return [(p.stat().st_mtime, pq.ParquetFile(p).metadata.num_rows) for p in files]


def run_ray_pipeline(config, ray_memory_sampler) -> tuple[dict, str]:
    from park.workloads.batch.pipeline import run_pipeline

    with ray_memory_sampler() as memory:
        started = time.time()
        summary = run_pipeline(config)
    assert summary["exact"], summary
    outputs = output_times(config.data_uri)
    first_at, first_rows = outputs[0]
    last_at = outputs[-1][0]
    stats_path = Path(config.output_uri) / "ray_data_stats.txt"
    return {
        "rows": summary["rows_out"],
        "startup_s": first_at - started,
        "steady_rows_per_s": (summary["rows_out"] - first_rows) / max(last_at - first_at, 1e-3),
        "end_to_end_rows_per_s": summary["rows_per_second"],
        "pipeline_s": summary["pipeline_seconds"],
        "output_files": len(outputs),
        "peak_rss_mib": memory.peak_mib,
        "cpu_ms_per_row": memory.cpu_s * 1000 / summary["rows_out"],
        "steady_cpu_ms_per_row": memory.cpu_s_between(first_at, last_at) * 1000 / (summary["rows_out"] - first_rows),
    }, stats_path.read_text() if stats_path.exists() else ""


def spread(values: list[float]) -> str:
    return f"{min(values):,.1f}-{max(values):,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--stats", help="write Ray Data's per-operator stats of the last round here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (data, Ray logs)")
    parser.add_argument("--input", help="reuse this input folder (made by an earlier run with the same --rows)")
    parser.add_argument("--plain-loop", nargs=6, metavar=("INPUT", "OUTPUT", "MODEL", "BATCH", "THREADS", "JSON"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop:
        input_dir, output_dir, model_uri, batch_size, threads, out = args.plain_loop
        figures = plain_loop(input_dir, output_dir, model_uri, int(batch_size), int(threads))
        Path(out).write_text(json.dumps(figures))
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray
    from park.workloads.batch.model import build_vision_model
    from park.workloads.batch.pipeline import BatchConfig, ensure_input

    load_before = Path("/proc/loadavg").read_text().strip()
    scratch = tempfile.mkdtemp(prefix="park-bench-batch-")
    config = BatchConfig(input_uri=args.input or f"{scratch}/input", output_uri=f"{scratch}/ray-output",
                         rows=args.rows)
    threads_tried = sorted({1, os.cpu_count() or 1})
    started = time.time()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=f"{scratch}/ray", log_to_driver=False)
    ray_start_s = time.time() - started
    rounds: list[dict] = []
    stats = ""
    try:
        ensure_input(config)  # not timed: both sides read the same files
        build_vision_model(config.model_uri)
        sides = ["ray", *(f"plain-{t}" for t in threads_tried)]
        for number in range(args.rounds):
            order = sides[number % len(sides):] + sides[: number % len(sides)]
            results: dict[str, dict] = {}
            for side in order:
                if side == "ray":
                    results[side], stats = run_ray_pipeline(config, TreeUsage)
                else:
                    threads = int(side.split("-")[1])
                    results[side] = run_plain_loop(scratch, config.input_uri, config.model_uri, config.batch_size,
                                                   threads)
                print(f"round {number + 1} {side:>8}: " + ", ".join(
                    f"{k} {v:,.1f}" for k, v in results[side].items()), flush=True)
            best = max((results[f"plain-{t}"] for t in threads_tried), key=lambda r: r["steady_rows_per_s"])
            results["best_plain"] = best
            results["ratio_steady"] = results["ray"]["steady_rows_per_s"] / best["steady_rows_per_s"]
            results["ratio_end_to_end"] = (results["ray"]["end_to_end_rows_per_s"]
                                           / max(r["end_to_end_rows_per_s"] for k, r in results.items()
                                                 if k.startswith("plain-")))
            rounds.append(results)
    finally:
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.stats:
        Path(args.stats).write_text(stats)

    def median(side: str, key: str) -> float:
        return round(statistics.median(r[side][key] for r in rounds), 1)

    figures = {
        "cpus": os.cpu_count(), "rows": args.rows, "rounds": args.rounds,
        "loadavg_before": load_before, "loadavg_after": Path("/proc/loadavg").read_text().strip(),
        "ray_init_s": round(ray_start_s, 1),
    }
    for side in ["ray", *(f"plain-{t}" for t in threads_tried)]:
        figures |= {
            f"{side}_startup_s": median(side, "startup_s"),
            f"{side}_steady_rows_per_s": median(side, "steady_rows_per_s"),
            f"{side}_steady_rows_per_s_range": spread([r[side]["steady_rows_per_s"] for r in rounds]),
            f"{side}_end_to_end_rows_per_s": median(side, "end_to_end_rows_per_s"),
            f"{side}_peak_rss_mib": median(side, "peak_rss_mib"),
            f"{side}_cpu_ms_per_row": round(statistics.median(r[side]["cpu_ms_per_row"] for r in rounds), 3),
            f"{side}_steady_cpu_ms_per_row": round(statistics.median(r[side]["steady_cpu_ms_per_row"]
                                                                      for r in rounds), 3),
        }
    figures |= {
        "ray_output_files": rounds[-1]["ray"]["output_files"],
        "ratio_steady_median": round(statistics.median(r["ratio_steady"] for r in rounds), 3),
        "ratio_steady_per_round": [round(r["ratio_steady"], 3) for r in rounds],
        "ratio_end_to_end_median": round(statistics.median(r["ratio_end_to_end"] for r in rounds), 3),
        "ratio_end_to_end_per_round": [round(r["ratio_end_to_end"], 3) for r in rounds],
    }
    report("Ray Data pipeline vs single-process PyTorch (content-moderation batch)", figures, args.json)


if __name__ == "__main__":
    main()
