"""The Ray Data batch pipeline against a single-process PyTorch loop doing the same work.

Run: ``.venv/bin/python benchmarks/bench_batch.py [--rows 10000] [--json out.json]``. Starts its own local
Ray (temp folder under a fresh mkdtemp, dashboard off) and shuts it down. Both sides start from the same
input Parquet (generated first, not timed) and do the same work: read, decode and normalise images, flag
texts, run the vision CNN, write Parquet. Figures:

- rows/s of each (Ray: read to written, as the job reports it; baseline: the same span) and the ratio
  (aim >= 1.0: the pipeline overlaps decoding, inference and writing);
- peak resident memory: the baseline's process; for Ray, the driver plus every process it started.

The baseline tries one torch thread and all cores and counts the faster (on a busy machine spinning
intra-op threads can be far slower than one).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from bench_train import PeakMemory, report  # same folder: the memory sampler and table both benchmarks use


def plain_loop(input_dir: str, output_dir: str, model_uri: str, batch_size: int, threads: int) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq
    import torch
    from park.workloads.batch.pipeline import VisionClassifier, preprocess

    torch.set_num_threads(threads)
    started = time.perf_counter()
    table = pads.dataset(input_dir, format="parquet").to_table()
    classifier = VisionClassifier(model_uri)
    outputs = []
    for offset in range(0, table.num_rows, batch_size):
        chunk = table.slice(offset, batch_size)
        batch = {name: np.array(chunk.column(name).to_pylist(), dtype=object) for name in ("id", "image", "text")}
        labelled = classifier(preprocess(batch))
        outputs.append(pa.table({k: list(v) for k, v in labelled.items()}))
    os.makedirs(output_dir, exist_ok=True)
    pq.write_table(pa.concat_tables(outputs), f"{output_dir}/part-00000.parquet")
    seconds = time.perf_counter() - started
    return {"rows_per_s": table.num_rows / seconds, "seconds": seconds, "rows": table.num_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (data, Ray logs)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray
    from park.workloads.batch.model import build_vision_model
    from park.workloads.batch.pipeline import BatchConfig, ensure_input, run_pipeline

    scratch = tempfile.mkdtemp(prefix="park-bench-batch-")
    config = BatchConfig(input_uri=f"{scratch}/input", output_uri=f"{scratch}/ray-output", rows=args.rows)
    with PeakMemory() as ray_memory:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=f"{scratch}/ray", log_to_driver=False)
        try:
            ensure_input(config)  # not timed: both sides read the same files
            build_vision_model(config.model_uri)
            summary = run_pipeline(config)
        finally:
            ray.shutdown()
    assert summary["exact"], summary

    baselines = {}
    with PeakMemory() as baseline_memory:
        for threads in sorted({1, os.cpu_count() or 1}):
            baselines[threads] = plain_loop(f"{scratch}/input", f"{scratch}/plain-{threads}", config.model_uri,
                                            config.batch_size, threads)
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    best = max(baselines.values(), key=lambda b: b["rows_per_s"])
    figures = {
        "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1), "rows": args.rows,
        **{f"baseline_{t}_threads_rows_per_s": round(b["rows_per_s"], 1) for t, b in baselines.items()},
        "baseline_rows_per_s": round(best["rows_per_s"], 1),
        "ray_data_rows_per_s": summary["rows_per_second"],
        "ratio": round(summary["rows_per_second"] / best["rows_per_s"], 3),
        "ray_data_pipeline_seconds": summary["pipeline_seconds"],
        "baseline_peak_rss_mib": round(baseline_memory.peak_mib),
        "ray_peak_rss_mib_all_processes": round(ray_memory.peak_mib),
    }
    report("Ray Data pipeline vs single-process PyTorch (content-moderation batch)", figures, args.json)


if __name__ == "__main__":
    main()
