"""The ``park`` command. Each sub-command lives with the code it drives; this file only wires them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="park-stack: the PARK stack (PyTorch, AI models, Ray, Kubernetes) as code.")


@app.callback()
def _park() -> None:
    """Keeps `park` a group of sub-commands even while only one is registered (typer would otherwise
    turn a lone command into the root command and reject its name as an extra argument)."""


@app.command("kind-config")
def kind_config(
    stack: str = typer.Argument(help="A stack under stacks/ (e.g. kind) or a Pulumi.<stack>.yaml path"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the config here instead of to stdout"),
) -> None:
    """Write the kind cluster config of a kind stack; then: kind create cluster --config FILE."""
    from park.components.clouds.kind import kind_config_command

    kind_config_command(stack, out)


@app.command("render")
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
) -> None:
    """Write every Kubernetes object the stack applies, CRDs first, as YAML (stdout, or one file per object).

    Helm releases appear as the objects Helm would install, rendered offline by Helm's engine. Apply with
    kubectl apply --server-side -f DIR."""
    from park.components.render import render_command

    if (team or priority) and not workloads:
        raise typer.BadParameter("--team and --priority choose where the reference workloads run; add --workloads")
    raise typer.Exit(render_command(stack, out, workloads, charts=charts, team=team, priority=priority))


@app.command("cost")
def cost(
    stack: str = typer.Argument(help="A stack under stacks/ (e.g. aws) or the path of a Pulumi.<stack>.yaml"),
    as_json: bool = typer.Option(False, "--json", help="Print the figures and their sources as JSON"),
) -> None:
    """Hourly and monthly cost of the stack idle (minNodes) and at full scale (maxNodes), with price sources."""
    from park.components.cost import cost_command

    raise typer.Exit(cost_command(stack, as_json))


@app.command("tiny-model")
def tiny_model(
    folder: Annotated[Path, typer.Argument(help="Folder to write the model into (created if missing)")],
) -> None:
    """Build a tiny random Llama (tokenizer, chat template) that transformers and vLLM load; no network."""
    from park.workloads.serve.tiny import tiny_model_command

    tiny_model_command(folder)


# `park conformance`: the command function lives with the suite; its module imports only typer at the top.
from park.conformance.cli import conformance as _conformance  # noqa: E402

app.command("conformance")(_conformance)
