"""The ``park`` command. Each sub-command lives with the code it drives; this file only wires them."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Annotated

import typer

from park.extras import require_extra
from park.outputs import out_file_errors, require_writable_folder

app = typer.Typer(
    # -h as well as --help, on every sub-command (click contexts inherit help_option_names from the group)
    context_settings={"help_option_names": ["-h", "--help"]},
    help="park-stack: the PARK stack (PyTorch, AI models, Ray, Kubernetes) as code.",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"park-stack {version('park-stack')}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _park(
    ctx: typer.Context,
    _version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                  help="Print the park-stack version and exit."),
) -> None:
    """Keeps `park` a group of sub-commands even while only one is registered (typer would otherwise
    turn a lone command into the root command and reject its name as an extra argument); bare `park`
    prints the help and exits 0 (click's no_args_is_help exits 2)."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


@app.command("kind-config")
def kind_config(
    stack: str = typer.Argument(help="A stack under stacks/ (e.g. kind) or a Pulumi.<stack>.yaml path"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the config here instead of to stdout"),
) -> None:
    """Write the kind cluster config of a kind stack; then: kind create cluster --config FILE."""
    from park.components.clouds.kind import kind_config_command  # start-up time: 1.6 s (Pulumi)

    with out_file_errors("--out", out):
        kind_config_command(stack, out)


RENDER_HELP = (
    "Write every Kubernetes object the stack applies, CRDs first, as YAML (stdout, or one file per object).\n\n"
    "Helm releases appear as the objects Helm would install, rendered offline by Helm's engine. Apply with "
    "kubectl apply --server-side -f DIR.\n\n"
    "--out DIR records what it wrote in DIR/.park-render; the next render into DIR removes only those files, "
    "and only if unchanged since (an edited one is kept and named). A folder that is not empty and has no "
    "record, or a file render would overwrite that it did not write or that was edited, is refused (exit 2, "
    "nothing changed) unless --force.\n\n"
    "Exit codes: 0 written; 1 a chart could not be found or rendered; 2 invalid config, or an --out refused or "
    "not writable."
)


@app.command("render", help=RENDER_HELP)
def render(
    stack: str = typer.Argument(help="A stack under stacks/ (e.g. kind) or the path of a Pulumi.<stack>.yaml"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write one file per object into this folder"),
    workloads: bool = typer.Option(False, "--workloads", help="Append the reference RayJobs / RayService"),
    charts: Path | None = typer.Option(
        None, "--charts", envvar="PARK_CHART_DIR",
        help="Folder of unpacked charts named <name>-<version>/ (air-gapped); default: pull from their repositories"),
    team: str | None = typer.Option(None, "--team", help="With --workloads: send every workload to this team"),
    priority: str | None = typer.Option(None, "--priority",
                                        help="With --workloads: run every workload at this priority class"),
    force: bool = typer.Option(False, "--force",
                               help="With --out: write into a folder park render did not write, or over files "
                                    "edited since, overwriting files of the same names (nothing else is removed)"),
) -> None:
    """The help is RENDER_HELP: one string per paragraph, so that typer wraps it to the terminal."""
    from park.render import render_command  # start-up time: 2.8 s (Helm SDK, builders)

    if (team or priority) and not workloads:
        raise typer.BadParameter("--team and --priority choose where the reference workloads run; add --workloads")
    raise typer.Exit(render_command(stack, out, workloads, charts=charts, team=team, priority=priority,
                                    force=force))


@app.command("cost")
def cost(
    stack: str = typer.Argument(help="A stack under stacks/ (e.g. aws) or the path of a Pulumi.<stack>.yaml"),
    as_json: bool = typer.Option(False, "--json", help="Print the figures and their sources as JSON"),
) -> None:
    """Hourly and monthly cost of the stack idle (minNodes) and at full scale (maxNodes), with price sources."""
    from park.components.cost import cost_command  # start-up time: 1.0 s (the spec, pydantic)

    raise typer.Exit(cost_command(stack, as_json))


@app.command("tiny-model")
def tiny_model(
    folder: Annotated[Path, typer.Argument(help="Folder to write the model into (created if missing)")],
) -> None:
    """Build a tiny random Llama (tokenizer, chat template) that transformers and vLLM load; no network."""
    require_extra("workloads", "torch", "transformers", "tokenizers", command="park tiny-model")
    from park.workloads.serve.tiny import tiny_model_command  # optional extra: workloads (transformers)

    require_writable_folder(folder.expanduser())
    tiny_model_command(folder)


image_app = typer.Typer(no_args_is_help=True, help="The workload image (workloads/Dockerfile) under the stack's "
                                                   "workloads.image / workloads.gpuImage names.")
app.add_typer(image_app, name="image")
_IMAGE_STACK = typer.Argument(help="A stack under stacks/ (e.g. aws) or the path of a Pulumi.<stack>.yaml")
_DRY_RUN = typer.Option(False, "--dry-run", help="Print the commands instead of running them")


@image_app.command("build")
def image_build(stack: str = _IMAGE_STACK, dry_run: bool = _DRY_RUN) -> None:
    """docker build the CPU image, and the GPU image where the stack has GPU pools."""
    from park.workloads.image import image_command  # start-up time: 1.0 s (the spec, pydantic)

    raise typer.Exit(image_command("build", stack, dry_run))


@image_app.command("push")
def image_push(stack: str = _IMAGE_STACK, dry_run: bool = _DRY_RUN) -> None:
    """docker push the images to their registry (log in to it first)."""
    from park.workloads.image import image_command  # start-up time: 1.0 s (the spec, pydantic)

    raise typer.Exit(image_command("push", stack, dry_run))


@image_app.command("load")
def image_load(stack: str = _IMAGE_STACK, dry_run: bool = _DRY_RUN) -> None:
    """kind load docker-image: put the built images on a kind stack's nodes (no registry needed)."""
    from park.workloads.image import image_command  # start-up time: 1.0 s (the spec, pydantic)

    raise typer.Exit(image_command("load", stack, dry_run))


@app.command("stage-model")
def stage_model(
    stack: str = typer.Argument(help="A stack under stacks/ (e.g. aws) or the path of a Pulumi.<stack>.yaml"),
    source: str = typer.Argument(help="A local model folder (with config.json) or a hub id to download first"),
    model: str | None = typer.Option(None, "--model", help="Which of the stack's models (default: its only one)"),
    dry_run: bool = _DRY_RUN,
) -> None:
    """Copy a model to where the stack serves it from (models[].source): its bucket, or kind's host folder."""
    from park.workloads.serve.stage import stage_model_command  # start-up time: 2.0 s (pyarrow, the spec)

    raise typer.Exit(stage_model_command(stack, source, model, dry_run))


# `park conformance`: the command function lives with the suite; its module imports only typer at the top.
from park.conformance.cli import conformance as _conformance  # noqa: E402

app.command("conformance")(_conformance)
