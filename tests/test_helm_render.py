"""``park render`` output is what a cluster accepts: the objects Helm's engine renders from the pinned charts
(``../shared/charts``, or ``$PARK_CHART_DIR``) with the project's values, CRDs first, every object a real
kind that validates (core objects with kubernetes-validate strict for the stack's Kubernetes version, custom
resources against the CRDs rendered alongside them), nothing invented."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml
from park.components import charts, versions
from park.components.charts import ChartError, ChartSource, render_release, unread_values
from park.components.manifests import build_all, observability
from park.components.manifests.common import HelmRelease
from park.components.manifests.schemas import index_crds, validate_against_crd, validate_custom_resource
from schemas import (
    assert_valid_core_object,
    describe,
    is_custom_resource,
    require_chart_dir,
    require_schema_dir,
    shipped_specs,
)

from park.render import render_documents

SPECS = shipped_specs()
CASES = [(stack, workloads) for stack in sorted(SPECS) for workloads in (False, True)]
CASE_IDS = [f"{stack}{'-workloads' if workloads else ''}" for stack, workloads in CASES]

UPSTREAM_SKIPS: dict[tuple[str, str, str | None, str], str] = {}
"""(kind, name, namespace, problem prefix) -> why an upstream chart's object may keep failing validation.
Empty: every object the pinned charts render for the shipped stacks validates."""


@pytest.fixture(scope="module")
def rendered():
    """Stack, workloads -> everything ``park render`` writes (rendering is cached per process)."""
    require_chart_dir()
    return {case: render_documents(SPECS[case[0]], workloads=case[1]) for case in CASES}


@pytest.fixture(scope="module")
def once_per_object():
    """``check(doc, *context) -> list of problems``, run once per distinct object (and context) in this module:
    gcp's and kind's rendered objects are, all but a few, the very objects aws renders (same charts, same
    Kubernetes version), and validating megabyte CRDs takes seconds. Every stack's test still reads the
    problems of each of its objects."""
    found: dict[tuple, list[str]] = {}

    def check(validate, doc: dict, *context: str) -> list[str]:
        key = (validate.__name__, *context, json.dumps(doc, sort_keys=True, default=repr))
        if key not in found:
            found[key] = validate(doc, *context)
        return found[key]

    return check


def core_object_problems(doc: dict, kubernetes_version: str) -> list[str]:
    try:
        assert_valid_core_object(doc, kubernetes_version)
    except AssertionError as err:
        return [str(err)]
    return []


def releases(stack: str) -> list[HelmRelease]:
    return [r for addon in build_all(SPECS[stack]) for r in addon.releases]


# --- nothing invented, everything valid --------------------------------------------------------------


@pytest.mark.parametrize(("stack", "workloads"), CASES, ids=CASE_IDS)
def test_no_pseudo_kind_remains(rendered, stack, workloads):
    invented = [describe(d) for d in rendered[stack, workloads] if "park-stack.io" in d["apiVersion"]]
    assert not invented, f"objects no cluster serves: {invented}"


@pytest.mark.parametrize(("stack", "workloads"), CASES, ids=CASE_IDS)
def test_every_custom_resource_has_its_crd_earlier_in_the_output(rendered, stack, workloads):
    documents = rendered[stack, workloads]
    first_use: dict[tuple[str, str], int] = {}
    for i, doc in enumerate(documents):
        if is_custom_resource(doc):
            first_use.setdefault((charts.api_group(doc["apiVersion"]), doc["kind"]), i)
    defined = {(d["spec"]["group"], d["spec"]["names"]["kind"]): i for i, d in enumerate(documents)
               if d["kind"] == "CustomResourceDefinition"}
    for kind, i in sorted(first_use.items()):
        assert kind in defined, f"{kind} is used but no CRD in the output defines it"
        assert defined[kind] < i, f"the CRD of {kind} comes after its first object"
    last_crd = max(defined.values())
    assert all(d["kind"] == "CustomResourceDefinition" for d in documents[:last_crd + 1]), "CRDs come first"


@pytest.mark.parametrize(("stack", "workloads"), CASES, ids=CASE_IDS)
def test_custom_resources_validate_against_the_crds_rendered_alongside(rendered, stack, workloads):
    """The Prometheus Operator's own CRDs (from kube-prometheus-stack) validate its Prometheus, Alertmanager,
    PrometheusRule and ServiceMonitor objects; KubeRay's validate the RayJobs; Kueue's the queues."""
    documents = rendered[stack, workloads]
    index = index_crds([d for d in documents if d["kind"] == "CustomResourceDefinition"], Path("park render"))
    problems = []
    for doc in documents:
        if is_custom_resource(doc):
            crd = index.get((doc["apiVersion"], doc["kind"]))
            found = validate_against_crd(doc, crd) if crd else ["no served CRD version in the output"]
            problems += [f"{describe(doc)}: {p}" for p in found]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_custom_resources_validate_against_the_shared_schemas_too(rendered, once_per_object, stack):
    """Where ../shared/schemas holds the CRD (KubeRay v1.7.0, Kueue v0.19.2, Prometheus Operator v0.93.1
    monitors), the rendered custom resources validate against it as well."""
    from park.components.manifests.schemas import SchemaNotFound

    require_schema_dir()
    problems, checked = [], 0
    for doc in rendered[stack, True]:
        if not is_custom_resource(doc):
            continue
        try:
            found = once_per_object(validate_custom_resource, doc)
        except SchemaNotFound:
            continue
        checked += 1
        problems += [f"{describe(doc)}: {p}" for p in found]
    assert checked, "no custom resource had a schema in ../shared/schemas"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_core_objects_pass_kubernetes_validate_strict(rendered, once_per_object, stack):
    """Every built-in object, CRDs included, for the stack's Kubernetes version. The reference workloads add
    only custom resources, so the set with --workloads covers the one without."""
    kubernetes_version = SPECS[stack].kubernetes_version
    failures = []
    for doc in rendered[stack, True]:
        if is_custom_resource(doc):
            continue
        for problem in once_per_object(core_object_problems, doc, kubernetes_version):
            meta = doc["metadata"]
            if not any((doc["kind"], meta["name"], meta.get("namespace")) == key[:3] and key[3] in problem
                       for key in UPSTREAM_SKIPS):
                failures.append(problem)
    assert not failures, "\n".join(failures)


def test_an_invented_kind_fails_core_validation():
    """The core check would catch a pseudo-kind such as the old ``park-stack.io/v1 HelmRelease``."""
    with pytest.raises(AssertionError, match="HelmRelease"):
        assert_valid_core_object({"apiVersion": "v1", "kind": "HelmRelease", "metadata": {"name": "x"}}, "1.33")


# --- what Helm would install ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_each_release_renders_from_its_pinned_chart(stack):
    require_chart_dir()
    for release in releases(stack):
        result = render_release(release, SPECS[stack].kubernetes_version)
        metadata = yaml.safe_load((result.chart_dir / "Chart.yaml").read_text())
        assert (metadata["name"], str(metadata["version"])) == (release.chart.name, release.chart.version)
        assert result.objects, f"release {release.name} renders nothing"


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_no_value_the_project_sets_goes_unread_by_its_chart(stack):
    require_chart_dir()
    unread = {r.name: unread_values(r) for r in releases(stack)}
    assert all(not keys for keys in unread.values()), f"values no chart reads (typos?): {unread}"


def test_a_misspelled_value_is_reported():
    require_chart_dir()
    release = next(r for r in releases("aws") if r.name == "kueue")
    manager = {**release.values["controllerManager"], "replics": 2}
    broken = dataclasses.replace(release, values={**release.values, "controllerManager": manager,
                                                  "enablePrometheu": True})
    assert unread_values(broken) == ["controllerManager.replics", "enablePrometheu"]


def test_test_hooks_are_dropped_and_install_hooks_kept_around_the_release(rendered):
    """Helm v4 pkg/action/install.go runs pre-install hooks before the release's objects and post-install
    hooks after; ``helm test`` hooks never run on install. kube-prometheus-stack's admission webhook
    certificate Jobs are such install hooks; Grafana's test Pod a test hook."""
    documents = rendered["kind", False]
    names = [(d["kind"], d["metadata"]["name"]) for d in documents]
    assert ("Pod", "grafana-test") not in names and ("ConfigMap", "grafana-test") not in names
    create = names.index(("Job", "kube-prometheus-admission-create"))
    patch = names.index(("Job", "kube-prometheus-admission-patch"))
    operator = names.index(("Deployment", "kube-prometheus-operator"))
    webhook = names.index(("ValidatingWebhookConfiguration", "kube-prometheus-admission"))
    assert create < operator < webhook < patch
    hook = documents[create]["metadata"]["annotations"][charts.HOOK_ANNOTATION]
    assert "pre-install" in hook, "the hook annotation stays (Argo CD maps it to a sync hook)"


def test_namespaces_are_filled_as_helm_install_would(rendered):
    """A namespaced object without a namespace lands in the release namespace; a cluster-scoped one has
    none. Whether a built-in kind is namespaced comes from the Kubernetes client's API (a
    ``create_namespaced_<kind>`` method exists exactly for namespaced kinds), not from our list."""
    import kubernetes.client

    def namespaced(api_version: str, kind: str) -> bool:
        group, _, version = api_version.rpartition("/")
        group = group.removesuffix(".k8s.io")
        api = "".join(p.capitalize() for p in group.split(".")) if group else "Core"
        cls = getattr(kubernetes.client, f"{api}{version.capitalize()}Api")
        snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", kind).lower()
        assert hasattr(cls, f"create_{snake}") or hasattr(cls, f"create_namespaced_{snake}"), (api_version, kind)
        return hasattr(cls, f"create_namespaced_{snake}")

    checked = set()
    for doc in rendered["aws", False]:
        if is_custom_resource(doc):
            continue
        key = (doc["apiVersion"], doc["kind"])
        expected = namespaced(*key)
        assert expected == (doc["kind"] not in charts.CLUSTER_SCOPED_BUILTIN_KINDS), f"scope of {key} is wrong"
        assert bool(doc["metadata"].get("namespace")) == expected, f"{describe(doc)}: namespace wrong for scope"
        checked.add(key)
    assert ("rbac.authorization.k8s.io/v1", "ClusterRole") in checked and ("apps/v1", "Deployment") in checked


def test_builtin_api_groups_are_the_kubernetes_clients():
    """Every group we treat as built-in has an API in the Kubernetes client; the custom ones do not."""
    import kubernetes.client

    def has_api(group: str) -> bool:
        name = "".join(p.capitalize() for p in group.removesuffix(".k8s.io").split(".")) if group else "Core"
        return hasattr(kubernetes.client, f"{name}Api")

    assert all(has_api(g) for g in charts.BUILTIN_API_GROUPS)
    assert not any(has_api(g) for g in ("ray.io", "kueue.x-k8s.io", "monitoring.coreos.com"))


def test_crd_helpers_derive_what_a_release_provides_and_needs():
    require_chart_dir()
    spec = SPECS["aws"]
    prometheus = next(r for r in releases("aws") if r.name == observability.PROMETHEUS_RELEASE)
    result = render_release(prometheus, spec.kubernetes_version)
    assert ("monitoring.coreos.com", "ServiceMonitor") in result.provided_kinds
    assert {("monitoring.coreos.com", "Prometheus"), ("monitoring.coreos.com", "PrometheusRule")} <= \
        charts.custom_resource_kinds(result.objects)
    kueue = render_release(next(r for r in releases("aws") if r.name == "kueue"), spec.kubernetes_version)
    assert not kueue.chart_crds and ("kueue.x-k8s.io", "ClusterQueue") in charts.crd_kinds(kueue.template_crds), \
        "Kueue's chart renders its CRDs as templates; they count as provided all the same"


def test_renders_are_cached_and_each_result_is_a_fresh_copy():
    require_chart_dir()
    release = next(r for r in releases("kind") if r.name == "kuberay-operator")
    first = render_release(release, "1.33")
    started = time.perf_counter()
    second = render_release(release, "1.33")
    assert time.perf_counter() - started < 2.0, "a second render of the same release should hit the cache"
    assert first == second
    first.objects[0]["metadata"]["name"] = "changed"
    assert render_release(release, "1.33").objects[0]["metadata"]["name"] != "changed"


# --- finding charts ---------------------------------------------------------------------------------


def capability_chart(folder: Path) -> versions.Chart:
    """A one-template chart that prints what Helm tells templates about the cluster."""
    chart = folder / "capabilities-0.1.0"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: capabilities\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caps}\n"
        "data: {kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}, "
        "install: {{ .Release.IsInstall | quote }}}\n")
    return versions.Chart("capabilities", "0.1.0", "https://charts.invalid")


def test_the_stack_kubernetes_version_reaches_the_templates(tmp_path):
    """Charts pick API versions by ``.Capabilities.KubeVersion``; Helm's default would be its own build's."""
    chart = capability_chart(tmp_path)
    for kubernetes_version in ("1.31", "1.33"):
        result = render_release(HelmRelease("caps", "ns", chart, {}), kubernetes_version, tmp_path)
        (config,) = result.objects
        assert config["data"] == {"kubeVersion": f"v{kubernetes_version}.0", "install": "true"}
        assert config["metadata"]["namespace"] == "ns"


def test_an_explicit_chart_folder_never_pulls(tmp_path, monkeypatch):
    import helm_python

    monkeypatch.setattr(helm_python, "pull", lambda *a, **k: pytest.fail("pulled despite --charts"))
    with pytest.raises(ChartError, match=r"no kueue-0\.19\.2/ in .*--charts"):
        ChartSource(local_dir=tmp_path).locate(versions.KUEUE_CHART)


def test_without_a_folder_the_chart_is_pulled_once_into_the_cache(tmp_path, monkeypatch):
    """Users have network: the chart comes from its repository (OCI for Kueue), unpacked into the cache."""
    import helm_python

    shared = require_chart_dir()
    calls = []

    def fake_pull(ref, *, version, untar_dir, **kwargs):  # what `helm pull --untar` leaves behind
        calls.append((ref, version, kwargs.get("repo_url")))
        shutil.copytree(shared / f"kueue-{version}", Path(untar_dir) / "kueue")
        return {"output": ""}

    monkeypatch.setattr(helm_python, "pull", fake_pull)
    source = ChartSource(cache_dir=tmp_path / "cache")
    found = source.locate(versions.KUEUE_CHART)
    assert found == tmp_path / "cache" / f"kueue-{versions.KUEUE_CHART.version}" / "kueue"
    assert calls == [(versions.KUEUE_CHART.repo, versions.KUEUE_CHART.version, None)]
    assert ChartSource(cache_dir=tmp_path / "cache").locate(versions.KUEUE_CHART) == found
    assert len(calls) == 1, "a cached chart is not pulled again"


def test_a_failed_pull_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    import helm_python

    def offline(*args, **kwargs):
        raise helm_python.HelmRepoError("looks like the repository is not reachable\nmore detail")

    monkeypatch.setattr(helm_python, "pull", offline)
    with pytest.raises(ChartError) as err:
        ChartSource(cache_dir=tmp_path).locate(versions.KUBERAY_CHART)
    message = str(err.value)
    assert "\n" not in message and versions.KUBERAY_CHART.repo in message and "--charts" in message


def test_dependencies_come_from_sibling_folders():
    """kube-prometheus-stack's grafana, kube-state-metrics and node-exporter are sibling folders in the
    pinned chart layout; Helm sees them as subcharts."""
    shared = require_chart_dir()
    found = ChartSource(local_dir=shared).locate(versions.KUBE_PROMETHEUS_STACK_CHART)
    assert {p.name for p in (found / "charts").iterdir()} >= {"grafana", "kube-state-metrics",
                                                             "prometheus-node-exporter"}
    assert not (shared / found.name / "charts" / "grafana").exists(), "the shared folder stays untouched"
