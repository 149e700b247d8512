"""The rules of the conformance runner and its evidence, with a target whose checks are small functions.

The target here is a stand-in on purpose: these tests are about what the runner makes of outcomes (not
applicable is never passed, destructive needs opt-in, a failed need skips its dependants, a hang becomes a
timeout failure, a crash becomes a failure with its message) and about the evidence files, not about any
real check. The real checks run in test_conformance_local.py and against recorded API responses in
test_conformance_kube.py.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from park.conformance.checks import BY_NAME, SelectionError, select
from park.conformance.context import RunContext, RunOptions, workdir_prefix
from park.conformance.evidence import write_evidence
from park.conformance.model import Check, CheckFailed, NotApplicable, Passed, Status
from park.conformance.requirements import REQUIREMENT_IDS
from park.conformance.runner import Runner


class TableTarget:
    """Check name -> function; everything else not applicable."""

    name = "table"
    platform_under_test = True

    def __init__(self, functions):
        self.functions = functions

    def implementation(self, check: Check):
        return self.functions.get(check.name)

    def not_applicable_reason(self, check: Check) -> str:
        return "not in this table"

    def describe(self) -> dict:
        return {"table": sorted(self.functions)}


def run(functions, only=None, **options):
    ctx = RunContext(RunOptions(target="kubernetes", **options))
    runner = Runner(ctx, TableTarget(functions), select(only))
    results = {r.name: r for r in runner.run_all()}
    ctx.close()
    return ctx, runner, results


def passes(summary="ok"):
    return lambda ctx: Passed(summary)


def test_selection_by_layer_and_name_pulls_in_needed_checks():
    selection = select(["workloads.train"])
    assert [c.name for c in selection.checks] == [
        "operators.ray-head",
        "operators.kuberay",
        "operators.kueue",
        "workloads.train",
    ]
    assert selection.dependencies == {"operators.ray-head", "operators.kuberay", "operators.kueue"}
    skipped = select(["scheduling,workloads"], ["scheduling.preemption"])
    assert "scheduling.preemption" in skipped.deselected and "workloads.serve" not in skipped.deselected
    with pytest.raises(SelectionError, match="'workload': not a layer or check; layers: infrastructure"):
        select(["workload"])


def test_not_applicable_is_never_passed_and_does_not_fail_the_run():
    _, _, results = run({"operators.kueue": passes()}, only=["operators"])
    assert results["operators.kueue"].status is Status.PASSED
    assert results["operators.kuberay"].status is Status.NOT_APPLICABLE
    assert results["operators.kuberay"].reason == "not in this table"
    assert results["workloads.train"].status is Status.SKIPPED  # deselected


def test_a_failed_need_skips_its_dependants_naming_it():
    def broken(ctx):
        raise CheckFailed("controller not available")

    _, _, results = run(
        {"operators.kueue": broken, "scheduling.queue-admission": passes()},
        only=["scheduling.queue-admission"],
    )
    assert results["scheduling.queue-admission"].status is Status.SKIPPED
    assert results["scheduling.queue-admission"].reason == (
        "needs operators.kueue, which failed: controller not available"
    )


def test_destructive_checks_need_the_opt_in():
    functions = {"operators.kueue": passes(), "scheduling.preemption": passes("preempted")}
    _, _, without = run(functions, only=["scheduling.preemption"])
    assert without["scheduling.preemption"].status is Status.SKIPPED
    assert "--destructive" in without["scheduling.preemption"].reason
    _, _, opted_in = run(functions, only=["scheduling.preemption"], destructive=True)
    assert opted_in["scheduling.preemption"].status is Status.PASSED


def test_gpu_off_makes_gpu_checks_not_applicable_and_checks_may_say_so_themselves():
    def no_gpu_pool(ctx):
        raise NotApplicable("the stack has no GPU pool")

    _, _, off = run({"accelerators.gpu-visible": passes()}, only=["accelerators.gpu-visible"], gpu="off")
    assert off["accelerators.gpu-visible"].status is Status.NOT_APPLICABLE
    assert "--gpu off" in off["accelerators.gpu-visible"].reason
    _, _, cpu_stack = run({"accelerators.gpu-visible": no_gpu_pool}, only=["accelerators.gpu-visible"])
    assert cpu_stack["accelerators.gpu-visible"].reason == "the stack has no GPU pool"


def test_a_crash_is_a_failure_with_its_message_and_a_hang_is_a_timeout(monkeypatch):
    def crash(ctx):
        raise ZeroDivisionError("division by zero")

    def hang(ctx):
        time.sleep(30)

    import park.conformance.runner as runner_module

    short = Check("operators.kuberay", "hangs in this test", timeout_s=0.5)
    monkeypatch.setattr(
        runner_module, "CHECKS", tuple(short if c.name == short.name else c for c in runner_module.CHECKS)
    )
    started = time.monotonic()
    _, _, results = run({"operators.kueue": crash, "operators.kuberay": hang}, only=["operators"])
    assert time.monotonic() - started < 10
    assert results["operators.kueue"].status is Status.FAILED
    assert results["operators.kueue"].reason == (
        "unexpected ZeroDivisionError: division by zero (traceback in e2e.log)"
    )
    assert results["operators.kuberay"].status is Status.FAILED
    assert results["operators.kuberay"].reason.startswith("did not finish within 0.5 s")


def test_the_run_budget_fails_checks_it_cannot_start():
    def slow(ctx):
        time.sleep(1.2)
        return Passed("slow but fine")

    _, _, results = run(
        {"operators.kuberay": slow, "operators.kueue": passes()}, only=["operators"], timeout_s=1.0
    )
    assert results["operators.kuberay"].status is Status.FAILED  # cut at the budget
    assert results["operators.kueue"].status is Status.FAILED
    assert "--timeout of 1 s was used up" in results["operators.kueue"].reason


def test_evidence_files_are_well_formed_and_map_requirements(tmp_path: Path):
    def broken(ctx):
        raise CheckFailed("Ready nodes: 0 of 2 in pool cpu")

    ctx, runner, _ = run(
        {
            "operators.kueue": passes("kueue fine"),
            "scheduling.gang-admission": passes("gang ok"),
            "operators.kuberay": passes(),
            "infrastructure.nodes": broken,
        },
        only=["operators", "scheduling.gang-admission", "infrastructure.nodes"],
    )
    verdict = write_evidence(
        ctx, tmp_path, runner.ordered_results(), {"api_server": "https://x"}, platform_under_test=True
    )
    assert not verdict.passed and verdict.counts["failed"] == 1

    suite = ET.parse(tmp_path / "junit.xml").getroot()
    selected = len(select(["operators", "scheduling.gang-admission", "infrastructure.nodes"]).checks)
    assert suite.tag == "testsuites" and suite.get("failures") == "1"
    assert int(suite.get("tests")) == selected < len(BY_NAME)  # deselected checks are no test of this run
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["infrastructure.nodes"].find("failure").get("message") == "Ready nodes: 0 of 2 in pool cpu"
    assert cases["operators.ray-head"].find("skipped").get("message").startswith("not applicable:")
    assert cases["scheduling.gang-admission"].find("system-out").text == "gang ok"

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["verdict"] == "failed" and results["summary"]["failed"] == 1
    requirements = {r["id"]: r for r in results["requirements"]}
    assert set(requirements) == set(REQUIREMENT_IDS)
    assert requirements["gang_scheduling"]["status"] == "passed"  # kueue + gang passed, the rest skipped
    assert "file://junit.xml#scheduling.gang-admission" in requirements["gang_scheduling"]["evidence"]
    assert requirements["pod_autoscaling"]["status"] == "not_covered"
    assert requirements["ai_inference"]["status"] == "not_run"  # workloads.serve deselected
    assert results["summary"]["deselected"] == len(BY_NAME) - selected

    report = (tmp_path / "report.md").read_text()
    assert "| infrastructure | `infrastructure.nodes` | FAIL |" in report
    assert "| `gang_scheduling` | MUST | PASS |" in report


def test_local_results_are_not_ai_conformance_evidence(tmp_path: Path):
    ctx, runner, _ = run({"workloads.serve": passes("answered")}, only=["workloads.serve"])
    write_evidence(ctx, tmp_path, runner.ordered_results(), {}, platform_under_test=False)
    requirements = {r["id"]: r for r in json.loads((tmp_path / "results.json").read_text())["requirements"]}
    assert requirements["ai_inference"]["status"] == "not_applicable"
    assert "not AI-conformance evidence" in requirements["ai_inference"]["notes"]


def test_cleanup_runs_newest_first_once_and_keep_leaves_everything():
    done: list[str] = []
    ctx = RunContext(RunOptions())
    ctx.on_cleanup("first", lambda: done.append("first"))
    ctx.on_cleanup("second", lambda: done.append("second"))
    ctx.on_cleanup("broken", lambda: 1 / 0)
    ctx.close()
    ctx.close()
    assert done == ["second", "first"]
    kept = RunContext(RunOptions(keep=True))
    folder = kept.workdir
    kept.on_cleanup("x", lambda: done.append("x"))
    kept.close()
    assert folder.is_dir() and done == ["second", "first"]
    folder.rmdir()


def test_run_ids_are_unique_and_name_everything():
    ids = {RunContext(RunOptions()).run_id for _ in range(50)}
    assert len(ids) == 50
    ctx = RunContext(RunOptions())
    assert ctx.name == f"park-conf-{ctx.run_id}"
    assert ctx.workdir.name.startswith(workdir_prefix(ctx.run_id)), "the scratch folder names the run"
    ctx.close()
    assert not ctx.workdir.exists()


def test_the_guide_describes_every_check_and_requirement():
    guide = (Path(__file__).parents[1] / "docs" / "conformance.md").read_text()
    missing = [
        name for name in [*BY_NAME, *REQUIREMENT_IDS] if f"`{name}`" not in guide and name not in guide
    ]
    assert not missing, f"docs/conformance.md does not mention {missing}"


def test_an_unknown_team_or_priority_stops_the_run_before_it_starts_naming_the_known_ones(tmp_path: Path):
    from park.conformance import session

    outcome = session.run(
        RunOptions(target="local", team="reserch", priority="urgent", out_dir=tmp_path / "local")
    )
    assert outcome.exit_code == session.EXIT_USAGE
    assert outcome.setup_error == (
        "--team 'reserch' is not a team of the stack; known: research, serving; --priority 'urgent' is not "
        "a priority class of the stack; known: high, normal, low (stack kind)"
    )
    # on clusters too, and before any kubeconfig is read: the absent one below is never reached
    outcome = session.run(
        RunOptions(
            target="kubernetes",
            stack="aws",
            team="serve",
            kubeconfig=str(tmp_path / "absent"),
            out_dir=tmp_path / "kube",
        )
    )
    assert outcome.exit_code == session.EXIT_USAGE
    assert (
        outcome.setup_error
        == "--team 'serve' is not a team of the stack; known: research, serving (stack aws)"
    )


def test_park_conformance_takes_team_and_priority_and_refuses_unknown_ones_with_exit_2(tmp_path: Path):
    from typer.testing import CliRunner

    from park.cli import app

    result = CliRunner().invoke(
        app, ["conformance", "--team", "ops", "--priority", "high", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "--team 'ops' is not a team of the stack; known: research, serving" in result.output
    assert "Traceback" not in result.output
