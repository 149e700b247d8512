"""Fixtures every test module may share, and how `make test` spreads the suite over pytest-xdist workers.

Expensive things happen once per session: one Ray head (``ray_head``) that the Ray modules share instead of
starting one each. Under ``pytest -n N --dist loadgroup`` (the Makefile's ``test`` target) every test marked
``ray`` or ``vllm`` joins one xdist group, so they run one after another on one worker, on that one head and
without two vLLM engines fighting over 2 cores, while the other workers take the rest of the suite a module at
a time (a module's fixtures — rendered stacks, stacks declared under mocks, the checkov scan — are then built
by one worker only, not once per worker).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from park.conformance.local_ray import LocalRayHead
from ray_local import HEAD_START_TIMEOUT_S, SESSION_CPUS, connected

RAY_GROUP = "ray"
"""The xdist group of the tests marked ``ray`` or ``vllm``; every other test's group is its module (a test or
module that names its own ``xdist_group`` keeps it)."""


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers this marker itself; registered here too so that --strict-markers passes without it
    config.addinivalue_line("markers", "xdist_group(name): tests of one group run on one xdist worker")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        heavy = item.get_closest_marker("ray") or item.get_closest_marker("vllm")
        item.add_marker(pytest.mark.xdist_group(RAY_GROUP if heavy else item.path.stem))


@pytest.fixture(scope="session")
def ray_head():
    """The session's Ray head (``ray start --head``, free ports, its own short temp dir), started on first
    use and stopped at the end; fails the session's teardown if any of its processes outlive it."""
    scratch = Path(tempfile.mkdtemp(prefix="pt-ray-", dir="/tmp"))  # short: Ray's socket paths live under it
    head = LocalRayHead(temp_dir=scratch / "ray", num_cpus=SESSION_CPUS)
    try:
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
