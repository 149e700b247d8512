"""Command line of the training job. Exit codes: 0 passed, 1 accuracy below the bar, 2 bad arguments,
3 training failed beyond its retries. Checkpoints and summary.json are left in storage in every case."""

from __future__ import annotations

import enum
import json
import sys
from typing import Annotated

import typer
from park.workloads.train.run import FAIL_AT_EPOCH_ENV, AccuracyBelowBar, TrainConfig, run_training

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


class GpuChoice(str, enum.Enum):
    auto = "auto"
    true = "true"
    false = "false"


@app.command()
def train(
    storage_uri: Annotated[str, typer.Option(help="Where checkpoints go: a path, file://, s3:// or gs:// URI.")],
    run_name: Annotated[str, typer.Option(help="Run folder under the storage URI; rerunning it resumes.")],
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    num_workers: Annotated[int, typer.Option(min=1, help="Data-parallel Ray Train workers.")] = 2,
    use_gpu: Annotated[GpuChoice, typer.Option(help="auto: GPUs when the cluster has one per worker.")] = (
        GpuChoice.auto),
    cpus_per_worker: Annotated[float, typer.Option(min=0.1)] = 1.0,
    min_accuracy: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Fail (exit 1) if the final test accuracy is below this.")] = None,
    summary_path: Annotated[str | None, typer.Option(help="Also write the JSON summary here.")] = None,
    max_failures: Annotated[int, typer.Option(min=-1, help="Worker-group restarts from the latest checkpoint.")] = 2,
    fail_at_epoch: Annotated[int | None, typer.Option(
        envvar=FAIL_AT_EPOCH_ENV, hidden=True, help="Test only: kill one worker in this epoch, once per run.")] = None,
) -> None:
    """Data-parallel training of a small CNN on glyph digits with Ray Train, a checkpoint per epoch."""
    try:
        config = TrainConfig(storage_uri=storage_uri, run_name=run_name, epochs=epochs, num_workers=num_workers,
                             use_gpu=use_gpu.value, cpus_per_worker=cpus_per_worker, min_accuracy=min_accuracy,
                             summary_path=summary_path, max_failures=max_failures, fail_at_epoch=fail_at_epoch)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        summary = run_training(config)
    except AccuracyBelowBar as err:
        typer.echo(f"FAILED: {err}", err=True)
        raise typer.Exit(1) from None
    except Exception as err:  # noqa: BLE001 - Ray's TrainingFailedError and storage errors end the job
        typer.echo(f"FAILED: training did not finish: {err}\ncheckpoints and summary.json: {config.run_uri}",
                   err=True)
        raise typer.Exit(3) from None
    typer.echo(json.dumps({k: summary[k] for k in ("epochs", "losses", "accuracies", "device",
                                                    "resumed_from", "checkpoints")}, indent=1))
    typer.echo(f"PASSED: final accuracy {summary['final_accuracy']:.4f}")


def main() -> None:
    app(prog_name=f"{sys.executable.rsplit('/', 1)[-1]} -m park.workloads.train")
