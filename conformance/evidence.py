"""The evidence a run leaves in ``--out``: the files the Kubernetes AI Conformance hybrid verification asks
for (``junit.xml``, ``results.json``, ``e2e.log``) and ``report.md`` for people.

``e2e.log`` is written live by :func:`attach_log` while the run goes; the other files are written by
:func:`write_evidence` at the end, also after a failure or an interruption. JUnit XML is built with
``xml.etree`` (escaping handled by the library); a not-applicable check is a JUnit ``skipped`` whose
message starts with ``not applicable:``.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from park.conformance.context import RunContext
from park.conformance.model import DESELECTED, CheckResult, Status
from park.conformance.requirements import LOCAL_NOTE, NOT_COVERED, REQUIREMENTS, requirement_status

RESULTS_SCHEMA = "park-stack.io/conformance-results/v1"
JUNIT_FILE, RESULTS_FILE, LOG_FILE, REPORT_FILE = "junit.xml", "results.json", "e2e.log", "report.md"


def attach_log(ctx: RunContext, out_dir: Path) -> logging.Handler:
    """Send the run's log to ``out_dir/e2e.log`` from now on (UTC timestamps, one line per event)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out_dir / LOG_FILE, encoding="utf-8")
    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    ctx.log.addHandler(handler)
    return handler


@dataclass(frozen=True)
class Verdict:
    passed: bool
    counts: dict[str, int]
    interrupted: bool = False

    @property
    def word(self) -> str:
        if self.interrupted:
            return "interrupted"
        return "passed" if self.passed else "failed"


def verdict(results: list[CheckResult], interrupted: bool = False, setup_error: str | None = None) -> Verdict:
    """Passed when nothing failed, the run started and was not interrupted; not-applicable and skipped checks
    never count as passed, but they do not fail the run either (their reasons are in the report)."""
    counts = {
        status.value: 0 for status in (Status.PASSED, Status.FAILED, Status.SKIPPED, Status.NOT_APPLICABLE)
    }
    counts["deselected"] = 0
    for result in results:
        if result.reason == DESELECTED:
            counts["deselected"] += 1
        elif result.status.value in counts:
            counts[result.status.value] += 1
    return Verdict(
        passed=counts["failed"] == 0 and not interrupted and not setup_error,
        counts=counts,
        interrupted=interrupted,
    )


def layer_seconds(results: list[CheckResult]) -> dict[str, float]:
    """Seconds each layer's checks took in this run (a needed check counts in its own layer)."""
    totals: dict[str, float] = {}
    for result in results:
        if result.duration_s:
            totals[result.check.layer] = round(totals.get(result.check.layer, 0.0) + result.duration_s, 1)
    return totals


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def requirements_json(results: list[CheckResult], platform_under_test: bool) -> list[dict[str, Any]]:
    """One entry per AI-conformance requirement, shaped like the CNCF checklist's status/evidence/notes."""
    out = []
    for requirement in REQUIREMENTS:
        status, supporting = requirement_status(requirement, results, platform_under_test)
        notes = []
        if status == NOT_COVERED:
            notes.append("no check of park conformance covers this requirement; provide manual evidence")
        elif not platform_under_test:
            notes.append(LOCAL_NOTE)
        else:
            notes += [
                f"{r.name} {r.status.label}: {r.reason}" for r in supporting if r.status is not Status.PASSED
            ]
        out.append(
            {
                "id": requirement.id,
                "level": requirement.level,
                "title": requirement.title,
                "status": status,
                "checks": [r.name for r in supporting],
                "evidence": [f"file://{JUNIT_FILE}#{r.name}" for r in supporting if r.status is Status.PASSED]
                + ([f"file://{LOG_FILE}"] if supporting else []),
                "notes": "; ".join(notes),
            }
        )
    return out


def write_evidence(
    ctx: RunContext,
    out_dir: Path,
    results: list[CheckResult],
    environment: dict[str, Any],
    platform_under_test: bool,
    interrupted: bool = False,
    setup_error: str | None = None,
) -> Verdict:
    """Write junit.xml, results.json and report.md into ``out_dir``; returns the verdict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    finished_at = time.time()
    outcome = verdict(results, interrupted, setup_error)
    requirements = requirements_json(results, platform_under_test)
    document = {
        "schema": RESULTS_SCHEMA,
        "run_id": ctx.run_id,
        "target": ctx.options.target,
        "platform_under_test": platform_under_test,
        "verdict": outcome.word,
        "started_at": _iso(ctx.started_at),
        "finished_at": _iso(finished_at),
        "duration_s": round(finished_at - ctx.started_at, 3),
        "summary": outcome.counts,
        "layer_seconds": layer_seconds(results),
        "setup_error": setup_error,
        "options": {
            "stack": ctx.options.stack,
            "only": list(ctx.options.only),
            "skip": list(ctx.options.skip),
            "gpu": ctx.options.gpu,
            "model": ctx.options.model,
            "timeout_s": ctx.options.timeout_s,
            "keep": ctx.options.keep,
            "destructive": ctx.options.destructive,
            "injections": ctx.options.injections.active,
        },
        "environment": environment,
        "checks": [r.as_json() for r in results],
        "requirements": requirements,
    }
    curves = [curve for result in results if (curve := write_curve(ctx, out_dir, result))]
    document["curves"] = curves
    (out_dir / RESULTS_FILE).write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    _write_junit(ctx, out_dir / JUNIT_FILE, results, environment, finished_at)
    (out_dir / REPORT_FILE).write_text(_report(ctx, document, results), encoding="utf-8")
    return outcome


def write_curve(ctx: RunContext, out_dir: Path, result: CheckResult) -> dict[str, Any] | None:
    """A check's ``curve`` detail (the post-train reward per step) as ``<check>.csv`` and ``<check>.png``
    beside the report; None when the check has none. The plot is best effort: without matplotlib, or if it
    fails, the CSV is still written and the entry says why there is no PNG."""
    curve = (result.details or {}).get("curve")
    if not curve or not curve.get("rows"):
        return None
    written = {"check": result.name, "title": curve.get("title", result.name), "csv": f"{result.name}.csv"}
    with (out_dir / written["csv"]).open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(curve["columns"])
        writer.writerows(curve["rows"])
    try:
        _plot_curve(curve, out_dir / f"{result.name}.png")
        written["png"] = f"{result.name}.png"
    except Exception as err:  # noqa: BLE001 - a missing plot must not lose the evidence; the CSV has the data
        written["png_error"] = f"{type(err).__name__}: {err}"
        ctx.log.warning("no plot of %s's curve: %s", result.name, written["png_error"])
    return written


def _plot_curve(curve: dict[str, Any], path: Path) -> None:
    # matplotlib (the conformance extra) is imported only when a check left a curve: it takes ~1 s to
    # import, and the evidence of a run without one must not depend on it.
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on CI runners and servers
    from matplotlib import pyplot

    columns = curve["columns"]
    x = [row[columns.index(curve["x"])] for row in curve["rows"]]
    y = [row[columns.index(curve["y"])] for row in curve["rows"]]
    figure, axes = pyplot.subplots(figsize=(6.4, 3.6), dpi=100)
    try:
        axes.plot(x, y, marker="o", label=curve["y"])
        if curve.get("band") in columns:
            spread = [row[columns.index(curve["band"])] for row in curve["rows"]]
            axes.fill_between(
                x,
                [a - b for a, b in zip(y, spread)],
                [a + b for a, b in zip(y, spread)],
                alpha=0.2,
                label=f"± {curve['band']}",
            )
        if curve.get("hline"):
            axes.axhline(
                curve["hline"]["y"], color="tab:green", linestyle="--", label=curve["hline"]["label"]
            )
        if curve.get("vline"):
            axes.axvline(curve["vline"]["x"], color="tab:red", linestyle=":", label=curve["vline"]["label"])
        axes.set(title=curve.get("title", ""), xlabel=curve["x"], ylabel=curve["y"])
        axes.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        pyplot.close(figure)


def _write_junit(
    ctx: RunContext, path: Path, results: list[CheckResult], environment: dict[str, Any], finished_at: float
) -> None:
    results = [r for r in results if r.reason != DESELECTED]  # not part of this run's test set
    failures = sum(r.status is Status.FAILED for r in results)
    skipped = sum(r.status in (Status.SKIPPED, Status.NOT_APPLICABLE) for r in results)
    total_time = f"{finished_at - ctx.started_at:.3f}"
    suites = ET.Element(
        "testsuites",
        name="park-conformance",
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=total_time,
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"park-conformance.{ctx.options.target}",
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=total_time,
        timestamp=_iso(ctx.started_at) or "",
        hostname=socket.gethostname(),
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in {"run_id": ctx.run_id, "target": ctx.options.target, **environment}.items():
        ET.SubElement(
            properties,
            "property",
            name=str(key),
            value=json.dumps(value) if not isinstance(value, str) else value,
        )
    for result in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"park.conformance.{result.check.layer}",
            name=result.name,
            time=f"{result.duration_s:.3f}",
        )
        if result.status is Status.FAILED:
            failure = ET.SubElement(case, "failure", message=result.reason, type="CheckFailed")
            failure.text = f"{result.reason}\n\n{json.dumps(result.details, indent=2, default=str)}"
        elif result.status is Status.SKIPPED:
            ET.SubElement(case, "skipped", message=f"skipped: {result.reason}")
        elif result.status is Status.NOT_APPLICABLE:
            ET.SubElement(case, "skipped", message=f"not applicable: {result.reason}")
        elif result.status is Status.PASSED:
            ET.SubElement(case, "system-out").text = result.reason
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


_MARK = {
    "passed": "PASS",
    "failed": "FAIL",
    "skipped": "skip",
    "not_applicable": "n/a",
    "not_run": "not run",
    "not_covered": "not covered",
}


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _report(ctx: RunContext, document: dict[str, Any], results: list[CheckResult]) -> str:
    env = document["environment"]
    lines = [
        f"# park conformance — {document['target']} — {document['verdict'].upper()}",
        "",
        f"- run id: `{ctx.run_id}`; started {document['started_at']}, took {document['duration_s']:.0f} s",
        (
            f"- result: {document['summary']['passed']} passed, {document['summary']['failed']} failed, "
            f"{document['summary']['skipped']} skipped, "
            f"{document['summary']['not_applicable']} not applicable"
        ),
        (
            f"- host: {platform.node()} ({platform.system()} {platform.machine()}), "
            f"Python {platform.python_version()}"
        ),
    ]
    if document["layer_seconds"]:
        shares = ", ".join(f"{layer} {seconds:.0f} s" for layer, seconds in document["layer_seconds"].items())
        lines.append(f"- time per layer: {shares}")
    deselected = [r.name for r in results if r.reason == DESELECTED]
    if deselected:
        lines.append(f"- deselected by --only / --skip: {', '.join(deselected)}")
    for key in ("accelerator", "stack", "ray_version", "kubernetes_version", "api_server"):
        if env.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {env[key]}")
    if document["setup_error"]:
        lines.append(f"- **the run could not start**: {document['setup_error']}")
    if document["options"]["injections"]:
        lines.append(
            f"- **fault injection active** (test-only): {', '.join(document['options']['injections'])}"
        )
    lines += [
        "",
        (
            "Evidence beside this file: `junit.xml`, `results.json`, `e2e.log` (every step, job logs, "
            "tracebacks). How to read a failure: docs/conformance.md."
        ),
        "",
        "## Checks",
        "",
        "| layer | check | status | time | what it showed |",
        "|---|---|---|---|---|",
    ]
    for result in (r for r in results if r.reason != DESELECTED):
        lines.append(
            f"| {result.check.layer} | `{result.name}` | {_MARK[result.status.value]} | "
            f"{result.duration_s:.1f} s | {_cell(result.reason)} |"
        )
    for curve in document.get("curves", []):
        lines += ["", f"## {curve['title']} (`{curve['check']}`)", ""]
        if curve.get("png"):
            lines += [f"![{curve['title']}]({curve['png']})", ""]
        else:
            lines += [f"_no plot: {_cell(curve.get('png_error', ''))}_", ""]
        lines.append(f"Data: [{curve['csv']}]({curve['csv']}) (one row per step).")
    lines += ["", "## Kubernetes AI Conformance requirements", ""]
    if not document["platform_under_test"]:
        lines += [f"_{LOCAL_NOTE}._", ""]
    lines += ["| requirement | level | status | supported by | notes |", "|---|---|---|---|---|"]
    for requirement in document["requirements"]:
        checks = ", ".join(f"`{name}`" for name in requirement["checks"]) or "—"
        lines.append(
            f"| `{requirement['id']}` | {requirement['level']} | {_MARK[requirement['status']]} | "
            f"{checks} | {_cell(requirement['notes'])} |"
        )
    lines.append("")
    return "\n".join(lines)
