"""Command line of the batch job. Exit codes: 0 exactly the input rows came out, 1 they did not
(summary.json says how), 2 bad arguments or input, 3 the pipeline failed. Partial output stays readable."""

from __future__ import annotations

import sys

import typer

from park.workloads.batch.pipeline import FAIL_ONCE_ENV

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def batch(
    input_uri: str = typer.Option(..., help="Input Parquet folder (path, file://, s3://, gs://); generated "
                                            "with --rows rows when absent."),
    output_uri: str = typer.Option(..., help="Output folder: data/ Parquet, summary.json, _SUCCESS."),
    rows: int = typer.Option(1000, min=1, help="Rows in the input."),
    llm_model: str | None = typer.Option(None, help="Local model folder for the optional vLLM stage."),
    summary_path: str | None = typer.Option(None, help="Also write the JSON summary here."),
    batch_size: int = typer.Option(256, min=1),
    max_actors: int | None = typer.Option(None, min=1, help="Upper bound of the vision actor pool."),
    fail_once: bool = typer.Option(False, "--fail-once-for-testing", envvar=FAIL_ONCE_ENV, hidden=True,
                                   help="Test only: crash one preprocessing task once (Ray retries it)."),
    drop_rows_for_testing: int = typer.Option(0, min=0, hidden=True,
                                              help="Test only: drop this many rows, to prove checks notice."),
) -> None:
    """Content-moderation-style batch inference with Ray Data: preprocess, vision CNN, optional LLM."""
    from park.workloads.batch.pipeline import BatchConfig, BatchInputError, RowsMismatch, run_pipeline
    from park.workloads.storage import StorageError

    if llm_model and llm_model.startswith("file://"):
        llm_model = llm_model.removeprefix("file://")  # vLLM reads a local folder
    try:
        config = BatchConfig(input_uri=input_uri, output_uri=output_uri, rows=rows, llm_model=llm_model,
                             summary_path=summary_path, batch_size=batch_size, max_actors=max_actors,
                             fail_once=fail_once, drop_rows_for_testing=drop_rows_for_testing)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        summary = run_pipeline(config)
    except (BatchInputError, StorageError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except RowsMismatch as err:
        typer.echo(f"FAILED: {err}", err=True)
        raise typer.Exit(1) from None
    except Exception as err:  # noqa: BLE001 - a Ray Data failure ends the job with its message
        typer.echo(f"FAILED: the pipeline did not finish: {err}\npartial output: {config.data_uri}", err=True)
        raise typer.Exit(3) from None
    typer.echo(f"PASSED: {summary['rows_out']} rows out of {summary['rows_in']}, exactly once, "
               f"{summary['rows_per_second']} rows/s on {summary['device']}; output {summary['data_uri']}")


def main() -> None:
    app(prog_name=f"{sys.executable.rsplit('/', 1)[-1]} -m park.workloads.batch")
