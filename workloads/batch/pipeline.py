"""The batch-inference pipeline on Ray Data, shaped like content moderation.

    read Parquet (id, image PNG, text)
      -> preprocess: decode and normalise images, flag texts by keyword (CPU tasks on a GPU cluster;
         without GPUs fused into the vision actors, see :func:`build_pipeline`)
      -> vision CNN on an actor pool (GPU when the cluster has GPUs, else CPU)
      -> optional LLM stage: vLLM's offline engine in an actor (only with --llm-model)
      -> Parquet under OUTPUT/data, one row per input row, same ids

Exactly once, also when tasks are retried: the writer uses SaveMode.OVERWRITE (the data folder is emptied
when the write starts, so a rerun of a failed job replaces rather than appends) and file names made from
the write task's index only (``part-00003-0.parquet``), so a retried write task rewrites its own file
instead of adding a second copy; a retried map task re-produces its block before it reaches the writer,
and Ray Data hands each block to exactly one write task. After writing, the driver reads the ids back and
compares them with the input ids: only an exact match writes ``_SUCCESS`` and exits 0. A failed run leaves
its partial output and summary.json readable (and no ``_SUCCESS``).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from park.workloads import storage
from park.workloads.batch import data
from park.workloads.batch.llm import LLMModerator, llm_actor_options

FAIL_ONCE_ENV = "PARK_BATCH_FAIL_ONCE"
"""Test hook: "1" makes the first preprocessing task of a run kill its process once: a task worker, or on a
CPU-only cluster the vision actor it is fused into; Ray retries the task (and restarts the actor)."""
DATA_FOLDER = "data"
SUMMARY_FILE = "summary.json"
STATS_FILE = "ray_data_stats.txt"
SUCCESS_FILE = "_SUCCESS"
FAULT_MARKER_FILE = "_fault_injected.json"
VISION_MODEL_FILE = "vision-cnn.pt"
ACTOR_CPUS = 0.5
"""Ray CPUs each vision actor claims on a CPU-only cluster (it runs one torch thread on one core)."""
BATCHES_PER_BLOCK = 2
IMAGE_MEAN, IMAGE_STD = 0.5, 0.25


@dataclass(frozen=True)
class BatchConfig:
    input_uri: str
    """Input Parquet folder; generated with ``rows`` rows when it holds no ``_SUCCESS`` marker yet."""
    output_uri: str
    """Output folder: ``data/`` (Parquet), ``summary.json``, ``_SUCCESS`` once verified."""
    rows: int = 1000
    llm_model: str | None = None
    """A local model folder for vLLM (e.g. from ``park tiny-model DIR``); no LLM stage when None."""
    summary_path: str | None = None
    vision_model_uri: str | None = None
    """Default: OUTPUT/vision-cnn.pt (outside data/, so it survives reruns), built on first use."""
    batch_size: int = 256
    max_actors: int | None = None
    """Upper bound of the vision actor pool. Default: one per GPU, else one per CPU of the cluster."""
    llm_max_tokens: int = 8
    seed: int = 0
    fail_once: bool = False
    drop_rows_for_testing: int = 0
    """Test only: silently drop this many rows in preprocessing, to prove the checks notice."""

    def __post_init__(self) -> None:
        problems = []
        if self.rows < 1:
            problems.append(f"--rows must be 1 or more, got {self.rows}")
        if self.batch_size < 1:
            problems.append(f"--batch-size must be 1 or more, got {self.batch_size}")
        if self.drop_rows_for_testing < 0:
            problems.append("--drop-rows-for-testing must be 0 or more")
        if self.input_uri.rstrip("/") == self.output_uri.rstrip("/"):
            problems.append("--input-uri and --output-uri must differ (the output folder is overwritten)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def data_uri(self) -> str:
        return storage.join(self.output_uri, DATA_FOLDER)

    @property
    def model_uri(self) -> str:
        return self.vision_model_uri or storage.join(self.output_uri, VISION_MODEL_FILE)


class BatchInputError(ValueError):
    """The input folder does not match the request (e.g. a different row count)."""


class RowsMismatch(RuntimeError):
    """The output does not hold exactly the input ids; the summary lists how many are missing or extra."""


# --- stages -------------------------------------------------------------------------------------


def preprocess(batch: dict[str, np.ndarray], fail_marker_uri: str | None = None,
               drop_below_index: int = 0) -> dict[str, np.ndarray]:
    """Decode PNGs to normalised float tensors (N, 3, 32, 32) and flag texts holding a flagged word."""
    if fail_marker_uri is not None and not storage.exists(fail_marker_uri):
        storage.write_text(fail_marker_uri, json.dumps({"pid": os.getpid(), "crashed_at": time.time(),
                                                        "first_id": str(batch["id"][0])}))
        print(f"[fault injection] killing the worker of a preprocessing task (pid {os.getpid()})", flush=True)
        os._exit(1)  # like a worker crash or an OOM kill: a system failure Ray retries
    import io

    from PIL import Image

    keep = np.array([data.row_index(i) >= drop_below_index for i in batch["id"]], dtype=bool)
    ids, texts, images = batch["id"][keep], batch["text"][keep], batch["image"][keep]
    pixels = np.stack([np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
                       for png in images]) if len(images) else np.zeros((0, 32, 32, 3), np.float32)
    pixels = (pixels.transpose(0, 3, 1, 2) / 255.0 - IMAGE_MEAN) / IMAGE_STD
    flagged = np.array([any(w in str(t).split() for w in data.FLAGGED_WORDS) for t in texts], dtype=bool)
    return {"id": ids, "text": texts, "text_flagged": flagged, "pixels": pixels.astype(np.float32)}


class VisionClassifier:
    """Actor: loads the CNN once, labels a batch of images (on GPU when this actor got one)."""

    def __init__(self, model_uri: str, torch_threads: int | None = None):
        import torch
        from park.workloads.batch.model import (  # imports torch: only the actors load it, not the driver
            load_vision_model,
        )

        if torch_threads is not None:
            # torch defaults to one intra-op thread per core of the machine, not per CPU Ray gave the actor:
            # N such actors on N cores would each spin N threads and fight over the cores.
            torch.set_num_threads(torch_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_vision_model(model_uri, self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch
        from park.workloads.batch.model import (  # imports torch: only the actors load it, not the driver
            LABELS,
        )

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(batch["pixels"]).to(self.device))
            scores, labels = torch.softmax(logits, dim=1).max(dim=1)
        return {"id": batch["id"], "text": batch["text"], "text_flagged": batch["text_flagged"],
                "image_label": np.array([LABELS[i] for i in labels.cpu().tolist()], dtype=object),
                "image_score": scores.cpu().numpy().astype(np.float32)}


# --- the driver ---------------------------------------------------------------------------------


def _ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=True)


def _stable_names():
    """File names from the write task index only: a retried write task overwrites its own file."""
    from ray.data.datasource import FilenameProvider

    class StableNames(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{task_index:05d}"

    return StableNames(file_format="parquet")


def _write_parquet(dataset, uri: str) -> None:
    from ray.data import SaveMode

    filesystem, path = storage.resolve(uri)
    dataset.write_parquet(path, filesystem=filesystem, mode=SaveMode.OVERWRITE, filename_provider=_stable_names())


def ensure_input(config: BatchConfig) -> int:
    """Generate the input rows (in parallel, with Ray Data) unless the folder already holds them."""
    import ray

    marker = storage.join(config.input_uri, SUCCESS_FILE)
    if storage.exists(marker):
        found = json.loads(storage.read_text(marker))
        if found.get("rows") != config.rows or found.get("seed") != config.seed:
            raise BatchInputError(f"{config.input_uri} holds {found.get('rows')} rows (seed {found.get('seed')}), "
                                  f"not the {config.rows} (seed {config.seed}) asked for; use another "
                                  f"--input-uri or the same --rows")
        return config.rows
    blocks = max(1, min(64, config.rows // 2000))
    rows = ray.data.range(config.rows, override_num_blocks=blocks).map_batches(
        data.make_rows_batch, fn_kwargs={"seed": config.seed}, batch_size=500)
    _write_parquet(rows, config.input_uri)
    storage.write_text(marker, json.dumps({"rows": config.rows, "seed": config.seed}))
    return config.rows


def _read_ids(uri: str) -> list[str]:
    import pyarrow.dataset as pads

    filesystem, path = storage.resolve(uri)
    if not storage.exists(uri):
        return []
    table = pads.dataset(path, filesystem=filesystem, format="parquet").to_table(columns=["id"])
    return [str(v) for v in table.column("id").to_pylist()]


def compare_ids(input_ids: list[str], output_ids: list[str]) -> dict[str, Any]:
    """Exactly-once check: counts of missing, duplicated and unexpected ids (with a few examples)."""
    expected, counts = set(input_ids), Counter(output_ids)
    missing = sorted(expected - counts.keys())
    extra = sorted(counts.keys() - expected)
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    return {"rows_in": len(input_ids), "rows_out": len(output_ids), "missing": len(missing),
            "duplicated": len(duplicated), "unexpected": len(extra),
            "examples": {"missing": missing[:5], "duplicated": duplicated[:5], "unexpected": extra[:5]},
            "exact": not missing and not extra and not duplicated and len(input_ids) == len(expected)}


def _cluster_resources() -> tuple[float, float]:
    import ray

    resources = ray.cluster_resources()
    return resources.get("CPU", 0.0), resources.get("GPU", 0.0)


def build_pipeline(config: BatchConfig, use_gpus: float, cpus: float):
    """The Ray Data plan (lazy) from input Parquet to labelled rows.

    Without GPUs, one vision actor per CPU, each with one torch thread, and preprocessing asks for exactly
    the actor's resources, so Ray Data fuses the two map stages into the actor: images are decoded where they
    are classified and the float pixels (12 KiB a row) never cross the object store. Each actor claims half a
    CPU, so a 2-CPU machine keeps a CPU for the read and write tasks and never deadlocks.
    With GPUs, preprocessing stays in CPU tasks that scale with the cluster's CPUs and feed one actor per
    GPU: the heterogeneous split the pipeline exists for."""
    import ray
    from ray.data import ActorPoolStrategy

    filesystem, input_path = storage.resolve(config.input_uri)
    fault_marker = storage.join(config.output_uri, FAULT_MARKER_FILE) if config.fail_once else None
    dataset = ray.data.read_parquet(input_path, filesystem=filesystem, file_extensions=["parquet"])
    # The reader packs small files into one big block, which would run every later stage as a single task;
    # blocks of a few batches let preprocessing, inference and writing overlap and spread over the cluster.
    dataset = dataset.repartition(target_num_rows_per_block=config.batch_size * BATCHES_PER_BLOCK)

    llm = config.llm_model is not None
    if use_gpus >= 1:
        actors, actor_resources, threads = max(1, int(use_gpus) - (1 if llm else 0)), {"num_gpus": 1}, None
        preprocess_resources: dict[str, float] = {}  # one CPU per task, Ray Data's default
    else:
        actors = max(1, int(cpus) - (1 if llm else 0))
        actor_resources, threads = {"num_cpus": ACTOR_CPUS}, 1
        preprocess_resources = actor_resources  # same resources: fused into the actor
    max_actors = min(actors, config.max_actors) if config.max_actors else actors
    # On CPU the pool starts at full size: Ray Data's resource budget (half the CPUs reserved for the read and
    # write operators) would otherwise never let it grow past one actor on a small machine.
    min_actors = 1 if use_gpus >= 1 else max_actors
    dataset = dataset.map_batches(
        preprocess, batch_size=config.batch_size, batch_format="numpy", **preprocess_resources,
        fn_kwargs={"fail_marker_uri": fault_marker, "drop_below_index": config.drop_rows_for_testing})
    dataset = dataset.map_batches(
        VisionClassifier, fn_constructor_kwargs={"model_uri": config.model_uri, "torch_threads": threads},
        batch_size=config.batch_size, batch_format="numpy",
        compute=ActorPoolStrategy(min_size=min_actors, max_size=max_actors), **actor_resources)
    if llm:
        dataset = dataset.map_batches(
            LLMModerator, fn_constructor_kwargs={"model_path": config.llm_model,
                                                 "max_tokens": config.llm_max_tokens},
            batch_size=config.batch_size, batch_format="numpy", compute=ActorPoolStrategy(size=1),
            **llm_actor_options(gpu=use_gpus >= 1))
    return dataset


def run_pipeline(config: BatchConfig) -> dict[str, Any]:
    """Run the whole job: input, model, pipeline, write, verify, summary. Raises :class:`RowsMismatch`
    (after writing the summary) when the output is not exactly the input ids."""
    _ensure_ray()
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # job logs, not a terminal
    # Parquet V2 lists files through a pool of up to 32 FooterReader actors, each a Python process that imports
    # Ray and pyarrow: seconds of start-up apiece on a small machine, for per-row-group statistics that only
    # predicate push-down uses, and this pipeline reads every row. V1 reads the footers in its read tasks.
    context.use_datasource_v2 = False
    started = time.time()
    ensure_input(config)  # first: an input that does not match the request leaves the output as it was
    for leftover in (SUCCESS_FILE, FAULT_MARKER_FILE):  # this run is not committed (yet), nor fault-injected
        uri = storage.join(config.output_uri, leftover)
        if storage.exists(uri):
            filesystem, path = storage.resolve(uri)
            filesystem.delete_file(path)
    if not storage.exists(config.model_uri):
        from park.workloads.batch.model import (  # imports torch: only when the model is missing
            build_vision_model,
        )

        build_vision_model(config.model_uri)
    cpus, gpus = _cluster_resources()
    dataset = build_pipeline(config, gpus, cpus)
    pipeline_started = time.time()
    _write_parquet(dataset, config.data_uri)
    pipeline_seconds = time.time() - pipeline_started
    # Ray Data's per-operator wall and CPU times, rows and blocks: where the pipeline's time went.
    storage.write_text(storage.join(config.output_uri, STATS_FILE), dataset.stats())

    check = compare_ids(_read_ids(config.input_uri), _read_ids(config.data_uri))
    fault_uri = storage.join(config.output_uri, FAULT_MARKER_FILE)
    summary = {
        **check,
        "input_uri": config.input_uri,
        "output_uri": config.output_uri,
        "data_uri": config.data_uri,
        "files": storage.list_names(config.data_uri),
        "device": "cuda" if gpus >= 1 else "cpu",
        "llm_stage": config.llm_model is not None,
        "injected_fault": json.loads(storage.read_text(fault_uri)) if storage.exists(fault_uri) else None,
        "dropped_for_testing": config.drop_rows_for_testing,
        "pipeline_seconds": round(pipeline_seconds, 2),
        "rows_per_second": round(check["rows_out"] / pipeline_seconds, 1) if pipeline_seconds else None,
        "wall_seconds": round(time.time() - started, 2),
        "passed": check["exact"],
        "config": asdict(config),
    }
    text = json.dumps(summary, indent=2)
    storage.write_text(storage.join(config.output_uri, SUMMARY_FILE), text)
    if config.summary_path:
        storage.write_text(config.summary_path, text)
    if not check["exact"]:
        raise RowsMismatch(f"output is not exactly the input rows: {check['missing']} missing, "
                           f"{check['duplicated']} duplicated, {check['unexpected']} unexpected "
                           f"(of {check['rows_in']}); partial output kept at {config.data_uri}")
    storage.write_text(storage.join(config.output_uri, SUCCESS_FILE),
                       json.dumps({"rows": check["rows_out"], "files": summary["files"]}))
    return summary


def fail_once_from_env() -> bool:
    return os.environ.get(FAIL_ONCE_ENV, "") not in ("", "0", "false")
