"""The pytest form of the suite: ``pytest conformance/`` runs the same checks as ``park conformance``.

One run context and one target serve the whole session (one Ray head, or one cluster connection); each
check is a parametrized test (conformance/test_checks.py) that asks the shared runner for its result, so
a check needed by several others runs once. Options mirror the command's::

    pytest conformance/ --target kubernetes --stack aws --kubeconfig ~/.kube/config
    pytest conformance/ -m "not destructive" -k workloads

Markers: ``gpu`` (needs an NVIDIA GPU), ``destructive`` (preempts workloads or adds paid nodes; runs only
with ``--destructive``), ``cloud`` (needs a live cluster). A check that is not applicable on the target, or
skipped, is reported as a pytest skip with its reason; only a passed check passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from park.conformance.checks import select
from park.conformance.context import RunContext, RunOptions
from park.conformance.evidence import attach_log, write_evidence
from park.conformance.runner import Runner
from park.conformance.session import SetupError, announce_plan, build_target


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("park-conformance", "park conformance suite")
    group.addoption("--target", dest="conformance_target", default="local", choices=("local", "kubernetes"))
    group.addoption(
        "--stack",
        dest="conformance_stack",
        default=None,
        help="stack name under stacks/ or a Pulumi.<stack>.yaml (local default: kind)",
    )
    group.addoption("--kubeconfig", dest="conformance_kubeconfig", default=None)
    group.addoption("--context", dest="conformance_context", default=None)
    group.addoption("--gpu", dest="conformance_gpu", default="auto", choices=("auto", "require", "off"))
    group.addoption("--model", dest="conformance_model", default=None, help="model folder to serve")
    group.addoption("--team", dest="conformance_team", default=None, help="team of every workload and probe")
    group.addoption(
        "--priority", dest="conformance_priority", default=None, help="priority of every workload"
    )
    group.addoption(
        "--destructive",
        dest="conformance_destructive",
        action="store_true",
        help="also run checks that preempt workloads or add paid nodes",
    )
    group.addoption("--conformance-timeout", dest="conformance_timeout", type=float, default=1800.0)
    group.addoption(
        "--evidence",
        dest="conformance_evidence",
        default=None,
        help="write junit.xml, results.json, e2e.log and report.md of the checks run here",
    )


def pytest_configure(config: pytest.Config) -> None:
    for marker in (
        "gpu: needs an NVIDIA GPU",
        "destructive: deletes or preempts workloads on the target cluster",
        "cloud: needs a live cloud Kubernetes cluster",
    ):
        config.addinivalue_line("markers", marker)


@pytest.fixture(scope="session")
def conformance_runner(request: pytest.FixtureRequest):
    """The session's runner: one context, one target, every check available; cleanup (and evidence, with
    --evidence DIR) at the end."""
    option = request.config.getoption
    options = RunOptions(
        target=option("conformance_target"),
        stack=option("conformance_stack"),
        kubeconfig=option("conformance_kubeconfig"),
        context=option("conformance_context"),
        gpu=option("conformance_gpu"),
        model=option("conformance_model"),
        team=option("conformance_team"),
        priority=option("conformance_priority"),
        destructive=option("conformance_destructive"),
        timeout_s=option("conformance_timeout"),
    )
    ctx = RunContext(options)
    evidence = Path(option("conformance_evidence")) if option("conformance_evidence") else None
    handler = attach_log(ctx, evidence) if evidence else None
    try:
        try:
            target = build_target(ctx)
        except SetupError as err:
            pytest.skip(f"no {options.target} target to check: {err}")
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")

        def say(plan) -> None:  # the whole suite's plan: pools it scales and their $/h, before any check
            for line in plan.announcement() if reporter else ():
                reporter.write_line(line)

        announce_plan(ctx, target, select(), say)
        runner = Runner(ctx, target, select())
        yield runner
        if evidence:
            results = [r for r in runner.ordered_results() if r.status.finished]
            write_evidence(
                ctx, evidence, results, target.describe(), platform_under_test=target.platform_under_test
            )
    finally:
        ctx.close()
        if handler:
            ctx.log.removeHandler(handler)
            handler.close()
