"""The suite's own scheduling rule (tests/conftest.py): a module that starts or uses a Ray head marks its tests
``ray`` (or ``vllm``), so that `make test` runs it on the Ray worker, on the session's one head, and never beside
another Ray workload on the second worker."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import RAY_GROUP, runs_ray

TESTS = Path(__file__).resolve().parent
USES_RAY = re.compile(r"def \w+\([^)]*\b(?:local_ray|ray_head|serving_head)\b|\bLocalRayHead\(|\bray\.init\(")


def test_every_module_that_uses_a_ray_head_is_scheduled_with_the_ray_modules():
    unmarked = [path.name for path in sorted(TESTS.glob("test_*.py"))
                if USES_RAY.search(path.read_text()) and not runs_ray(path)]
    assert not unmarked, f"these modules use Ray but mark no test ray/vllm, so they would run beside the {RAY_GROUP} " \
                         f"group on another worker: {unmarked}"


def test_the_rule_tells_ray_modules_from_the_rest(tmp_path):
    marked = tmp_path / "test_marked.py"
    marked.write_text("import pytest\n\n@pytest.mark.ray\ndef test_x(local_ray):\n    pass\n")
    plain = tmp_path / "test_plain.py"
    plain.write_text("from park.conformance.local_ray import free_ports\n\ndef test_y():\n    pass\n")
    assert runs_ray(marked) and not runs_ray(plain)
    assert USES_RAY.search(marked.read_text()) and not USES_RAY.search(plain.read_text())
