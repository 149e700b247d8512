"""What a person watching a run sees: one live line per check with its state and elapsed time (rich), then
a summary table. Off a terminal (CI logs, tests) the live view is replaced by one printed line per finished
check, so logs stay readable."""

from __future__ import annotations

import time
from typing import Self

from park.conformance.model import DESELECTED, CheckResult, Status
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

STYLE = {
    Status.PENDING: "dim",
    Status.RUNNING: "bold cyan",
    Status.PASSED: "bold green",
    Status.FAILED: "bold red",
    Status.SKIPPED: "yellow",
    Status.NOT_APPLICABLE: "dim",
}


def _elapsed(result: CheckResult) -> str:
    if result.status is Status.RUNNING and result.started_at is not None:
        return f"{time.time() - result.started_at:5.1f} s"
    if result.status.finished and result.duration_s:
        return f"{result.duration_s:5.1f} s"
    return ""


def status_text(status: Status) -> Text:
    return Text(status.label, style=STYLE[status])


class Progress:
    """Listener for :class:`~park.conformance.runner.Runner` that draws the live view."""

    def __init__(self, console: Console, results: list[CheckResult], title: str):
        self.console = console
        self.results = results
        self.title = title
        self._ran: set[str] = set()
        self.live: Live | None = None
        if console.is_terminal:
            self.live = Live(
                self._render(),
                console=console,
                refresh_per_second=4,
                transient=False,
                get_renderable=self._render,
            )

    def _render(self) -> Group:
        table = Table(box=None, show_header=False, pad_edge=False, expand=False)
        table.add_column("state", width=15)
        table.add_column("check", min_width=36)
        table.add_column("time", justify="right", width=8)
        for result in self.results:
            if result.reason == DESELECTED:
                continue
            table.add_row(status_text(result.status), Text(result.name), _elapsed(result))
        return Group(Text(self.title, style="bold"), table)

    def __enter__(self) -> Self:
        if self.live is not None:
            self.live.__enter__()
        else:
            self.console.print(self.title)
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def started(self, result: CheckResult) -> None:
        self._ran.add(result.name)
        if self.live is None:
            self.console.print(f"  running  {result.name} ...", highlight=False)

    def finished(self, result: CheckResult) -> None:
        # Off a terminal, checks that never started (deselected, not applicable here) are left to the summary.
        if self.live is None and result.name in self._ran:
            line = Text("  ")
            line.append_text(status_text(result.status))
            line.append(f"  {result.name}  ({result.duration_s:.1f} s)")
            self.console.print(line, highlight=False)


def summary_table(results: list[CheckResult]) -> Group:
    """One row per check that ran or was skipped; not-applicable checks sharing a reason are folded into one
    line below the table (on the local target that is most of the cluster checks)."""
    table = Table(title="park conformance — summary", show_lines=False, expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("what it showed / why not", overflow="fold")
    not_applicable: dict[str, list[str]] = {}
    for result in results:
        if result.reason == DESELECTED:
            continue
        if result.status is Status.NOT_APPLICABLE and result.duration_s == 0:
            not_applicable.setdefault(result.reason, []).append(result.name)
            continue
        table.add_row(
            Text(result.name),
            status_text(result.status),
            f"{result.duration_s:.1f} s" if result.duration_s else "",
            Text(result.reason),  # plain text: reasons quote logs, which may hold [brackets]
        )
    notes = [
        Text(f"not applicable ({len(names)}): {', '.join(names)} — {reason}", style="dim")
        for reason, names in not_applicable.items()
    ]
    return Group(table, *notes)
