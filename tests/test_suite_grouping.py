"""The suite's own scheduling rules (tests/conftest.py): a module that uses Ray marks its tests ``ray`` (or
``vllm``), so that `-m "not ray"` leaves it out and `make test` hands it out first; a module that takes the
session's Ray head runs in the one work unit that owns that head."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import SESSION_HEAD_GROUP, runs_ray, uses_session_head

TESTS = Path(__file__).resolve().parent
USES_RAY = re.compile(r"def \w+\([^)]*\b(?:local_ray|ray_head|serving_head)\b|\bLocalRayHead\(|\bray\.init\(")
STARTS_A_HEAD = re.compile(r"\bLocalRayHead\(")


def test_every_module_that_uses_ray_marks_it():
    unmarked = [path.name for path in sorted(TESTS.glob("test_*.py"))
                if USES_RAY.search(path.read_text()) and not runs_ray(path)]
    assert not unmarked, f"these modules use Ray but mark no test ray/vllm: {unmarked}"


def test_no_test_module_starts_a_ray_head_of_its_own():
    """Each head costs a start (10-30 s on 2 cores) and idle processes beside the session's: a module that
    needs Ray takes ``ray_head`` / ``local_ray`` and so joins the session head's work unit. (The local
    conformance runs start their heads inside the `park conformance` subprocess, as a user's run does.)"""
    own_heads = [path.name for path in sorted(TESTS.glob("test_*.py"))
                 if path.name != Path(__file__).name and STARTS_A_HEAD.search(path.read_text())]
    assert own_heads == [], f"these modules start a Ray head instead of taking {SESSION_HEAD_GROUP}'s: {own_heads}"


def test_the_rules_tell_ray_modules_from_the_rest(tmp_path):
    head_user = tmp_path / "test_head_user.py"
    head_user.write_text("import pytest\n\n@pytest.mark." + "ray\ndef test_x(loc" + "al_ray):\n    pass\n")
    own_runs = tmp_path / "test_own_runs.py"
    own_runs.write_text("import pytest\n\npytestmark = pytest.mark." + "ray\n\ndef test_z():\n    pass\n")
    plain = tmp_path / "test_plain.py"
    plain.write_text("from park.conformance.local_ray import free_ports\n\ndef test_y():\n    pass\n")
    assert runs_ray(head_user) and uses_session_head(head_user)
    assert runs_ray(own_runs) and not uses_session_head(own_runs)
    assert not runs_ray(plain) and not uses_session_head(plain)
    assert USES_RAY.search(head_user.read_text()) and not USES_RAY.search(plain.read_text())
