"""One Ray head for the whole test session, and a driver in this process connected to it per test module.

The head is ``ray start --head`` as the local conformance target starts it (``LocalRayHead``): free ports, a
short temp dir of its own, and a stop that signals exactly the processes it started. Modules that run a
workload in this process (train, batch, serve) connect a driver for their lifetime; modules that use the
head's Jobs or Serve REST API talk to its dashboard. One head instead of one per module saves a head start
and stop (10-30 s on 2 cores) per module (issue 8). The fixtures are in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from park.conformance.local_ray import LocalRayHead

RAY_TEST_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
"""Set for the whole test session by tests/conftest.py. ``RAY_AUTH_MODE`` must be set before anything in the
process touches Ray: Ray 2.60 switches a process to token authentication for good (``os.environ`` and its cached
config, ray/_private/authentication/authentication_token_setup.py) the first time something starts a private
local Ray with the variable unset, or finds ``~/.ray/auth_token``; a driver of that process then refuses the
calls of the session's head, which runs without tokens, and Ray Train's controller dies before it starts."""

SESSION_CPUS = 3
"""Logical CPUs of the shared head: the serving test's two CPU engine replicas plus Serve's router need 3;
training's two workers and the batch pipeline need 2."""

HEAD_START_TIMEOUT_S = 240.0
"""The head starts in ~10 s on an idle 2-core machine; a shared, busy one needs several times that."""


def gcs_address(head: LocalRayHead) -> str:
    assert head.ports is not None, "start the head first"
    return f"127.0.0.1:{head.ports['port']}"


@contextmanager
def connected(head: LocalRayHead) -> Iterator[str]:
    """A driver in this process connected to ``head``; yields the head's GCS address and disconnects on exit,
    leaving the head running."""
    import ray  # the Ray modules only: collecting the rest of the suite does not need Ray imported

    address = gcs_address(head)
    if ray.is_initialized():  # an earlier test let Ray start a private local cluster (e.g. an app builder)
        ray.shutdown()
    ray.init(address=address, log_to_driver=False)
    try:
        yield address
    finally:
        ray.shutdown()
