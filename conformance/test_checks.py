"""One test per conformance check, reusing the check library (see conformance/conftest.py for options).

pytest conformance/                       # the local target: embedded Ray, the three workloads
pytest conformance/ -k "operators or workloads.train"
pytest conformance/ --target kubernetes --stack aws -m "not destructive"
"""

from __future__ import annotations

import pytest
from park.conformance.checks import CHECKS
from park.conformance.model import Check, Status
from park.conformance.targets import LOCAL_CHECKS


def _marks(check: Check) -> list:
    marks = []
    if check.gpu:
        marks.append(pytest.mark.gpu)
    if check.destructive:
        marks.append(pytest.mark.destructive)
    if check.name not in LOCAL_CHECKS:
        marks.append(pytest.mark.cloud)
    return marks


@pytest.mark.parametrize("check", [pytest.param(c, id=c.name, marks=_marks(c)) for c in CHECKS])
def test_check(check: Check, conformance_runner) -> None:
    result = conformance_runner.run(check.name)
    if result.status in (Status.NOT_APPLICABLE, Status.SKIPPED):
        pytest.skip(f"{result.status.label}: {result.reason}")
    assert result.status is Status.PASSED, f"{check.name} {result.status.label}: {result.reason}"
