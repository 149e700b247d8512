"""One conformance run from options to evidence, shared by ``park conformance`` and the pytest form.

Order of events: make the run context and ``--out`` (e2e.log is written live from here on), build the
target, run the selected checks, write junit.xml / results.json / report.md, then clean up. Evidence is
written before cleanup and in a ``finally``, so a failed or interrupted run still leaves it; cleanup runs
after it, once, also from ``atexit`` if the process is leaving some other way. SIGTERM is turned into the
same path as Ctrl-C.
"""

from __future__ import annotations

import atexit
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from park.components.spec import SpecError
from park.conformance.checks import CHECKS, Selection, select
from park.conformance.context import OverrideError, RunContext, RunOptions, check_overrides
from park.conformance.evidence import Verdict, attach_log, write_evidence
from park.conformance.kube import TargetUnavailable
from park.conformance.local import LocalSetupError, load_local_spec
from park.conformance.model import DESELECTED, CheckResult, Status
from park.conformance.runner import Interrupted, Listener, Runner, Target
from park.conformance.targets import KubernetesTarget, LocalTarget

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class SetupError(ValueError):
    """The run cannot start (bad --stack for the target, no cluster reachable); the message says why."""


def build_target(ctx: RunContext) -> Target:
    """The target named by the options; raises SetupError with an actionable message."""
    try:
        if ctx.options.target == "local":
            try:
                spec, path = load_local_spec(ctx.options.stack)
            except LocalSetupError as err:
                raise SetupError(str(err)) from None
            check_overrides(ctx.options, spec)
            return LocalTarget(ctx, spec, path)
        try:
            return KubernetesTarget.connect(ctx)
        except TargetUnavailable as err:
            raise SetupError(str(err)) from None
    except SpecError as err:
        raise SetupError(f"--stack {ctx.options.stack}: {err}") from None
    except OverrideError as err:
        raise SetupError(f"{err} (stack {ctx.options.stack or 'kind'})") from None


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (CI cancelling a job, ``kill``) and SIGINT raise KeyboardInterrupt like
    Ctrl-C in a terminal. SIGINT is set explicitly too, so a run does not depend on the disposition it
    inherited: Python leaves SIGINT ignored in a process that starts with it ignored (background jobs of a
    non-interactive shell start that way)."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, earlier in previous.items():
            signal.signal(signum, earlier)


@dataclass
class RunOutcome:
    ctx: RunContext
    out_dir: Path
    results: list[CheckResult]
    verdict: Verdict
    exit_code: int
    verdict_s: float
    """Seconds from start to the last check's verdict (before cleanup)."""
    cleanup_s: float = 0.0
    setup_error: str | None = None
    facts: dict = field(default_factory=dict)


def default_out_dir(ctx: RunContext) -> Path:
    return Path.cwd() / f"conformance-{ctx.run_id}"


def run(
    options: RunOptions, listener_factory=None, selection: Selection | None = None, on_plan=None
) -> RunOutcome:
    """Run the suite; never raises for a failing check, a setup error or Ctrl-C (see ``exit_code``).

    ``listener_factory(results) -> context manager + Listener`` draws progress (the CLI passes rich's).
    ``on_plan(plan)`` is called before the first check on a cluster with the
    :class:`~park.conformance.plan.Plan` (pools the run scales, their $/h); it also goes to e2e.log.
    """
    selection = selection or select(list(options.only), list(options.skip))
    ctx = RunContext(options)
    out_dir = options.out_dir or default_out_dir(ctx)
    handler = attach_log(ctx, out_dir)
    atexit.register(ctx.close)
    ctx.log.info("park conformance run %s: target %s, options %s", ctx.run_id, options.target, options)
    target: Target | None = None
    runner: Runner | None = None
    setup_error: str | None = None
    interrupted = False
    try:
        with signals_as_interrupt():
            try:
                target = build_target(ctx)
                announce_plan(ctx, target, selection, on_plan)
                runner = Runner(ctx, target, selection)
                listener = listener_factory(runner.ordered_results()) if listener_factory else None
                if listener is not None:
                    runner.listener = listener
                    with listener:
                        runner.run_all()
                else:
                    runner.run_all()
            except SetupError as err:
                setup_error = str(err)
                ctx.log.error("setup failed: %s", err)
            except (Interrupted, KeyboardInterrupt):
                interrupted = True
                ctx.log.warning("run interrupted; writing evidence and cleaning up")
    finally:
        results = (
            runner.ordered_results() if runner else _unrun(selection, setup_error or "the run did not start")
        )
        verdict_s = time.time() - ctx.started_at
        environment = _describe(target, ctx)
        if setup_error:
            environment["setup_error"] = setup_error
        verdict = write_evidence(
            ctx,
            out_dir,
            results,
            environment,
            platform_under_test=bool(target and target.platform_under_test),
            interrupted=interrupted,
            setup_error=setup_error,
        )
        cleanup_started = time.time()
        _close_quietly(ctx)
        cleanup_s = time.time() - cleanup_started
        ctx.log.info("verdict %s after %.1f s; cleanup took %.1f s", verdict.word, verdict_s, cleanup_s)
        ctx.log.removeHandler(handler)
        handler.close()
        atexit.unregister(ctx.close)
    if interrupted:
        code = EXIT_INTERRUPTED
    elif setup_error:
        code = EXIT_USAGE
    else:
        code = EXIT_PASSED if verdict.passed else EXIT_FAILED
    return RunOutcome(
        ctx, out_dir, results, verdict, code, verdict_s, cleanup_s, setup_error, dict(environment)
    )


def announce_plan(ctx: RunContext, target: Target, selection: Selection, on_plan) -> None:
    """Say before the first check which pools a cluster run scales and what that costs per hour. A plan that
    cannot be made is logged, never a reason not to run."""
    if not isinstance(target, KubernetesTarget):
        return
    from park.conformance.plan import build_plan  # imports the kubernetes client (conformance extra)

    try:
        plan = build_plan(target, selection)
    except Exception as err:  # noqa: BLE001 - the estimate must not stop the run
        ctx.log.warning("could not plan the run's scale-up: %s", err)
        return
    ctx.facts.update(plan.facts())
    ctx.log.info("plan:\n%s", "\n".join(f"    | {line}" for line in plan.lines()))
    if on_plan is not None:
        on_plan(plan)


def _close_quietly(ctx: RunContext) -> None:
    """Clean up; Ctrl-C and SIGTERM during the few seconds this takes are ignored, so nothing is left
    half-done
    (a second Ctrl-C is the usual reflex while a run winds down)."""
    if threading.current_thread() is not threading.main_thread():
        ctx.close()
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        ctx.close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _describe(target: Target | None, ctx: RunContext) -> dict:
    if target is None:
        return dict(ctx.facts)
    try:
        return target.describe()
    except Exception as err:  # noqa: BLE001 - the evidence must still be written
        ctx.log.warning("could not describe the target: %s", err)
        return dict(ctx.facts)


def _unrun(selection: Selection, reason: str) -> list[CheckResult]:
    results = []
    for check in CHECKS:
        result = CheckResult(check, status=Status.SKIPPED)
        result.reason = DESELECTED if check.name in selection.deselected else f"not run: {reason}"
        results.append(result)
    return results


__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_PASSED",
    "EXIT_USAGE",
    "Listener",
    "RunOutcome",
    "SetupError",
    "announce_plan",
    "build_target",
    "run",
]
