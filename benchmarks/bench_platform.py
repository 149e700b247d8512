"""Benchmark: the Pulumi side. Evaluating each shipped stack program under Pulumi's mock engine, and
``park render`` of each stack, against baselines measured in the same run.

- program: ``stacks/__main__.py`` for each stack, with the real adapters and add-ons, run to completion under
  mocks (every resource registered), each in a fresh process, so imports count as they do for ``pulumi up``.
  Baseline: a program declaring one component under the same mocks (the fixed cost of Python + Pulumi).
- render: ``park render STACK`` as a user runs it (a fresh process). Baseline: ``park --help``.
- SDK import: importing the cloud SDK modules the adapter uses, in a fresh process — most of a program's time,
  and a cost ``pulumi up`` pays too.

Aim (issue 2): under 3 s each on this machine. Run: ``.venv/bin/python benchmarks/bench_platform.py``.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("aws", "gcp", "kind")
REPEATS = 3


def _sdk_touch(cloud: str) -> str:
    """Python that loads every SDK class the adapter uses (the SDKs load submodules lazily, on first use)."""
    if cloud == "kind":
        return "import pulumi_kubernetes as k; k.Provider; k.yaml.v2.ConfigGroup; k.helm.v3.Release"
    source = (ROOT / "components" / "clouds" / f"{cloud}.py").read_text()
    classes = sorted(set(re.findall(rf"\b{cloud}\.(\w+\.[A-Z]\w+)", source)))
    touches = "; ".join(f"{cloud}.{c}" for c in classes)
    return f"import pulumi_{cloud} as {cloud}; {touches}; " + _sdk_touch("kind")

# The kind stack connects to an existing context; give the program one (nothing connects to it under mocks).
_KIND_KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: kind-park-kind
clusters: [{name: kind-park-kind, cluster: {server: "https://127.0.0.1:6443"}}]
contexts: [{name: kind-park-kind, context: {cluster: kind-park-kind, user: kind-park-kind}}]
users: [{name: kind-park-kind, user: {token: benchmark}}]
"""

_PROGRAM = """
import sys, json, runpy, yaml, pulumi
sys.path.insert(0, {tests!r})
from pulumi_mocks import install
from schemas import provisionable_stack_config
stack = {stack!r}
install(stack=stack or "baseline")
if stack:
    config = yaml.safe_load(open({root!r} + f"/stacks/Pulumi.{{stack}}.yaml"))["config"]
    # what a team sets before `pulumi up`: allowed CIDRs, a bucket and a project of its own (as the tests do)
    config = provisionable_stack_config(config)
    pulumi.runtime.set_all_config({{k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}})

@pulumi.runtime.test
def evaluate():
    if stack:
        runpy.run_path({root!r} + "/stacks/__main__.py")
    else:
        pulumi.ComponentResource("bench:index:Empty", "empty", None)

evaluate()
"""


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def _median(argv: list[str]) -> float:
    return statistics.median(_seconds(argv) for _ in range(REPEATS))


ENV = dict(os.environ)


def main() -> None:
    kubeconfig = Path(tempfile.mkdtemp()) / "kubeconfig"
    kubeconfig.write_text(_KIND_KUBECONFIG)
    ENV["KUBECONFIG"] = str(kubeconfig)
    python = sys.executable
    park = str(Path(python).with_name("park"))
    program = lambda stack: [python, "-c", _PROGRAM.format(tests=str(ROOT / "tests"), root=str(ROOT),
                                                          stack=stack)]
    program_base = _median(program(""))
    render_base = _median([park, "--help"])
    print(f"# {platform.node()} {platform.machine()} cpus={len(os.sched_getaffinity(0))} "
          f"python={platform.python_version()} {time.strftime('%Y-%m-%d')}; median of {REPEATS}")
    print(f"{'what':<28}{'seconds':>9}{'baseline':>10}{'ratio':>7}")
    print(f"{'program: empty (baseline)':<28}{program_base:>9.2f}")
    print(f"{'park --help (baseline)':<28}{render_base:>9.2f}")
    for stack in STACKS:
        seconds = _median([python, "-c", f"import park.components.platform; {_sdk_touch(stack)}"])
        print(f"{'SDK import: ' + stack:<28}{seconds:>9.2f}{program_base:>10.2f}{seconds / program_base:>7.2f}")
    for stack in STACKS:
        seconds = _median(program(stack))
        print(f"{'program under mocks: ' + stack:<28}{seconds:>9.2f}{program_base:>10.2f}{seconds / program_base:>7.2f}")
    for stack in STACKS:
        seconds = _median([park, "render", stack])
        print(f"{'park render ' + stack:<28}{seconds:>9.2f}{render_base:>10.2f}{seconds / render_base:>7.2f}")


if __name__ == "__main__":
    main()
