"""Command line of the batch job. Exit codes: 0 exactly the input rows came out, 1 they did not
(summary.json says how), 2 bad arguments or input, 3 the pipeline failed. Partial output stays readable."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from park.workloads.batch.pipeline import FAIL_ONCE_ENV

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def batch(
    input_uri: Annotated[str, typer.Option(help="Input Parquet folder (path, file://, s3://, gs://); generated "
                                                "with --rows rows when absent.")],
    output_uri: Annotated[str, typer.Option(help="Output folder: data/ Parquet, summary.json, _SUCCESS.")],
    rows: Annotated[int, typer.Option(min=1, help="Rows in the input.")] = 1000,
    llm_model: Annotated[str | None, typer.Option(help="Local model folder for the optional vLLM stage.")] = None,
    summary_path: Annotated[str | None, typer.Option(help="Also write the JSON summary here.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
    max_actors: Annotated[int | None, typer.Option(min=1, help="Upper bound of the vision actor pool.")] = None,
    fail_once: Annotated[bool, typer.Option(
        "--fail-once-for-testing", envvar=FAIL_ONCE_ENV, hidden=True,
        help="Test only: crash one preprocessing task once (Ray retries it).")] = False,
    drop_rows_for_testing: Annotated[int, typer.Option(
        min=0, hidden=True, help="Test only: drop this many rows, to prove checks notice.")] = 0,
) -> None:
    """Content-moderation-style batch inference with Ray Data: preprocess, vision CNN, optional LLM."""
    from park.workloads.batch.pipeline import (  # start-up time: 0.5 s that --help and option errors skip
        BatchConfig,
        BatchInputError,
        RowsMismatch,
        run_pipeline,
    )
    from park.workloads.storage import StorageError  # start-up time: with the pipeline, whose errors it names

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
