"""Fixtures every test module may share, and how `make test` spreads the suite over pytest-xdist workers.

Expensive things happen once per session: one Ray head (``ray_head``) that the Ray modules share instead of
starting one each. Under ``pytest -n N --dist loadgroup`` (the Makefile's ``test`` target) every module with a
test marked ``ray`` or ``vllm`` runs on one worker, one module after another, on that one head and without two
vLLM engines fighting over 2 cores, while the other workers take the rest of the suite a module at a time (a
module's fixtures — rendered stacks, stacks declared under mocks, the checkov scan — are then built by one
worker only, not once per worker).

The grouping is a scheduler of our own rather than ``xdist_group`` marks: pytest-xdist 3.8 applies those by
rewriting ``item._nodeid``, which pytest 9 no longer reads (``Node.nodeid`` comes from ``_id``), so the marks
have no effect there.
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from park.conformance.local_ray import LocalRayHead, RayStartError
from ray_local import HEAD_START_TIMEOUT_S, SESSION_CPUS, connected

RAY_GROUP = "ray"
"""The xdist scope of every module that has a test marked ``ray`` or ``vllm``."""

RAY_MARK = re.compile(r"\bpytest\.mark\.(?:ray|vllm)\b")


@functools.cache
def runs_ray(module: Path) -> bool:
    """Whether a test module marks any test ``ray`` or ``vllm`` (read from its source: the xdist controller
    schedules by node id and never imports the modules)."""
    return bool(RAY_MARK.search(module.read_text()))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under ``--dist loadgroup``: whole modules as work units, the Ray modules together as one."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # pytest-xdist is present: it calls this hook

    class RayModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return RAY_GROUP if runs_ray(config.rootpath / module) else module

    return RayModulesTogether(config, log)


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
