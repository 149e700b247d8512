"""``park conformance``: run the conformance suite against a target and write the evidence.

This module is imported by ``park --help``, so it imports only typer and park.extras at the top; the suite,
Ray, the kubernetes client and the workloads are imported when the command runs.

Exit codes: 0 every selected check passed (not-applicable and opt-in skips allowed), 1 a check failed,
2 the run could not start (bad option, unusable stack, no cluster reachable), 130 interrupted.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from park.extras import require_extra
from park.outputs import require_writable_folder

CONFORMANCE_MODULES = ("pytest", "testinfra", "httpx", "psutil", "prometheus_client", "ray", "torch",
                       "transformers", "pyarrow")
"""What a run and --dry-run import from the conformance extra and the workloads extra it includes (--list
needs neither)."""

INJECT_TRAIN_ENV = "PARK_CONFORMANCE_INJECT_TRAIN_MIN_ACCURACY"
INJECT_BATCH_ENV = "PARK_CONFORMANCE_INJECT_BATCH_DROP_ROWS"


class TargetChoice(str, enum.Enum):
    local = "local"
    kubernetes = "kubernetes"


class GpuChoice(str, enum.Enum):
    auto = "auto"
    require = "require"
    off = "off"


def conformance(
    stack_argument: Annotated[
        str | None,
        typer.Argument(
            metavar="STACK",
            help="Stack name under stacks/ or a Pulumi.<stack>.yaml, as in park render (same as --stack).",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        TargetChoice,
        typer.Option(
            "--target", "-t", help="local: an embedded Ray on this machine; kubernetes: a live cluster."
        ),
    ] = TargetChoice.local,
    stack: Annotated[
        str | None,
        typer.Option(
            "--stack",
            "-s",
            help="Stack name under stacks/ or a Pulumi.<stack>.yaml: queues, storage and models to "
            "use. Local default: kind. Same as the STACK argument.",
        ),
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="kubeconfig file (kubernetes target).")
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="kubeconfig context (kubernetes target).")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Run only these layers or checks (comma-separated or repeated), e.g. "
            "workloads,operators.ray-head.",
        ),
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option("--skip", help="Leave out these layers or checks.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Evidence folder. Default: ./conformance-<run id>/ (printed at the end)."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Serve this model folder instead of a fresh tiny Llama.")
    ] = None,
    team: Annotated[
        str | None,
        typer.Option(
            "--team",
            help="Run every workload and probe in this team's namespace and LocalQueue. Default: serving "
            "on the serving team, training and batch on the research team (else the stack's first team).",
        ),
    ] = None,
    priority: Annotated[
        str | None,
        typer.Option(
            "--priority",
            help="WorkloadPriorityClass of every workload. Default: each team's defaultPriority.",
        ),
    ] = None,
    gpu: Annotated[
        GpuChoice,
        typer.Option(
            "--gpu", help="auto: use GPUs when present, else CPU; require: fail without one; off: CPU."
        ),
    ] = GpuChoice.auto,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Time budget of the whole run, in seconds.")
    ] = 1800.0,
    keep: Annotated[
        bool,
        typer.Option("--keep", help="Leave what the run created (namespace objects, Ray, scratch folder)."),
    ] = False,
    destructive: Annotated[
        bool, typer.Option("--destructive", help="Also run checks that preempt workloads or add paid nodes.")
    ] = False,
    list_checks: Annotated[
        bool, typer.Option("--list", help="List the checks and what each proves, then exit.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan (checks, what each submits where, pools it scales and their $/h), then "
            "exit; contacts no cluster.",
        ),
    ] = False,
    inject_train_min_accuracy: Annotated[
        float | None,
        typer.Option(
            "--inject-train-min-accuracy",
            hidden=True,
            envvar=INJECT_TRAIN_ENV,
            help="Test only: the training accuracy bar.",
        ),
    ] = None,
    inject_batch_drop_rows: Annotated[
        int | None,
        typer.Option(
            "--inject-batch-drop-rows",
            hidden=True,
            envvar=INJECT_BATCH_ENV,
            help="Test only: rows the batch workload drops.",
        ),
    ] = None,
) -> None:
    """Prove the stack works, layer by layer, then with the reference train, serve and batch workloads.

    Evidence (junit.xml, results.json, e2e.log, report.md) goes to --out even when a check fails.
    """
    from park.conformance.checks import SelectionError, select  # start-up time: park --help, 2.4 s
    from park.conformance.context import Injections, RunOptions  # start-up time: park --help, 2.4 s
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    if not console.is_terminal:  # CI logs: wide enough that reasons are not folded into a narrow column
        console = Console(highlight=False, width=160)
    if list_checks:
        console.print(_list_table())
        raise typer.Exit(0)
    require_extra("conformance", *CONFORMANCE_MODULES, command="park conformance")
    if stack_argument and stack and stack_argument != stack:
        console.print(f"[red]error:[/red] STACK {escape(stack_argument)} and --stack {escape(stack)} differ; "
                      "give one of them", soft_wrap=True)
        raise typer.Exit(2)
    stack = stack or stack_argument
    try:
        selection = select(only, skip)
    except SelectionError as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        raise typer.Exit(2) from None
    options = RunOptions(
        target=target.value,
        stack=stack,
        kubeconfig=str(kubeconfig) if kubeconfig else None,
        context=context,
        only=tuple(only or ()),
        skip=tuple(skip or ()),
        out_dir=out.resolve() if out else None,
        model=model,
        gpu=gpu.value,
        timeout_s=timeout,
        keep=keep,
        destructive=destructive,
        team=team,
        priority=priority,
        injections=Injections(
            train_min_accuracy=inject_train_min_accuracy, batch_drop_rows=inject_batch_drop_rows
        ),
    )
    if dry_run:
        from park.conformance.plan import dry_run as plan_dry_run  # start-up time: park --help, 2.4 s

        code, lines = plan_dry_run(options, selection)
        for line in lines:
            console.print(escape(line), soft_wrap=True)
        raise typer.Exit(code)
    require_writable_folder(out if out else Path.cwd(), "--out" if out else "the evidence folder's parent (.)")
    raise typer.Exit(run_and_report(options, selection, console))


def run_and_report(options, selection, console) -> int:
    """Run with a live view on ``console``; print the summary, the verdict and where the evidence is."""
    from park.conformance import session  # start-up time: park --help, 2.4 s
    from park.conformance.progress import Progress, summary_table  # start-up time: park --help, 2.4 s
    from rich.markup import escape

    def progress(results):
        return Progress(console, results, f"park conformance --target {options.target}")

    def announce(plan) -> None:  # before the first check: which pools the run scales, and the $/h
        for line in plan.announcement():
            console.print(escape(line), soft_wrap=True)

    outcome = session.run(options, listener_factory=progress, selection=selection, on_plan=announce)
    if outcome.setup_error:  # nothing ran: the reason is all there is to say
        console.print(f"[red]error:[/red] {escape(outcome.setup_error)}", soft_wrap=True)
        console.print(f"evidence: {escape(str(outcome.out_dir))}", soft_wrap=True)
        return outcome.exit_code
    console.print()
    console.print(summary_table(outcome.results))
    if outcome.facts.get("accelerator"):
        console.print(f"accelerator: {escape(str(outcome.facts['accelerator']))}", soft_wrap=True)
    if options.injections.active:
        console.print(
            f"[yellow]fault injection active (test only):[/yellow] {', '.join(options.injections.active)}"
        )
    counts = outcome.verdict.counts
    style = "green" if outcome.verdict.passed else "red"
    deselected = f", {counts['deselected']} deselected" if counts["deselected"] else ""
    console.print(
        f"[bold {style}]{outcome.verdict.word.upper()}[/bold {style}]: {counts['passed']} passed, "
        f"{counts['failed']} failed, {counts['skipped']} skipped, {counts['not_applicable']} not "
        f"applicable{deselected}; verdict in {outcome.verdict_s:.1f} s, cleanup {outcome.cleanup_s:.1f} s"
    )
    for result in outcome.results:
        if result.status.value == "failed":
            console.print(f"[red]FAILED[/red] {result.name}: {escape(result.reason)}", soft_wrap=True)
    console.print(f"evidence: {escape(str(outcome.out_dir))}", soft_wrap=True)
    return outcome.exit_code


def _list_table():
    from park.conformance.checks import CHECKS  # start-up time: park --help, 2.4 s
    from rich.table import Table

    table = Table(title="park conformance checks (in run order)")
    for column in ("check", "proves", "requirements", "needs"):
        table.add_column(column, overflow="fold")
    for check in CHECKS:
        flags = [flag for flag, on in (("gpu", check.gpu), ("destructive", check.destructive)) if on]
        table.add_row(
            check.name + (f" [{', '.join(flags)}]" if flags else ""),
            check.proves,
            ", ".join(check.requirements),
            ", ".join(check.needs),
        )
    return table
