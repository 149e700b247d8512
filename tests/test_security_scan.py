"""Security review of what `park render STACK --workloads` writes, by checkov's Kubernetes checks.

Checkov (pinned in the Makefile, installed by `make setup` into its own venv because it pins packaging,
networkx and cachetools below what the project uses) scans every rendered object of every shipped stack. The
Ray pods exist only inside RayJob / RayService objects, which checkov does not know, so each pod template is
also written out as the Pod that KubeRay would create from it. A failed check fails the suite unless
tests/security_skips.yaml skips it for that check, origin and object, with a reason; docs/security.md holds
the findings before and after the review.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SKIPS_FILE = Path(__file__).with_name("security_skips.yaml")
STACKS = ("aws", "gcp", "kind")
CHECKOV = Path(os.environ.get("PARK_CHECKOV", REPO / ".venv-checkov" / "bin" / "checkov"))
SCAN_TIMEOUT_S = 300
PARK_ORIGIN = "park-stack"
RAY_CLUSTER_PATHS = {"RayJob": ("spec", "rayClusterSpec"), "RayService": ("spec", "rayClusterConfig"),
                     "RayCluster": ("spec",)}
"""Where each KubeRay kind keeps its RayCluster spec (KubeRay v1.7.0 ray-operator/apis/ray/v1)."""
CANARY = "canary"
"""A folder of deliberately bad objects scanned with the stacks, to show a new finding fails the suite."""


def pinned_checkov_version() -> str:
    """The version the Makefile installs (`CHECKOV_VERSION := x.y.z`), the one source of the pin."""
    found = re.search(r"^CHECKOV_VERSION\s*:?=\s*(\S+)", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert found, "Makefile has no CHECKOV_VERSION line"
    return found.group(1)


@dataclass(frozen=True)
class Finding:
    stack: str
    check: str
    name: str
    object: str
    """``Kind.namespace.name``; a Ray pod is ``RayJob.namespace.name/group``."""
    origin: str
    """``park-stack`` or ``chart:<chart name>``."""

    def __str__(self) -> str:
        return f"{self.stack}: {self.check} {self.object} ({self.origin}): {self.name}"


@dataclass(frozen=True)
class Skip:
    checks: tuple[str, ...]
    origin: str
    """``park-stack``, ``chart:<chart>`` or ``chart:*``."""
    objects: tuple[str, ...]
    """fnmatch patterns over :attr:`Finding.object`."""
    reason: str

    def matches(self, finding: Finding, check: str | None = None) -> bool:
        return (finding.check in ((check,) if check else self.checks)
                and fnmatch.fnmatchcase(finding.origin, self.origin)
                and any(fnmatch.fnmatchcase(finding.object, pattern) for pattern in self.objects))


def load_skips() -> list[Skip]:
    entries = yaml.safe_load(SKIPS_FILE.read_text())
    return [Skip(tuple(e["checks"]), e["origin"], tuple(e["objects"]), e["reason"]) for e in entries]


def object_id(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata", {})
    return f"{doc['kind']}.{meta.get('namespace', 'default')}.{meta['name']}"


def origins(spec) -> dict[str, str]:
    """Object id -> ``chart:<chart>`` for everything a Helm release of the stack renders (subcharts count
    as their parent chart), from the releases themselves rather than from labels the charts may not set."""
    from park.render import rendered_releases

    return {object_id(obj): f"chart:{rendered.release.chart.name}" for rendered in rendered_releases(spec)
            for obj in (*rendered.crds, *rendered.install_objects())}


def origin_of(doc: dict[str, Any], chart_objects: dict[str, str]) -> str:
    if object_id(doc) in chart_objects:
        return chart_objects[object_id(doc)]
    labels = doc.get("metadata", {}).get("labels") or {}
    return PARK_ORIGIN if labels.get("app.kubernetes.io/managed-by") == PARK_ORIGIN else "unknown"


def ray_cluster_of(doc: dict[str, Any]) -> dict[str, Any]:
    cluster = doc
    for key in RAY_CLUSTER_PATHS[doc["kind"]]:
        cluster = cluster[key]
    return cluster


def ray_pods(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group, Pod) for each pod template of a KubeRay object: the Pods KubeRay creates from them."""
    cluster = ray_cluster_of(doc)
    groups = [("head", cluster["headGroupSpec"]["template"])]
    groups += [(group["groupName"], group["template"]) for group in cluster.get("workerGroupSpecs", [])]
    meta = doc["metadata"]
    return [(name, {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {**template.get("metadata", {}), "name": f"{meta['name']}-{name}",
                                 "namespace": meta["namespace"], "labels": meta.get("labels", {})},
                    "spec": template["spec"]})
            for name, template in groups]


NOT_SCANNED_KINDS = {"CustomResourceDefinition"}
"""Schemas, not workloads: no checkov 3.3.30 check applies to them, and at megabytes each they would make up
nine tenths of what the scanner parses."""


def write_scan_folder(documents: list[dict[str, Any]], chart_objects: dict[str, str],
                      folder: Path) -> dict[str, tuple[str, str]]:
    """One file per object (and per Ray pod) under ``folder``; returns file name -> (object id, origin)."""
    folder.mkdir(parents=True)
    index: dict[str, tuple[str, str]] = {}
    for number, doc in enumerate(documents):
        if doc["kind"] in NOT_SCANNED_KINDS:
            continue
        origin = origin_of(doc, chart_objects)
        base = f"{number:04d}-{doc['kind'].lower()}-{doc['metadata']['name']}"
        (folder / f"{base}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        index[f"{base}.yaml"] = (object_id(doc), origin)
        if doc["kind"] in RAY_CLUSTER_PATHS:
            for group, pod in ray_pods(doc):
                (folder / f"{base}-{group}-pod.yaml").write_text(yaml.safe_dump(pod, sort_keys=False))
                index[f"{base}-{group}-pod.yaml"] = (f"{object_id(doc)}/{group}", origin)
    return index


CANARY_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "privileged", "namespace": "research", "labels": {"app.kubernetes.io/managed-by": PARK_ORIGIN}},
    "spec": {"automountServiceAccountToken": False, "securityContext": {"runAsNonRoot": True},
             "containers": [{"name": "c", "image": "busybox:1", "securityContext": {"privileged": True}}]},
}


@pytest.fixture(scope="session")
def rendered() -> dict[str, tuple[list[dict[str, Any]], dict[str, str]]]:
    """Per shipped stack: what `park render STACK --workloads` writes (charts from ../shared/charts), and
    which of those objects a chart rendered."""
    from park.components.spec import load_stack_file, resolve_stack_file

    from park.render import render_documents

    out = {}
    for stack in STACKS:
        spec = load_stack_file(resolve_stack_file(stack))
        out[stack] = (render_documents(spec, workloads=True), origins(spec))
    return out


@dataclass
class Scan:
    findings: dict[str, list[Finding]]
    passed: dict[str, list[Finding]]
    indexes: dict[str, dict[str, tuple[str, str]]]


def run_checkov(root: Path) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"checkov not found at {CHECKOV}: run `make setup` (installs checkov=={pinned_checkov_version()} "
                    f"into .venv-checkov), or point PARK_CHECKOV at a checkov executable", pytrace=False)
    # --skip-download: no call to the vendor's platform; the open-source checks run offline
    result = subprocess.run([str(CHECKOV), "-d", str(root), "--framework", "kubernetes", "--output", "json",
                             "--skip-download", "--compact"],
                            capture_output=True, text=True, timeout=SCAN_TIMEOUT_S, cwd=root)
    assert result.returncode in (0, 1), f"checkov exited {result.returncode}: {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    assert report["check_type"] == "kubernetes" and report["summary"]["parsing_errors"] == 0, report["summary"]
    return report


@pytest.fixture(scope="session")
def scan(rendered, tmp_path_factory) -> Scan:
    """One checkov run over every shipped stack and the canary; findings split by stack folder."""
    root = tmp_path_factory.mktemp("security-scan")
    indexes = {stack: write_scan_folder(*rendered[stack], root / stack) for stack in STACKS}
    indexes[CANARY] = write_scan_folder([CANARY_POD], {}, root / CANARY)
    report = run_checkov(root)
    buckets: dict[str, dict[str, list[Finding]]] = {"failed": {}, "passed": {}}
    for kind, results in (("failed", report["results"]["failed_checks"]),
                          ("passed", report["results"]["passed_checks"])):
        for result in results:
            stack, file_name = Path(result["file_path"]).parts[-2:]
            obj, origin = indexes[stack][file_name]
            buckets[kind].setdefault(stack, []).append(
                Finding(stack, result["check_id"], result["check_name"], obj, origin))
    return Scan(buckets["failed"], buckets["passed"], indexes)


def unjustified(findings: list[Finding], skips: list[Skip]) -> list[Finding]:
    return [f for f in findings if not any(skip.matches(f) for skip in skips)]


@pytest.mark.parametrize("stack", STACKS)
def test_no_finding_outside_the_skip_list(scan, stack):
    left = unjustified(scan.findings.get(stack, []), load_skips())
    assert not left, ("checkov findings without a justified skip (fix the builder, or add a scoped entry with "
                      "a reason to tests/security_skips.yaml and docs/security.md):\n"
                      + "\n".join(sorted(map(str, left))))


def test_every_skip_still_matches_a_finding(scan):
    """A skip whose finding went away (fixed, renamed, chart changed) must go too, or it would hide a later one."""
    every = [f for stack in STACKS for f in scan.findings.get(stack, [])]
    stale = [(check, skip.origin, skip.objects) for skip in load_skips() for check in skip.checks
             if not any(skip.matches(f, check) for f in every)]
    assert not stale, f"skipped checks that match no finding any more (remove them): {stale}"


def test_every_skip_is_scoped_and_justified():
    for skip in load_skips():
        assert skip.checks and all(re.fullmatch(r"CKV2?_K8S_\d+", check) for check in skip.checks), skip
        assert skip.origin == PARK_ORIGIN or skip.origin.startswith("chart:"), skip
        assert skip.objects and "*" not in skip.objects, f"{skip.checks}: name the objects it covers"
        assert len(skip.reason.split()) >= 12, f"{skip.checks}: say why it must stay"


def test_a_new_finding_outside_the_skip_list_fails(scan):
    """The canary (a privileged container) is reported and nothing in the skip list excuses it."""
    left = unjustified(scan.findings.get(CANARY, []), load_skips())
    assert "CKV_K8S_16" in {f.check for f in left}, [str(f) for f in left]


@pytest.mark.parametrize("stack", STACKS)
def test_every_scanned_object_has_a_known_origin(scan, stack):
    """Skips are scoped by origin: an object that is neither park-stack's nor a chart's would dodge them."""
    unknown = [obj for obj, origin in scan.indexes[stack].values() if origin == "unknown"]
    assert not unknown, f"objects from no chart and without app.kubernetes.io/managed-by: park-stack: {unknown}"


@pytest.mark.parametrize("stack", STACKS)
def test_ray_pods_are_scanned_and_pass_the_checks_the_review_fixed(scan, rendered, stack):
    """Every Ray pod has a pod securityContext (CKV_K8S_29) and mounts no API token (CKV_K8S_38) unless it is
    the head of an autoscaling cluster, whose KubeRay autoscaler sidecar scales the RayCluster through the API
    (KubeRay v1.7.0 ray-operator/controllers/ray/common/pod.go)."""
    ray_pods_scanned = {obj for obj, _ in scan.indexes[stack].values() if "/" in obj}
    assert ray_pods_scanned, "no Ray pod was scanned"
    passed = {(f.check, f.object) for f in scan.passed.get(stack, [])}
    failed = {(f.check, f.object) for f in scan.findings.get(stack, [])}
    autoscaling_heads = {
        f"{object_id(doc)}/head" for doc in rendered[stack][0] if doc["kind"] in RAY_CLUSTER_PATHS
        and ray_cluster_of(doc).get("enableInTreeAutoscaling")}
    for pod in sorted(ray_pods_scanned):
        assert ("CKV_K8S_29", pod) in passed, f"{stack}: {pod} has no pod securityContext"
        if pod in autoscaling_heads:
            assert ("CKV_K8S_38", pod) in failed, f"{stack}: {pod} runs the autoscaler and needs its API token"
        else:
            assert ("CKV_K8S_38", pod) in passed, f"{stack}: {pod} mounts an API token it does not use"


def test_ray_service_account_mounts_no_token_by_default(rendered):
    """Pods that use park-ray without asking get no API token (the SA-level half of CKV_K8S_38)."""
    from park.components.spec import RAY_SERVICE_ACCOUNT

    for stack in STACKS:
        accounts = [d for d in rendered[stack][0]
                    if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == RAY_SERVICE_ACCOUNT]
        assert accounts and all(a.get("automountServiceAccountToken") is False for a in accounts), stack


def test_checkov_is_the_pinned_version():
    """docs/security.md records findings of this version; another one may add or change checks."""
    if not CHECKOV.exists():
        pytest.fail(f"checkov not found at {CHECKOV}: run `make setup`", pytrace=False)
    out = subprocess.run([str(CHECKOV), "--version"], capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == pinned_checkov_version()

