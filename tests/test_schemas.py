"""Every object park-stack builds, for every shipped stack, against the real schemas: CRDs strictly, core
objects with kubernetes-validate in strict mode. Plus proof that the validators can fail. (What the Helm
releases install is validated in test_helm_render.py.)"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from park.components import versions
from park.components.manifests import all_documents, build_all, kueue
from park.components.manifests.schemas import (
    UPSTREAM,
    SchemaDirMissing,
    SchemaFetchFailed,
    SchemaNotFound,
    crd_index,
    crd_url,
    fetch_schemas,
    kubernetes_validate_version,
    strict,
    validate_core_object,
    validate_custom_resource,
)
from schemas import (
    PINNED_CHARTS,
    assert_valid_core_object,
    assert_valid_custom_resource,
    describe,
    is_core_object,
    is_custom_resource,
    require_schema_dir,
    shipped_specs,
)

SPECS = shipped_specs()
DOCUMENTS = [(stack, doc) for stack, spec in SPECS.items() for doc in all_documents(spec)]


def _ids(pairs):
    return [f"{stack}:{describe(doc)}".replace(" ", ":") for stack, doc in pairs]


CUSTOM = [(s, d) for s, d in DOCUMENTS if is_custom_resource(d)]
CORE = [(s, d) for s, d in DOCUMENTS if is_core_object(d)]


@pytest.mark.parametrize(("stack", "doc"), CUSTOM, ids=_ids(CUSTOM))
def test_custom_resource_matches_its_crd_strictly(stack, doc):
    assert_valid_custom_resource(doc)


@pytest.mark.parametrize(("stack", "doc"), CORE, ids=_ids(CORE))
def test_core_object_passes_kubernetes_validate_strict(stack, doc):
    assert_valid_core_object(doc, SPECS[stack].kubernetes_version)


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_stack_kubernetes_version_is_bundled_by_kubernetes_validate(stack):
    version, exact = kubernetes_validate_version(SPECS[stack].kubernetes_version)
    assert exact, f"kubernetes-validate has no {SPECS[stack].kubernetes_version} schemas; validated against {version}"


def test_nearest_bundled_version_is_used_when_the_exact_one_is_missing():
    assert kubernetes_validate_version("1.99")[1] is False
    assert kubernetes_validate_version("1.99")[0] == max(
        (kubernetes_validate_version(f"1.{m}")[0] for m in range(20, 40)), key=lambda v: int(v.split(".")[1]))


def test_every_kueue_kind_we_render_has_a_crd_here():
    folder = require_schema_dir()
    index = crd_index(folder)
    for kind in ("ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"):
        assert (versions.KUEUE_API_VERSION, kind) in index, f"no {kind} CRD in {folder}"


# --- the validators can fail -------------------------------------------------------------------------


def test_misspelled_field_in_a_custom_resource_is_caught():
    require_schema_dir()
    spec = SPECS["aws"]
    queue = kueue.cluster_queue(spec, spec.teams[0])
    assert validate_custom_resource(queue) == []
    broken = copy.deepcopy(queue)
    broken["spec"]["cohort"] = broken["spec"].pop("cohortName")  # the v1beta1 spelling
    problems = validate_custom_resource(broken)
    assert any("'cohort' was unexpected" in p and p.startswith("$.spec:") for p in problems), problems


def test_wrong_value_deep_in_a_custom_resource_is_reported_with_its_path():
    require_schema_dir()
    spec = SPECS["kind"]
    queue = kueue.cluster_queue(spec, spec.teams[0])
    queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] = "lots"
    queue["spec"]["preemption"]["withinClusterQueue"] = "Sometimes"
    problems = validate_custom_resource(queue)
    paths = [p.split(":")[0] for p in problems]
    assert "$.spec.resourceGroups[0].flavors[0].resources[0].nominalQuota" in paths
    assert "$.spec.preemption.withinClusterQueue" in paths


def test_namespace_scope_is_checked():
    require_schema_dir()
    local = kueue.local_queue(SPECS["kind"].teams[0])
    del local["metadata"]["namespace"]
    assert any("namespaced" in p for p in validate_custom_resource(local))
    flavor = kueue.resource_flavor(SPECS["kind"], SPECS["kind"].pool("cpu"))
    flavor["metadata"]["namespace"] = "research"
    assert any("cluster-scoped" in p for p in validate_custom_resource(flavor))


def test_unknown_kind_is_reported_not_guessed():
    require_schema_dir()
    with pytest.raises(SchemaNotFound, match="kueue.x-k8s.io/v1beta2 Queue"):
        validate_custom_resource({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Queue", "metadata": {"name": "q"}})


def test_strict_schema_closes_objects_but_keeps_preserved_ones_open():
    schema = strict({"type": "object", "properties": {
        "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
        "listed": {"type": "array", "items": {"type": "object", "properties": {"b": {"type": "integer"}}}},
        "mapped": {"type": "object", "additionalProperties": {"type": "string"}},
    }})
    assert schema["additionalProperties"] is False
    assert schema["properties"]["closed"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["open"]
    assert schema["properties"]["listed"]["items"]["additionalProperties"] is False
    assert schema["properties"]["mapped"]["additionalProperties"] == {"type": "string"}


def test_missing_schema_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(versions.CRD_SCHEMA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(SchemaDirMissing, match="nowhere.*PARK_CRD_SCHEMA_DIR"):
        validate_custom_resource({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue"})


# --- where the CRDs come from without ../shared --------------------------------------------------------


ROOT = Path(__file__).resolve().parent.parent
SCHEMA_TESTS = ["tests/test_schemas.py::test_every_kueue_kind_we_render_has_a_crd_here",
                "tests/test_schemas.py::test_misspelled_field_in_a_custom_resource_is_caught",
                "tests/test_schemas.py::test_custom_resource_matches_its_crd_strictly"]
NO_NETWORK = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "no_proxy": "",
              "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
"""urllib honours these: every download is refused at once, as on a machine without network."""


def run_schema_tests(cwd: Path, tmp_path: Path, *tests: str, **env: str) -> tuple[int, str]:
    """``tests`` (default: SCHEMA_TESTS) run by pytest in a fresh process without network, in ``cwd``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARK_") and "proxy" not in k.lower()}
    done = subprocess.run([sys.executable, "-m", "pytest", *(tests or SCHEMA_TESTS), "-q", "-p", "no:cacheprovider",
                           f"--basetemp={tmp_path / 'pt'}"], cwd=cwd, env={**clean, **NO_NETWORK, **env},
                          capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stdout + done.stderr


def failure_reports(output: str) -> list[list[str]]:
    """The lines of each test's report in pytest's FAILURES section, captured output left out."""
    section = output.split(" FAILURES ", 1)[1].split("short test summary info", 1)[0]
    reports = re.split(r"^_+ \S+ _+$", section, flags=re.MULTILINE)[1:]
    return [[line for line in report.split("\n---", 1)[0].splitlines() if line.strip() and not line.startswith("=")]
            for report in reports]


def assert_failed_in_one_line(returncode: int, output: str, *wanted: str) -> None:
    summary = output.strip().splitlines()[-1]
    assert returncode == 1 and " failed" in summary and "skipped" not in summary and " passed" not in summary, output
    reports = failure_reports(output)
    assert reports and all(len(report) == 1 for report in reports), output[-3000:]
    reasons = {report[0] for report in reports}
    assert len(reasons) == 1, f"expected one reason for every failure, got {reasons}"
    reason = reasons.pop()
    assert all(w in reason for w in wanted), reason


def test_an_empty_schema_folder_fails_the_schema_tests_in_one_line(tmp_path):
    """``$PARK_CRD_SCHEMA_DIR`` naming an empty folder once made every schema test skip and the suite green."""
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = run_schema_tests(ROOT, tmp_path, PARK_CRD_SCHEMA_DIR=str(empty))
    assert_failed_in_one_line(code, output, str(empty), "holds no CRD YAML", "PARK_CRD_SCHEMA_DIR",
                              "components/versions.py CRD_FILES")


def clone_without_shared(tmp_path: Path) -> Path:
    """What the tests need of a checkout (stacks, tests, Pulumi.yaml, pytest settings), with no ``../shared``."""
    clone = tmp_path / "elsewhere" / "park-stack"
    clone.mkdir(parents=True)
    for name in ("Pulumi.yaml", "pyproject.toml"):
        shutil.copy(ROOT / name, clone / name)
    for folder in ("stacks", "tests"):
        shutil.copytree(ROOT / folder, clone / folder, ignore=shutil.ignore_patterns("__pycache__"))
    assert not (clone.parent / "shared").exists()
    return clone


def test_a_clone_without_shared_and_without_network_fails_naming_the_url(tmp_path):
    """A clone with no ``../shared`` beside it and no network: the tests try the pinned upstream URL and fail
    with one line naming it and ``$PARK_CRD_SCHEMA_DIR``, instead of skipping."""
    clone = clone_without_shared(tmp_path)
    code, output = run_schema_tests(clone, tmp_path, PARK_CRD_CACHE=str(tmp_path / "cache"))
    first = versions.CRD_FILES[0]
    assert_failed_in_one_line(code, output, f"fetching {crd_url(first, UPSTREAM)} failed", "PARK_CRD_SCHEMA_DIR")
    assert not any((tmp_path / "cache").glob("*.yaml")), "something was written without its checksum checked"


def test_a_clone_without_shared_and_without_network_fails_chart_tests_naming_the_repository(tmp_path):
    """The chart tests pull the pinned charts from their repositories when there is no chart folder; without
    network each fails with the pull's one line (repository, cache folder, ``$PARK_CHART_DIR``), never skips."""
    clone = clone_without_shared(tmp_path)
    code, output = run_schema_tests(
        clone, tmp_path, "tests/test_cloud_contracts.py::test_cluster_autoscaler_runs_the_kubernetes_minor_of_the_stack",
        PARK_CHART_CACHE=str(tmp_path / "charts"))
    first = PINNED_CHARTS[0]
    assert_failed_in_one_line(code, output, f"chart {first.name} {first.version}: pulling from {first.repo}",
                              str(tmp_path / "charts"), "PARK_CHART_DIR")


def test_a_chart_folder_that_is_not_there_fails_the_chart_tests_in_one_line(tmp_path):
    code, output = run_schema_tests(
        ROOT, tmp_path, "tests/test_cloud_contracts.py::test_cluster_autoscaler_runs_the_kubernetes_minor_of_the_stack",
        PARK_CHART_DIR=str(tmp_path / "nowhere"))
    assert_failed_in_one_line(code, output, f"$PARK_CHART_DIR is {tmp_path / 'nowhere'}, which is not a folder")


def mirror_of_the_pins(tmp_path: Path) -> Path:
    """A ``file://`` mirror laid out as upstream (``<repo>/<tag>/<path>``), filled from the schema folder."""
    source = require_schema_dir()
    mirror = tmp_path / "mirror"
    for crd in versions.CRD_FILES:
        target = mirror / crd.repo / crd.tag / crd.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / crd.file, target)
    return mirror


def test_every_pinned_crd_is_in_the_schema_folder_with_its_checksum():
    """The pins are the bytes the tests validate against (../shared/schemas/README.md gives their sha1s)."""
    folder = require_schema_dir()
    for crd in versions.CRD_FILES:
        assert (folder / crd.file).is_file(), f"{crd.file} is pinned but not in {folder}"
        assert hashlib.sha256((folder / crd.file).read_bytes()).hexdigest() == crd.sha256, crd.file


def test_crd_pins_follow_the_chart_pins():
    """Bumping KubeRay, Kueue or kube-prometheus-stack without new CRD pins would validate against old CRDs."""
    tags = {crd.repo: crd.tag for crd in versions.CRD_FILES}
    assert tags["ray-project/kuberay"] == f"v{versions.KUBERAY_CHART.version}"
    assert tags["kubernetes-sigs/kueue"] == f"v{versions.KUEUE_CHART.version}"
    assert tags["prometheus-community/helm-charts"] == f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}"
    assert crd_url(versions.CRD_FILES[0], UPSTREAM) == (
        "https://raw.githubusercontent.com/ray-project/kuberay/v1.7.0/ray-operator/config/crd/bases/ray.io_rayclusters.yaml")


def test_fetch_from_a_mirror_checks_every_checksum_and_indexes(tmp_path):
    mirror = mirror_of_the_pins(tmp_path)
    cache = fetch_schemas(tmp_path / "cache", base=mirror.as_uri())
    assert sorted(p.name for p in cache.iterdir()) == sorted(c.file for c in versions.CRD_FILES)
    index = crd_index(cache)
    assert (versions.RAY_API_VERSION, "RayJob") in index and (versions.KUEUE_API_VERSION, "ClusterQueue") in index
    shutil.rmtree(mirror)  # a complete, verified cache needs no network
    assert fetch_schemas(cache, base=mirror.as_uri()) == cache


def test_a_tampered_download_is_rejected_and_not_saved(tmp_path):
    mirror = mirror_of_the_pins(tmp_path)
    crd = next(c for c in versions.CRD_FILES if c.file.endswith("_localqueues.yaml"))
    tampered = mirror / crd.repo / crd.tag / crd.path
    tampered.write_text(tampered.read_text().replace("type: string", "type: integer", 1))
    with pytest.raises(SchemaFetchFailed, match=rf"^CRD {crd.file}: file://\S+ has sha256 [0-9a-f]{{64}}, pinned "
                                                rf"{crd.sha256}; not saved"):
        fetch_schemas(tmp_path / "cache", base=mirror.as_uri())
    assert not (tmp_path / "cache" / crd.file).exists()
    assert not list((tmp_path / "cache").glob(".*partial"))


def test_a_tampered_cached_file_is_fetched_again(tmp_path):
    mirror = mirror_of_the_pins(tmp_path)
    cache = fetch_schemas(tmp_path / "cache", base=mirror.as_uri())
    crd = versions.CRD_FILES[3]
    (cache / crd.file).write_text("kind: CustomResourceDefinition\n")
    fetch_schemas(cache, base=mirror.as_uri())
    assert hashlib.sha256((cache / crd.file).read_bytes()).hexdigest() == crd.sha256


def test_no_network_is_one_line_naming_the_url_and_the_folder_variable(tmp_path, monkeypatch):
    for name, value in NO_NETWORK.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SchemaFetchFailed) as failed:
        fetch_schemas(tmp_path / "cache", base=UPSTREAM)
    message = str(failed.value)
    assert "\n" not in message and crd_url(versions.CRD_FILES[0], UPSTREAM) in message
    assert "PARK_CRD_SCHEMA_DIR" in message


def test_misspelled_field_in_a_core_object_is_caught():
    policy = next(d for _, d in CORE if d["kind"] == "NetworkPolicy")
    assert validate_core_object(policy, "1.33") == []
    broken = copy.deepcopy(policy)
    broken["spec"]["podSelectr"] = {}
    assert any("'podSelectr' was unexpected" in p for p in validate_core_object(broken, "1.33"))


# --- Helm releases ----------------------------------------------------------------------------------


PINNED = {"kuberay-operator": versions.KUBERAY_CHART, "kueue": versions.KUEUE_CHART,
          "kube-prometheus-stack": versions.KUBE_PROMETHEUS_STACK_CHART, "dcgm-exporter": versions.DCGM_EXPORTER_CHART,
          "nvidia-device-plugin": versions.NVIDIA_DEVICE_PLUGIN_CHART,
          "cluster-autoscaler": versions.CLUSTER_AUTOSCALER_CHART}


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_helm_releases_name_the_pinned_charts(stack):
    """The releases name exactly the pins of components/versions.py (what they render to is checked in
    test_helm_render.py, against the charts themselves)."""
    releases = [r for addon in build_all(SPECS[stack]) for r in addon.releases]
    assert releases, f"{stack} installs no Helm release"
    for rel in releases:
        assert rel.chart == PINNED[rel.name], f"release {rel.name} does not use the pinned chart"
