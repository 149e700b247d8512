"""Install order, read from the graph the engine receives and checked against what the charts render.

Each shipped stack program (``stacks/__main__.py``) runs under Pulumi's mocks with a monitor that records
every registration: type, name, parent and the URNs it waits for (``depends_on`` with components expanded
to their children, and data flow). Independently of the add-ons' code, every Helm release in that graph is
rendered with its pinned chart from ``../shared/charts``, and every ConfigGroup's objects are read from its
inputs. That says which resource applies which CRD and which creates custom resources of which kind. A
creator must wait, directly or transitively, for an applier of the CRD (only the recorded edges count: a
child does not wait for what its parent component depends on). Otherwise the first ``pulumi up`` races, and
loses when the CRD is late: Helm builds the whole release manifest against the cluster's REST mapping before
creating anything (Helm pkg/action/install.go, ``KubeClient.Build``), failing with ``unable to build
kubernetes objects from release manifest: ... no matches for kind "ServiceMonitor" in version
"monitoring.coreos.com/v1"``.
"""

from __future__ import annotations

import json
import re
import runpy
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from park.components import versions
from park.components.addons import AddonArgs, KubeRay
from park.components.charts import RenderedRelease, crd_kinds, custom_resource_kinds, render_release
from park.components.manifests import BUILDERS, ClusterFacts, HelmRelease
from park.components.spec import StackSpec, project_root
from pulumi_mocks import GraphMonitor, Harness, RecordingMocks
from schemas import require_chart_dir
from test_stacks import PROGRAM, SPECS, stack_config

RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
CRD_RESOURCE = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
Kind = tuple[str, str]


@dataclass(frozen=True)
class Installer:
    """One resource of the graph that puts objects on the cluster, with what those objects are."""

    urn: str
    applies: frozenset[Kind]
    """Kinds whose CRD it applies."""
    creates: frozenset[Kind]
    """Custom resource kinds it creates (other than those it applies the CRDs of itself)."""
    ships: frozenset[Kind] = frozenset()
    """A release: kinds whose CRD its chart carries, applied by Helm or not (its operator serves them)."""
    crd_objects: tuple[dict[str, Any], ...] = ()
    """The CRD objects it applies."""


@dataclass
class StackGraph:
    spec: StackSpec
    mocks: RecordingMocks
    graph: GraphMonitor
    installers: list[Installer]

    def inputs(self, urn: str) -> dict[str, Any]:
        node = self.graph.nodes[urn]
        return self.mocks.registrations[(node.type, node.name)].inputs

    def appliers(self, kind: Kind) -> list[Installer]:
        return [i for i in self.installers if kind in i.applies]


def kind_name(kind: Kind) -> str:
    return f"{kind[1]} ({kind[0]})"


def is_crd(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "CustomResourceDefinition"


def created_by_helm(rendered: RenderedRelease) -> list[dict[str, Any]]:
    """What a release creates on install or upgrade: its objects and every hook but its tests."""
    return [*rendered.objects, *(hook.object for hook in rendered.hooks if not hook.is_test)]


def builder_release(spec: StackSpec, inputs: dict[str, Any]) -> HelmRelease:
    """The builder's release a declared ``helm.v3.Release`` installs (same name, same values)."""
    releases = [r for build in BUILDERS.values() for r in build(spec, ClusterFacts.for_spec(spec)).releases]
    (release,) = [r for r in releases if r.name == inputs["name"]]
    assert inputs["values"] == release.values, f"release {release.name}: declared values differ from the builder"
    assert inputs["version"] == release.chart.version, f"release {release.name}: declared version differs"
    return release


def objects_installer(urn: str, objects: Iterable[dict[str, Any]]) -> Installer:
    objects = list(objects)
    crds = tuple(o for o in objects if is_crd(o))
    applies = crd_kinds(crds)
    return Installer(urn, applies, custom_resource_kinds([o for o in objects if not is_crd(o)]) - applies,
                     crd_objects=crds)


def config_group_objects(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """A ConfigGroup's objects: ``objs``, and the documents of ``yaml`` (the add-ons write JSON documents)."""
    documents = [doc for doc in re.split(r"^---$", inputs.get("yaml") or "", flags=re.MULTILINE) if doc.strip()]
    return [*(inputs.get("objs") or []), *(json.loads(doc) for doc in documents)]


def installers_of(stack: StackGraph, charts_dir: Path | None = None) -> list[Installer]:
    charts_dir = charts_dir or require_chart_dir()
    found = []
    for urn, node in stack.graph.nodes.items():
        if node.type == RELEASE:
            inputs = stack.inputs(urn)
            rendered = render_release(builder_release(stack.spec, inputs), stack.spec.kubernetes_version, charts_dir)
            helm_crds = rendered.template_crds + (() if inputs.get("skipCrds") else rendered.chart_crds)
            applies = crd_kinds(helm_crds)
            found.append(Installer(urn, applies, custom_resource_kinds(created_by_helm(rendered)) - applies,
                                   rendered.provided_kinds, helm_crds))
        elif node.type == CONFIG_GROUP:
            found.append(objects_installer(urn, config_group_objects(stack.inputs(urn))))
        elif node.type == CRD_RESOURCE:
            found.append(objects_installer(urn, [{"kind": "CustomResourceDefinition", **stack.inputs(urn)}]))
    return found


def declare_stack(stack: str) -> StackGraph:
    """Run the stack program under the mocks; every registration has reached the monitor on return."""
    mocks = RecordingMocks()
    graph = GraphMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="park", stack=stack, preview=False, monitor=graph)
    pulumi.runtime.set_all_config(stack_config(project_root() / "stacks" / f"Pulumi.{stack}.yaml"))

    @pulumi.runtime.test  # returns once every registration has been answered
    def run_program() -> None:
        runpy.run_path(str(PROGRAM))

    try:
        run_program()
    finally:
        pulumi.runtime.set_all_config({})
    declared = StackGraph(SPECS[stack], mocks, graph, [])
    declared.installers = installers_of(declared)
    return declared


@pytest.fixture(scope="module", params=sorted(SPECS))
def stack(request) -> StackGraph:
    return declare_stack(request.param)


def test_every_custom_resource_waits_for_the_resource_applying_its_crd(stack: StackGraph):
    """The issue's race: dcgm-exporter's chart renders a ServiceMonitor (dcgm-exporter 4.8.2
    templates/service-monitor.yaml) whose CRD comes with kube-prometheus-stack 88.5.3 (charts/crds/crds/)."""
    problems = []
    creators = [i for i in stack.installers if i.creates]
    assert creators, f"{stack.spec.cluster_name}: nothing creates a custom resource, the check would be empty"
    for creator in creators:
        waits_for = stack.graph.closure(creator.urn)
        for kind in sorted(creator.creates):
            appliers = stack.appliers(kind)
            if not appliers:
                problems.append(f"{creator.urn} renders {kind_name(kind)} but nothing in the stack applies its CRD")
            elif not any(a.urn in waits_for for a in appliers):
                problems.append(f"{creator.urn} renders {kind_name(kind)} but does not wait for "
                                f"{' or '.join(a.urn for a in appliers)}, which applies its CRD")
    assert not problems, "\n".join(problems)


def test_every_custom_resource_waits_for_the_release_serving_its_kind(stack: StackGraph):
    """A custom resource also needs its operator's admission webhooks serving: Kueue 0.19.2 validates its
    queues (templates/webhook/), kube-prometheus-stack 88.5.3 its PrometheusRules
    (templates/prometheus-operator/admission-webhooks/). The release shipping the CRD runs that operator."""
    problems = []
    for creator in stack.installers:
        waits_for = stack.graph.closure(creator.urn)
        for kind in sorted(creator.creates):
            servers = [i for i in stack.installers if kind in i.ships and i.urn != creator.urn]
            if servers and not any(s.urn in waits_for for s in servers):
                problems.append(f"{creator.urn} renders {kind_name(kind)} but does not wait for "
                                f"{' or '.join(s.urn for s in servers)}, whose chart ships its CRD")
    assert not problems, "\n".join(problems)


def test_chart_crds_are_their_own_resources_and_helm_skips_them(stack: StackGraph):
    """Helm installs a chart's crds/ folder on first install only and never upgrades it (Helm docs, "Custom
    Resource Definitions": "no support at this time for upgrading or deleting CRDs using Helm"); applied as
    their own resources, a pinned version bump changes them like any other input."""
    shipping = 0
    for installer in stack.installers:
        if stack.graph.nodes[installer.urn].type != RELEASE:
            continue
        inputs = stack.inputs(installer.urn)
        rendered = render_release(builder_release(stack.spec, inputs), stack.spec.kubernetes_version,
                                  require_chart_dir())
        if not rendered.chart_crds:
            continue
        shipping += 1
        assert inputs.get("skipCrds") is True, f"{installer.urn} lets Helm install crds/, which it never upgrades"
        waits_for = stack.graph.closure(installer.urn)
        for crd in rendered.chart_crds:
            name = crd["metadata"]["name"]
            applied = [(a, o) for a in stack.installers for o in a.crd_objects if o["metadata"]["name"] == name]
            assert len(applied) == 1, f"CRD {name} of {installer.urn} is applied {len(applied)} times"
            applier, obj = applied[0]
            assert obj["spec"] == crd["spec"], f"{applier.urn} applies CRD {name} other than the chart's"
            assert applier.urn in waits_for, f"{installer.urn} starts its operator before {applier.urn} (its CRDs)"
    assert shipping, f"{stack.spec.cluster_name}: no release ships crds/ (kube-prometheus-stack, KubeRay do)"


def test_a_chart_version_bump_changes_the_applied_crds(tmp_path, monkeypatch):
    """A newer KubeRay chart folder with a changed CRD: the CRD resource's inputs carry the change (Pulumi
    updates it server-side), and the release installs the new version with its crds/ skipped."""
    bumped = versions.Chart(versions.KUBERAY_CHART.name, "1.7.1-test", versions.KUBERAY_CHART.repo)
    pinned = require_chart_dir()
    for folder in pinned.iterdir():
        (tmp_path / folder.name).symlink_to(folder)
    source = pinned / f"{versions.KUBERAY_CHART.name}-{versions.KUBERAY_CHART.version}"
    target = tmp_path / f"{bumped.name}-{bumped.version}"
    shutil.copytree(source, target)
    target.chmod(0o755)
    for path in [target / "Chart.yaml", target / "crds", target / "crds" / "ray.io_rayjobs.yaml"]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    chart_yaml = (target / "Chart.yaml").read_text()
    (target / "Chart.yaml").write_text(chart_yaml.replace(f"version: {source.name.rsplit('-', 1)[1]}",
                                                          f"version: {bumped.version}"))
    crd_path = target / "crds" / "ray.io_rayjobs.yaml"
    crd_path.write_text(crd_path.read_text().replace("    - jsonPath: .status.jobStatus\n      name: job status",
                                                     "    - jsonPath: .status.jobStatus\n      name: bumped", 1))
    monkeypatch.setenv("PARK_CHART_DIR", str(tmp_path))
    monkeypatch.setattr(versions, "KUBERAY_CHART", bumped)

    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="park", stack="kind", preview=False)
    spec = SPECS["kind"]

    @pulumi.runtime.test
    def declare():
        harness = Harness(mocks)
        opts = pulumi.ResourceOptions(parent=harness.parent)
        KubeRay("kuberay", AddonArgs(spec=spec, provider=k8s.Provider("cluster", kubeconfig="{}", opts=opts)),
                opts=opts)

    declare()
    release = next(r.inputs for (t, _), r in mocks.registrations.items() if t == RELEASE)
    assert release["version"] == bumped.version and release["skipCrds"] is True
    groups = [config_group_objects(r.inputs) for (t, _), r in mocks.registrations.items() if t == CONFIG_GROUP]
    rayjob = next(o for objs in groups for o in objs if o["metadata"]["name"] == "rayjobs.ray.io")
    columns = [c["name"] for c in rayjob["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert "bumped" in columns, "the CRD applied is not the bumped chart's: a version bump would not upgrade it"


def test_a_chart_that_cannot_be_found_stops_the_program_in_one_line(tmp_path, monkeypatch):
    """The add-ons render their charts while the program runs: a missing one is a RunError (shown without a
    traceback) naming the add-on and the folder, not a stack trace from deep inside Helm."""
    monkeypatch.setenv("PARK_CHART_DIR", str(tmp_path))
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="park", stack="kind", preview=False)
    provider = k8s.Provider("cluster", kubeconfig="{}")
    chart = f"{versions.KUBERAY_CHART.name}-{versions.KUBERAY_CHART.version}"
    with pytest.raises(pulumi.RunError, match=rf"^add-on kuberay: chart .*: no {re.escape(chart)}/ in {tmp_path}"):
        KubeRay("kuberay", AddonArgs(spec=SPECS["kind"], provider=provider))
