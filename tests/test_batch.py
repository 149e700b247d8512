"""The batch workload on a real local Ray (the session's head, tests/conftest.py): exactly the input ids come out,
also after a task is killed and retried and when the job is rerun; lost rows are caught."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from park.workloads.batch import data
from park.workloads.batch.model import TinyVisionNet, build_vision_model, load_vision_model
from park.workloads.batch.pipeline import (
    STATS_FILE,
    SUCCESS_FILE,
    BatchConfig,
    BatchInputError,
    RowsMismatch,
    compare_ids,
    ensure_input,
    preprocess,
    run_pipeline,
)

ROWS = 1200


def ids_in(folder: Path) -> list[str]:
    """Ids as stored in the Parquet files (read directly, not from the job's own summary)."""
    return pads.dataset(folder, format="parquet").to_table(columns=["id"]).column("id").to_pylist()


# --- without Ray ---------------------------------------------------------------------------------


def test_rows_are_a_pure_function_of_their_index():
    first, again = data.make_rows(np.arange(5, 10)), data.make_rows(np.arange(5, 10))
    assert list(first["id"]) == [data.row_id(i) for i in range(5, 10)]
    assert list(first["image"]) == list(again["image"]) and list(first["text"]) == list(again["text"])
    assert data.row_index(data.row_id(42)) == 42


def test_preprocess_decodes_images_and_flags_texts():
    rows = data.make_rows(np.arange(0, 20))
    out = preprocess(rows)
    assert out["pixels"].shape == (20, 3, data.IMAGE_SIZE, data.IMAGE_SIZE)
    flagged = [i for i, f in zip(out["id"], out["text_flagged"]) if f]
    assert flagged == [data.row_id(3), data.row_id(13)]  # one row in ten carries a flagged word


def test_vision_model_is_built_deterministically(tmp_path):
    import torch

    first = build_vision_model(str(tmp_path / "a.pt"))
    second = build_vision_model(f"file://{tmp_path}/b.pt")
    model_a = load_vision_model(first, torch.device("cpu"))
    model_b = load_vision_model(second, torch.device("cpu"))
    assert isinstance(model_a, TinyVisionNet)
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.equal(a, b), name


def test_compare_ids_counts_missing_duplicated_and_unexpected():
    result = compare_ids(["a", "b", "c"], ["a", "a", "c", "z"])
    assert (result["missing"], result["duplicated"], result["unexpected"], result["exact"]) == (1, 1, 1, False)
    assert compare_ids(["a", "b"], ["b", "a"])["exact"] is True


def test_same_input_and_output_is_refused():
    with pytest.raises(ValueError, match="must differ"):
        BatchConfig(input_uri="/tmp/x", output_uri="/tmp/x/")


# --- on a local Ray -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_input(local_ray, tmp_path_factory) -> Path:
    """The module's input: ROWS rows, generated once (by Ray Data, as a job does) for every run here."""
    folder = tmp_path_factory.mktemp("batch-input")
    ensure_input(BatchConfig(input_uri=str(folder), output_uri=str(folder.with_name("unused")), rows=ROWS))
    return folder


@pytest.fixture(scope="module")
def run_with_a_task_failure(shared_input, tmp_path_factory) -> dict:
    """One run that carries the exactly-once checks: the first preprocessing task kills its process once and
    Ray retries it. Batches of 100 make six blocks of 200 rows (BATCHES_PER_BLOCK), so the crash hits one
    block of several and each of the two vision actors gets several batches."""
    output = tmp_path_factory.mktemp("batch-fault")
    summary = run_pipeline(BatchConfig(input_uri=str(shared_input), output_uri=str(output), rows=ROWS,
                                       fail_once=True, batch_size=100))
    return {"summary": summary, "output": output}


@pytest.fixture(scope="module")
def run_that_drops_rows(shared_input, tmp_path_factory) -> dict:
    """A run that silently loses 5 rows, as found when it ends (the rerun test then reruns onto its output).
    Batches of 100 make it write six files, more than a run with the default batch size writes (three)."""
    output = tmp_path_factory.mktemp("batch-dropped")
    with pytest.raises(RowsMismatch) as raised:
        run_pipeline(BatchConfig(input_uri=str(shared_input), output_uri=str(output), rows=ROWS,
                                 batch_size=100, drop_rows_for_testing=5))
    return {"error": str(raised.value), "output": output, "summary": json.loads((output / "summary.json").read_text()),
            "committed": (output / SUCCESS_FILE).exists(), "ids": ids_in(output / "data"),
            "files": sorted(path.name for path in (output / "data").iterdir())}


@pytest.mark.ray
def test_output_ids_are_exactly_the_input_ids(shared_input, run_with_a_task_failure):
    summary, output = run_with_a_task_failure["summary"], run_with_a_task_failure["output"]
    out_ids = ids_in(output / "data")
    assert sorted(out_ids) == sorted(ids_in(shared_input)) == [data.row_id(i) for i in range(ROWS)]
    assert len(set(out_ids)) == len(out_ids)
    assert summary["exact"] and (output / SUCCESS_FILE).exists()
    table = pads.dataset(output / "data", format="parquet").to_table()
    assert {"id", "text", "text_flagged", "image_label", "image_score"} <= set(table.column_names)
    # no GPU: decoding runs inside the vision actors (one fused operator), so pixels skip the object store
    stats = (output / STATS_FILE).read_text()
    assert "MapBatches(preprocess)->MapBatches(VisionClassifier)" in stats, stats[:2000]


@pytest.mark.ray
def test_exactly_once_after_an_injected_task_failure(run_with_a_task_failure):
    assert run_with_a_task_failure["summary"]["injected_fault"] is not None, "the fault hook did not fire"
    out_ids = ids_in(run_with_a_task_failure["output"] / "data")
    assert sorted(out_ids) == [data.row_id(i) for i in range(ROWS)]


@pytest.mark.ray
def test_dropped_rows_fail_the_job_and_leave_partial_output_readable(run_that_drops_rows):
    assert "5 missing" in run_that_drops_rows["error"]
    summary = run_that_drops_rows["summary"]
    assert summary["missing"] == 5 and summary["passed"] is False
    assert not run_that_drops_rows["committed"]
    assert len(run_that_drops_rows["ids"]) == ROWS - 5


@pytest.mark.ray
def test_a_rerun_overwrites_its_output_instead_of_appending(shared_input, run_that_drops_rows):
    """The rerun of a failed job onto its output: an appending write would keep the failed run's files that
    this run does not rewrite, and their ids would show up twice."""
    output = run_that_drops_rows["output"]
    summary = run_pipeline(BatchConfig(input_uri=str(shared_input), output_uri=str(output), rows=ROWS))
    assert set(run_that_drops_rows["files"]) - set(summary["files"]), "the rerun rewrote every earlier file"
    assert sorted(ids_in(output / "data")) == [data.row_id(i) for i in range(ROWS)]


@pytest.mark.ray
def test_input_with_another_row_count_is_a_clear_error(shared_input, tmp_path):
    """Refused before anything runs, and an output an earlier run committed stays committed."""
    (tmp_path / SUCCESS_FILE).write_text("{}")
    with pytest.raises(BatchInputError, match=f"holds {ROWS} rows"):
        run_pipeline(BatchConfig(input_uri=str(shared_input), output_uri=str(tmp_path), rows=ROWS + 1))
    assert (tmp_path / SUCCESS_FILE).exists(), "the refused run took back the earlier run's _SUCCESS"


@pytest.mark.ray
@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("park.workloads.serve.tiny") is None,
                    reason="the tiny Llama builder (park.workloads.serve.tiny) is not in this checkout")
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")
def test_llm_stage_answers_every_row(local_ray, tmp_path):
    from park.workloads.serve.tiny import build_tiny_llama

    model = build_tiny_llama(tmp_path / "tiny-llama")
    rows = 24
    summary = run_pipeline(BatchConfig(input_uri=str(tmp_path / "input"), output_uri=str(tmp_path / "out"),
                                       rows=rows, llm_model=str(model), batch_size=8, llm_max_tokens=4))
    table = pads.dataset(tmp_path / "out" / "data", format="parquet").to_table()
    assert summary["llm_stage"] and summary["exact"]
    assert sorted(table.column("id").to_pylist()) == [data.row_id(i) for i in range(rows)]
    assert all(isinstance(text, str) and text for text in table.column("llm_output").to_pylist())
