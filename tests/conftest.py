"""Fixtures every test module may share, and how `make test` spreads the suite over pytest-xdist workers.

Expensive things happen once per session: one Ray head (``ray_head``) that the modules taking it (directly or
through ``local_ray``) share instead of starting one each. Under ``pytest -n N --dist loadgroup`` (the
Makefile's ``test`` target) work goes out a module at a time (a module's fixtures — rendered stacks, stacks
declared under mocks, the checkov scan — are then built by one worker only, not once per worker), with two
rules of our own:

- every module that takes the session's head is one work unit, so one worker starts one head for all of them
  (a head per worker would cost a head start, 10-30 s, and its idle processes on each worker);
- the units that run Ray or vLLM (marked ``ray`` / ``vllm``) go out first, longest-first scheduling: the
  session-head unit and ``park conformance``'s own runs (test_conformance_local, which start heads of their
  own) then overlap on the two workers while the quick modules fill in around them, instead of one Ray unit
  running alone, on one busy core, after everything else has finished.

The grouping is a scheduler of our own rather than ``xdist_group`` marks: pytest-xdist 3.8 applies those by
rewriting ``item._nodeid``, which pytest 9 no longer reads (``Node.nodeid`` comes from ``_id``), so the marks
have no effect there.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from park.conformance.local_ray import LocalRayHead, RayStartError
from ray_local import HEAD_START_TIMEOUT_S, RAY_TEST_ENV, SESSION_CPUS, connected

os.environ.update(RAY_TEST_ENV)  # before any test touches Ray: see RAY_TEST_ENV

SESSION_HEAD_GROUP = "ray-session-head"
"""The xdist work unit of every module that takes the session's Ray head."""

RAY_MARK = re.compile(r"\bpytest\.mark\.(?:ray|vllm)\b")
SESSION_HEAD_FIXTURE = re.compile(r"def \w+\([^)]*\b(?:local_ray|ray_head)\b")


@functools.cache
def runs_ray(module: Path) -> bool:
    """Whether a test module marks any test ``ray`` or ``vllm`` (read from its source: the xdist controller
    schedules by node id and never imports the modules)."""
    return bool(RAY_MARK.search(module.read_text()))


@functools.cache
def uses_session_head(module: Path) -> bool:
    """Whether a test or fixture of the module takes ``ray_head`` or ``local_ray`` (read from its source)."""
    return bool(SESSION_HEAD_FIXTURE.search(module.read_text()))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under ``--dist loadgroup``: whole modules as work units, the session-head modules together as one, the
    Ray and vLLM units handed out first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # pytest-xdist is present: it calls this hook

    root = config.rootpath

    def module_of(nodeid: str) -> Path:
        return root / nodeid.split("::", 1)[0]

    class SessionHeadTogetherRayFirst(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = module_of(nodeid)
            return SESSION_HEAD_GROUP if uses_session_head(module) else nodeid.split("::", 1)[0]

        def _assign_work_unit(self, node) -> None:
            slow = [scope for scope, unit in self.workqueue.items() if runs_ray(module_of(next(iter(unit))))]
            if slow:
                self.workqueue.move_to_end(slow[0], last=False)  # the unit the base class pops next
            super()._assign_work_unit(node)

    return SessionHeadTogetherRayFirst(config, log)


@pytest.fixture(scope="session")
def ray_head():
    """The session's Ray head (``ray start --head``, free ports, its own short temp dir), started on first
    use and stopped at the end; fails the session's teardown if any of its processes outlive it."""
    scratch = Path(tempfile.mkdtemp(prefix="pt-ray-", dir="/tmp"))  # short: Ray's socket paths live under it
    head = LocalRayHead(temp_dir=scratch / "ray", num_cpus=SESSION_CPUS)
    try:
        try:
            head.start(timeout_s=HEAD_START_TIMEOUT_S)
        except RayStartError:
            # `ray start` gives its raylet a fixed 30 s to register (ray/_private/node.py), which an overloaded
            # machine can miss; the local conformance target's ray-head check is where a start failure counts
            head.stop()
            head.start(timeout_s=HEAD_START_TIMEOUT_S)
        yield head
    finally:
        left = head.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    assert left == [], f"processes of the session's Ray head still running: {left}"


@pytest.fixture(scope="module")
def local_ray(ray_head):
    """A driver in this process connected to the session's head for the module; yields its GCS address."""
    with connected(ray_head) as address:
        yield address
