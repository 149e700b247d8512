"""The training workload on a real local Ray (the session's head, tests/conftest.py): learning, checkpoints, a worker
killed mid-epoch and resumed, reruns resuming, and the accuracy bar failing the job."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from park.workloads.train import data
from park.workloads.train.cli import app
from park.workloads.train.loop import HISTORY_FILE, STATE_FILE, checkpoint_dir_name
from park.workloads.train.run import SUMMARY_FILE, TrainConfig, decide_gpu, run_training
from typer.testing import CliRunner

EPOCHS = 3
CRASH_EPOCH = 2


# --- the data, without Ray ------------------------------------------------------------------------


def test_glyph_digits_are_deterministic_per_seed():
    images, labels = data.make_glyph_digits(64, seed=5)
    again, again_labels = data.make_glyph_digits(64, seed=5)
    other, _ = data.make_glyph_digits(64, seed=6)
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.equal(images, other)
    assert images.shape == (64, 1, data.IMAGE_SIZE, data.IMAGE_SIZE)


def test_glyph_digits_cover_every_class():
    _, labels = data.make_glyph_digits(2000, seed=0)
    counts = torch.bincount(labels, minlength=data.NUM_CLASSES)
    assert counts.min() > 2000 / data.NUM_CLASSES * 0.7


def test_bad_arguments_exit_2_with_a_message_not_a_traceback():
    result = subprocess.run([sys.executable, "-m", "park.workloads.train", "--storage-uri", "/tmp/x",
                             "--run-name", "r", "--epochs", "0"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--epochs" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(ValueError, match="--min-accuracy"):
        TrainConfig(storage_uri="/tmp/x", run_name="r", min_accuracy=1.5)


# --- on a local Ray -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def storage_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train-storage")


@pytest.fixture(scope="module")
def crashed_run(local_ray, storage_dir) -> dict:
    """3 epochs on 2 workers; the last worker is SIGKILLed halfway through epoch 2 (first time only)."""
    config = TrainConfig(storage_uri=f"file://{storage_dir}", run_name="crash", epochs=EPOCHS, num_workers=2,
                         fail_at_epoch=CRASH_EPOCH, max_failures=2)
    return run_training(config)


@pytest.mark.ray
def test_loss_decreases_and_accuracy_beats_chance(crashed_run):
    losses, accuracies = crashed_run["losses"], crashed_run["accuracies"]
    assert crashed_run["epochs"] == list(range(1, EPOCHS + 1))
    assert all(later < earlier for earlier, later in itertools.pairwise(losses)), losses
    assert accuracies[-1] > 3 / data.NUM_CLASSES, accuracies  # chance is 1/10


@pytest.mark.ray
def test_a_checkpoint_per_epoch_is_written_and_loadable(crashed_run, storage_dir):
    run_dir = storage_dir / "crash"
    for epoch in range(1, EPOCHS + 1):
        folder = run_dir / checkpoint_dir_name(epoch)
        state = torch.load(folder / STATE_FILE, weights_only=True)
        assert state["epoch"] == epoch
        assert json.loads((folder / HISTORY_FILE).read_text())["epochs"][-1] == epoch
    assert [Path(uri).name for uri in crashed_run["checkpoints"]] == [checkpoint_dir_name(e)
                                                                      for e in range(1, EPOCHS + 1)]
    assert json.loads((run_dir / SUMMARY_FILE).read_text())["passed"] is True


@pytest.mark.ray
def test_killed_worker_resumes_from_the_last_checkpoint_losing_at_most_one_epoch(crashed_run):
    assert crashed_run["injected_fault"]["epoch"] == CRASH_EPOCH
    assert [r["from_epoch"] for r in crashed_run["resumes"]] == [CRASH_EPOCH - 1]
    assert crashed_run["resumed_from"] == CRASH_EPOCH - 1
    assert crashed_run["device"] == "cpu" and crashed_run["backend"] == "gloo"


@pytest.fixture(scope="module")
def rerun_below_the_bar(local_ray, crashed_run, tmp_path_factory) -> dict:
    """The crashed run, copied to storage of its own (so the crashed run's files stay as it left them),
    rerun under the same name through the job's command line for one more epoch with a bar it cannot reach.

    One run for two tests: a rerun continuing from the latest checkpoint and a missed bar exiting 1 with its
    checkpoints kept are independent outcomes of the same job (one Ray Train start instead of two). The
    command runs in this process, on the module's driver: a new Python process would spend seconds
    importing torch and connecting to Ray (the test of bad arguments runs the module as a process)."""
    storage = tmp_path_factory.mktemp("train-rerun")
    shutil.copytree(Path(crashed_run["run_uri"].removeprefix("file://")), storage / "crash")
    summary_path = storage / "summary-copy.json"
    result = CliRunner().invoke(
        app, ["--storage-uri", f"file://{storage}", "--run-name", "crash", "--epochs", str(EPOCHS + 1),
              "--num-workers", "1", "--min-accuracy", "0.999", "--summary-path", str(summary_path)])
    return {"result": result, "summary_path": summary_path, "run_dir": storage / "crash"}


@pytest.mark.ray
def test_rerun_under_the_same_name_continues_from_the_latest_checkpoint(crashed_run, rerun_below_the_bar):
    summary = json.loads(rerun_below_the_bar["summary_path"].read_text())
    assert summary["resumed_from"] == EPOCHS, rerun_below_the_bar["result"].output[-3000:]
    assert summary["epochs"] == list(range(1, EPOCHS + 2))
    assert summary["losses"][:EPOCHS] == crashed_run["losses"]  # history carried over, not retrained


@pytest.mark.ray
def test_gpu_choice_auto_falls_back_to_cpu_without_cluster_gpus(local_ray):
    assert decide_gpu("auto", 2) is False
    assert decide_gpu("true", 2) is True and decide_gpu("false", 2) is False


@pytest.mark.ray
def test_accuracy_below_the_bar_exits_1_and_keeps_checkpoints(rerun_below_the_bar):
    result = rerun_below_the_bar["result"]
    assert isinstance(result.exception, SystemExit), result.exception  # an exit, not an error escaping
    assert result.exit_code == 1, result.output[-3000:]
    assert "below --min-accuracy 0.999" in result.stderr
    summary = json.loads(rerun_below_the_bar["summary_path"].read_text())
    assert summary["passed"] is False and summary["final_accuracy"] < 0.999
    state = torch.load(rerun_below_the_bar["run_dir"] / checkpoint_dir_name(EPOCHS + 1) / STATE_FILE,
                       weights_only=True)
    assert state["epoch"] == EPOCHS + 1
