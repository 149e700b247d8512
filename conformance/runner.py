"""Runs selected checks against a target, in order, each within its time limit, and records the outcome.

The runner owns the rules that make a report honest: a check the target does not implement is *not
applicable* (never passed); a destructive check without ``--destructive`` is *skipped* with the option to
add; a check whose needed check failed is *skipped* naming it; an unexpected exception is a *failure* whose
reason is the error message (the traceback goes to e2e.log, not to the person reading the summary).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Protocol

from park.conformance.checks import BY_NAME, CHECKS, Selection
from park.conformance.context import RunContext
from park.conformance.model import DESELECTED, Check, CheckOutcome, CheckResult, Passed, Status

CheckFunction = Callable[[RunContext], Passed]


class Target(Protocol):
    name: str
    platform_under_test: bool
    """True where the target is a Kubernetes platform whose AI conformance the results are evidence for."""

    def implementation(self, check: Check) -> CheckFunction | None:
        """The function proving ``check`` on this target, or None when it does not apply here."""
        ...

    def not_applicable_reason(self, check: Check) -> str: ...

    def describe(self) -> dict:
        """Facts about the target for the evidence (versions, addresses, GPU fallback)."""
        ...


class Listener(Protocol):
    def started(self, result: CheckResult) -> None: ...

    def finished(self, result: CheckResult) -> None: ...


class _Quiet:
    def started(self, result: CheckResult) -> None:
        pass

    def finished(self, result: CheckResult) -> None:
        pass


class Interrupted(Exception):
    """The run was stopped by Ctrl-C or SIGTERM; what ran so far is still reported."""


class Runner:
    def __init__(
        self, ctx: RunContext, target: Target, selection: Selection, listener: Listener | None = None
    ):
        self.ctx = ctx
        self.target = target
        self.listener = listener or _Quiet()
        self.results: dict[str, CheckResult] = {}
        for check in CHECKS:  # the whole suite, in run order, so the report shows what was left out
            result = CheckResult(check, selected_as_dependency=check.name in selection.dependencies)
            if check.name in selection.deselected:
                result.status = Status.SKIPPED
                result.reason = DESELECTED
            self.results[check.name] = result
        self.interrupted = False

    def ordered_results(self) -> list[CheckResult]:
        return list(self.results.values())

    def run_all(self) -> list[CheckResult]:
        """Run every selected check; on interruption the rest are marked skipped and Interrupted re-raised."""
        try:
            for name in list(self.results):
                self.run(name)
        except (KeyboardInterrupt, Interrupted):
            self.interrupted = True
            for result in self.results.values():
                if not result.status.finished:
                    self._finish(
                        result, Status.SKIPPED, "not run: the run was interrupted (Ctrl-C / SIGTERM)"
                    )
            raise Interrupted() from None
        return self.ordered_results()

    def run(self, name: str) -> CheckResult:
        """Run one check (and, first, the checks it needs); a check already run is not run again."""
        result = self.results.get(name)
        if result is None:  # asked for directly (pytest form) while not selected: add it
            result = self.results[name] = CheckResult(BY_NAME[name])
        if result.status.finished or result.status is Status.RUNNING:
            return result
        check = result.check
        verdict = self._precondition(check)
        if verdict is not None:
            self._finish(result, *verdict)
            return result
        self._execute(result)
        return result

    def _precondition(self, check: Check) -> tuple[Status, str] | None:
        """Why the check does not run at all, or None when it should run."""
        if self.target.implementation(check) is None:
            return Status.NOT_APPLICABLE, self.target.not_applicable_reason(check)
        if check.gpu and self.ctx.options.gpu == "off":
            return Status.NOT_APPLICABLE, "needs a GPU and the run was started with --gpu off"
        if check.destructive and not self.ctx.options.destructive:
            return Status.SKIPPED, (
                "destructive (it preempts workloads or adds paid nodes); rerun with "
                "--destructive on a cluster where that is acceptable"
            )
        for need in check.needs:
            needed = self.run(need)
            if needed.status in (Status.FAILED, Status.SKIPPED):
                return Status.SKIPPED, f"needs {need}, which {needed.status.label}: {needed.reason}"
        remaining = self.ctx.remaining_s()
        if remaining <= 0:
            return Status.FAILED, (
                f"not started: the run's --timeout of {_seconds(self.ctx.options.timeout_s)} s "
                "was used up by the checks before it; raise --timeout"
            )
        return None

    def _execute(self, result: CheckResult) -> None:
        check = result.check
        function = self.target.implementation(check)
        assert function is not None
        limit = min(check.timeout_s, self.ctx.remaining_s())
        result.status = Status.RUNNING
        result.started_at = time.time()
        self.ctx.log.info("=== %s: started (limit %.0f s) — proves that %s", check.name, limit, check.proves)
        self.listener.started(result)
        outcome: dict[str, object] = {}

        def body() -> None:
            try:
                outcome["value"] = function(self.ctx)
            except BaseException as err:  # noqa: BLE001 - carried back to the main thread
                outcome["error"] = err
                outcome["traceback"] = traceback.format_exc()

        worker = threading.Thread(target=body, name=f"check-{check.name}", daemon=True)
        worker.start()
        try:
            # The main thread waits in short steps so Ctrl-C is handled at once.
            while worker.is_alive() and time.time() - result.started_at < limit:
                worker.join(timeout=0.2)
        except KeyboardInterrupt:
            self._finish(result, Status.FAILED, "interrupted (Ctrl-C / SIGTERM) while running")
            raise
        if worker.is_alive():
            self._finish(
                result,
                Status.FAILED,
                f"did not finish within {_seconds(limit)} s; the last steps it took "
                f"are in e2e.log (raise --timeout if the target is just slow)",
            )
            return
        error = outcome.get("error")
        if error is None:
            passed = outcome.get("value")
            if not isinstance(passed, Passed):
                self._finish(result, Status.FAILED, f"internal: check returned {passed!r}, not a Passed")
                return
            result.details.update(passed.details)
            self._finish(result, Status.PASSED, passed.summary)
        elif isinstance(error, CheckOutcome):
            result.details.update(error.details)
            self._finish(result, error.status, error.reason)
        elif isinstance(error, KeyboardInterrupt):
            self._finish(result, Status.FAILED, "interrupted (Ctrl-C / SIGTERM) while running")
            raise error
        else:
            self.ctx.log.error("%s raised:\n%s", check.name, outcome.get("traceback"))
            self._finish(
                result, Status.FAILED, f"unexpected {type(error).__name__}: {error} (traceback in e2e.log)"
            )

    def _finish(self, result: CheckResult, status: Status, reason: str) -> None:
        if result.started_at is None:
            result.started_at = time.time()
        else:
            result.duration_s = time.time() - result.started_at
        result.status = status
        result.reason = reason
        self.ctx.log.info("--- %s: %s in %.1f s: %s", result.name, status.label, result.duration_s, reason)
        self.listener.finished(result)


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")
