"""The one place that finds Helm charts and renders them, offline, with Helm's own engine.

``park render``, the tests and the Pulumi side all ask this module what a release installs, so the install
order, the CRDs a release provides and the objects it creates come from the real chart, not from a list.

Where a chart comes from (:class:`ChartSource`), first match wins:

1. ``--charts DIR`` or ``$PARK_CHART_DIR``: a folder of unpacked charts named ``<name>-<version>/`` (the layout
   of ``../shared/charts``); a chart's dependencies are sibling folders ``<dependency>-<version>/``. Nothing is
   downloaded: this is the air-gapped way, and a missing chart is an error naming the folder.
2. ``../shared/charts`` beside the checkout, when it holds the chart (the development and CI default).
3. The chart's repository (``versions.Chart.repo``, HTTP or ``oci://``), pulled once into a cache folder
   (``$PARK_CHART_CACHE``, default ``~/.cache/park-stack/charts``).

Rendering is ``helm template`` done in-process by the Helm Go SDK that ``helm-python-sdk`` bundles, with the
release name, namespace, ``is_install`` and the stack's Kubernetes version as ``.Capabilities.KubeVersion``.
Results are cached per process: tests render the same release many times.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import pickle
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from park.components import versions
from park.components.manifests.common import HelmRelease
from park.components.spec import shared_folder, user_cache_dir

CHART_DIR_ENV = "PARK_CHART_DIR"
CHART_CACHE_ENV = "PARK_CHART_CACHE"

HOOK_ANNOTATION = "helm.sh/hook"
HOOK_WEIGHT_ANNOTATION = "helm.sh/hook-weight"
INSTALL_HOOK_EVENTS = ("pre-install", "post-install")
"""Hook events a first install runs (Helm v4 pkg/action/install.go); test, delete, upgrade-only and
rollback hooks never run on install."""

INSTALL_ORDER = (
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
    "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList",
    "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
    "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)
"""Helm's install order by kind (Helm v4 pkg/release/util/kind_sorter.go ``InstallOrder``); other kinds
(custom resources) follow, alphabetically by kind."""

BUILTIN_API_GROUPS = frozenset({
    "", "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io", "apps",
    "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch", "certificates.k8s.io",
    "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io", "networking.k8s.io", "node.k8s.io", "policy", "rbac.authorization.k8s.io",
    "resource.k8s.io", "scheduling.k8s.io", "storage.k8s.io", "storagemigration.k8s.io",
})
"""API groups the Kubernetes API server serves itself; any other group is a custom resource (a CRD's)."""

CLUSTER_SCOPED_BUILTIN_KINDS = frozenset({
    "APIService", "CertificateSigningRequest", "ClusterRole", "ClusterRoleBinding", "ClusterTrustBundle",
    "ComponentStatus", "CSIDriver", "CSINode", "CustomResourceDefinition", "DeviceClass", "FlowSchema",
    "IngressClass", "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "MutatingWebhookConfiguration",
    "Namespace", "Node", "PersistentVolume", "PriorityClass", "PriorityLevelConfiguration", "RuntimeClass",
    "StorageClass", "StorageVersionMigration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration", "VolumeAttachment", "VolumeAttributesClass",
})
"""Built-in kinds without a namespace; every other built-in kind is namespaced (checked against the
Kubernetes client's API in the tests)."""


class ChartError(RuntimeError):
    """A chart could not be found or rendered; the message is one line a person can act on."""


# --- finding charts ---------------------------------------------------------------------------------


def default_shared_chart_dir() -> Path | None:
    """``../shared/charts`` beside the checkout, when there is one."""
    folder = shared_folder("charts")
    return folder if folder.is_dir() else None


def default_cache_dir() -> Path:
    return user_cache_dir("charts", CHART_CACHE_ENV)


def folder_name(name: str, version: str) -> str:
    return f"{name}-{version}"


@dataclass(frozen=True)
class ChartSource:
    """Where charts are looked up; see the module docstring for the order."""

    local_dir: Path | None = None
    """An explicit chart folder (``--charts``, ``$PARK_CHART_DIR``): used alone, nothing is pulled."""
    shared_dir: Path | None = None
    """``../shared/charts`` beside the checkout, tried before pulling."""
    cache_dir: Path = field(default_factory=default_cache_dir)

    @classmethod
    def resolve(cls, charts_dir: Path | str | None = None) -> ChartSource:
        """``charts_dir`` (the ``--charts`` option), else ``$PARK_CHART_DIR``, else the defaults."""
        explicit = charts_dir or os.environ.get(CHART_DIR_ENV) or None
        if explicit:
            return cls(local_dir=Path(explicit).expanduser().resolve())
        return cls(shared_dir=default_shared_chart_dir())

    def locate(self, chart: versions.Chart) -> Path:
        """A folder Helm can load for ``chart``, with its dependencies under ``charts/``."""
        return _locate(self, chart.name, chart.version, chart.repo)


@functools.cache
def _scratch_root() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="park-charts-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _declared_dependencies(chart_dir: Path) -> list[dict[str, Any]]:
    metadata = yaml.safe_load((chart_dir / "Chart.yaml").read_text()) or {}
    return list(metadata.get("dependencies") or [])


def _with_dependencies(chart_dir: Path, siblings: Path) -> Path:
    """``chart_dir`` itself when every dependency is in its ``charts/``; else a scratch copy with the
    sibling folders ``<dependency>-<version>/`` placed under ``charts/<dependency>``."""
    missing = []
    for dep in _declared_dependencies(chart_dir):
        present = (chart_dir / "charts" / dep["name"]).is_dir() or any(
            (chart_dir / "charts").glob(f"{dep['name']}-*.tgz"))
        sibling = siblings / folder_name(dep["name"], str(dep.get("version", "")))
        if not present and sibling.is_dir():
            missing.append((dep["name"], sibling))
    if not missing:
        return chart_dir
    scratch = _scratch_root() / chart_dir.name
    if not scratch.exists():
        shutil.copytree(chart_dir, scratch)
        for name, sibling in missing:
            shutil.copytree(sibling, scratch / "charts" / name)
    return scratch


@functools.cache
def _locate(source: ChartSource, name: str, version: str, repo: str) -> Path:
    wanted = folder_name(name, version)
    if source.local_dir is not None:
        found = source.local_dir / wanted
        if not (found / "Chart.yaml").is_file():
            raise ChartError(f"chart {name} {version}: no {wanted}/ in {source.local_dir}; unpack the chart from "
                             f"{repo} there as {wanted}/ (Chart.yaml inside), or drop --charts/${CHART_DIR_ENV} "
                             f"to pull it")
        return _with_dependencies(found, source.local_dir)
    if source.shared_dir is not None and (source.shared_dir / wanted / "Chart.yaml").is_file():
        return _with_dependencies(source.shared_dir / wanted, source.shared_dir)
    return _pull(source.cache_dir, name, version, repo)


def _pull(cache_dir: Path, name: str, version: str, repo: str) -> Path:
    """The chart unpacked under ``cache_dir/<name>-<version>/<name>``, pulled once from its repository."""
    target = cache_dir / folder_name(name, version)
    unpacked = target / name
    if (unpacked / "Chart.yaml").is_file():
        return unpacked
    import helm_python

    target.mkdir(parents=True, exist_ok=True)
    try:
        if repo.startswith("oci://"):
            helm_python.pull(repo, version=version, destination=target, untar=True, untar_dir=target)
        else:
            helm_python.pull(name, repo_url=repo, version=version, destination=target, untar=True,
                             untar_dir=target)
    except helm_python.HelmError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ChartError(f"chart {name} {version}: pulling from {repo} into {target} failed ({reason}); "
                         f"without network, pass --charts DIR (or set ${CHART_DIR_ENV}) to a folder holding "
                         f"{folder_name(name, version)}/") from None
    if not (unpacked / "Chart.yaml").is_file():
        raise ChartError(f"chart {name} {version}: pulled from {repo}, but {unpacked} holds no Chart.yaml")
    return unpacked


# --- rendering --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hook:
    """An object the chart marks as a Helm hook (``helm.sh/hook``), run around install/upgrade/delete."""

    object: dict[str, Any]
    events: tuple[str, ...]
    weight: int

    @property
    def is_test(self) -> bool:
        return any(e in ("test", "test-success") for e in self.events)

    @property
    def install_phase(self) -> str | None:
        """``pre-install`` or ``post-install`` (the earlier when both), or None when a first install never
        runs it (test, delete, upgrade-only and rollback hooks)."""
        return next((e for e in INSTALL_HOOK_EVENTS if e in self.events), None)


@dataclass(frozen=True)
class RenderedRelease:
    """What one Helm release installs, as Helm's engine renders it for a first install."""

    release: HelmRelease
    chart_dir: Path
    chart_crds: tuple[dict[str, Any], ...]
    """CRDs from the ``crds/`` folders of the chart and its subcharts (Helm installs them first and never
    upgrades them)."""
    template_crds: tuple[dict[str, Any], ...]
    """CRDs the chart renders as templates (Kueue's chart does); Helm upgrades these like any object."""
    objects: tuple[dict[str, Any], ...]
    """Every other non-hook object, namespaces filled in, in Helm's install order."""
    hooks: tuple[Hook, ...]
    """Hook objects (tests included), sorted as Helm runs them: by weight, then kind order, then name."""

    @property
    def crds(self) -> tuple[dict[str, Any], ...]:
        """Every CRD this release provides."""
        return self.chart_crds + self.template_crds

    @property
    def provided_kinds(self) -> frozenset[tuple[str, str]]:
        """(group, kind) of every custom resource kind this release's CRDs define."""
        return crd_kinds(self.crds)

    def install_hooks(self, phase: str) -> tuple[dict[str, Any], ...]:
        """The objects of the hooks a first install runs in ``phase`` (``pre-install``/``post-install``)."""
        return tuple(h.object for h in self.hooks if h.install_phase == phase)

    def install_objects(self) -> list[dict[str, Any]]:
        """What a first install creates, hooks included, in order: pre-install hooks, objects, post-install
        hooks (CRDs left out: they are applied on their own, first)."""
        return [*self.install_hooks("pre-install"), *self.objects, *self.install_hooks("post-install")]


def api_group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def is_custom_resource(obj: dict[str, Any]) -> bool:
    return api_group(str(obj.get("apiVersion", ""))) not in BUILTIN_API_GROUPS


def crd_kinds(crds: Iterable[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    """(group, kind) each CRD defines."""
    return frozenset((c["spec"]["group"], c["spec"]["names"]["kind"]) for c in crds)


def custom_resource_kinds(objects: Iterable[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    """(group, kind) of every custom resource among ``objects`` (hooks included, if given)."""
    return frozenset((api_group(o["apiVersion"]), o["kind"]) for o in objects if is_custom_resource(o))


def kind_rank(kind: str) -> tuple[int, str]:
    """Sort key of Helm's install order: listed kinds by position, then the others alphabetically."""
    try:
        return INSTALL_ORDER.index(kind), ""
    except ValueError:
        return len(INSTALL_ORDER), kind


def kubernetes_semver(kubernetes_version: str) -> str:
    """``1.33`` -> ``v1.33.0``, the form Helm's ``.Capabilities.KubeVersion`` has on a real cluster."""
    parts = kubernetes_version.lstrip("v").split(".")
    return "v" + ".".join((parts + ["0", "0"])[:3])


@functools.cache
def _load_chart(chart_dir: Path) -> Any:
    import helm_python

    try:
        return helm_python.Chart.load(chart_dir)
    except helm_python.HelmError as err:
        raise ChartError(f"{chart_dir}: not a chart Helm can load ({str(err).splitlines()[0]})") from None


def _render_templates(chart: Any, values: dict[str, Any], name: str, namespace: str,
                      kube_version: str) -> dict[str, str]:
    """``helm template`` of a loaded chart. ``Chart.render`` of helm-python-sdk 0.2.2 does not expose the
    kube version, but the render options its C library reads do (``kube_version``, as ``helm template
    --kube-version``); so the call goes one level down, to the same function ``Chart.render`` calls."""
    from helm_python import _native

    options = {"name": name, "namespace": namespace, "is_install": True, "kube_version": kube_version}
    rendered: dict[str, str] = json.loads(_native.call_string(
        "helm_render", chart._raw(), json.dumps(values), json.dumps(options)))
    return rendered


_DOCUMENT_SEPARATOR = re.compile(r"(?:^|\n)---\s*")
"""How Helm splits a rendered file into documents (Helm v4 pkg/release/util/manifest.go ``SplitManifests``
uses ``(?:^|\s*\n)---\s*``; the leading ``\s*`` only trims whitespace that YAML ignores anyway, and
backtracks quadratically over the indentation of megabyte CRDs in Python's engine: 1 s against 0.15 s)."""


def _documents(text: str, origin: str) -> list[dict[str, Any]]:
    """The non-empty documents of a rendered file, read by Helm's own YAML reader (sigs.k8s.io/yaml, as
    the API server reads them; about twice as fast as PyYAML on KubeRay's megabyte CRDs)."""
    import helm_python

    docs = []
    single = not text.startswith("---") and "\n---" not in text  # skips a slow regex over megabyte CRDs
    for piece in [text] if single else _DOCUMENT_SEPARATOR.split(text):
        if not piece.strip():
            continue
        try:
            doc = helm_python.values_from_yaml(piece)
        except helm_python.HelmError as err:
            raise ChartError(f"{origin}: rendered YAML does not parse ({str(err).splitlines()[0]})") from None
        if doc:
            docs.append(doc)
    return docs


def _place_in_namespace(obj: dict[str, Any], namespace: str, cluster_kinds: frozenset[tuple[str, str]]) -> None:
    """A namespaced object without a namespace goes to the release namespace (as Helm's install does); a
    cluster-scoped one loses any namespace a template gave it (as the API server does on create)."""
    meta = obj.setdefault("metadata", {})
    if is_custom_resource(obj):
        cluster = (api_group(obj["apiVersion"]), obj["kind"]) in cluster_kinds
    else:
        cluster = obj["kind"] in CLUSTER_SCOPED_BUILTIN_KINDS
    if cluster:
        meta.pop("namespace", None)
    elif not meta.get("namespace"):
        meta["namespace"] = namespace


def _hook_of(obj: dict[str, Any]) -> Hook | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if HOOK_ANNOTATION not in annotations:
        return None
    events = tuple(e.strip().lower() for e in str(annotations[HOOK_ANNOTATION]).split(",") if e.strip())
    try:
        weight = int(annotations.get(HOOK_WEIGHT_ANNOTATION, 0))
    except ValueError:
        weight = 0
    return Hook(obj, events, weight)


@functools.cache
def _chart_crds(chart_dir: Path) -> list[dict[str, Any]]:
    """The ``crds/`` files of the chart and its subcharts, parsed once per process (they do not depend on
    values, and KubeRay's are megabytes)."""
    crd_files = sorted(_load_chart(chart_dir).crds, key=lambda f: f["filename"])
    return [d for f in crd_files for d in _documents(f["data"], f["filename"])]


@functools.cache
def _render_cached(chart_dir: Path, values_json: str, name: str, namespace: str,
                   kube_version: str) -> tuple[tuple[dict, ...], tuple[dict, ...], tuple[dict, ...], tuple[Hook, ...]]:
    import helm_python

    chart = _load_chart(chart_dir)
    try:
        files = _render_templates(chart, json.loads(values_json), name, namespace, kube_version)
    except helm_python.HelmError as err:
        message = " ".join(str(err).split())
        raise ChartError(f"release {namespace}/{name} ({chart_dir.name}): Helm could not render it: {message}") \
            from None
    chart_crds = _chart_crds(chart_dir)
    rendered: list[dict[str, Any]] = []
    for path in sorted(files):  # Helm sorts by file path, then keeps each file's document order
        if posixpath.basename(path).startswith("_") or path.endswith("NOTES.txt"):
            continue
        rendered += _documents(files[path], path)
    template_crds = [d for d in rendered if d.get("kind") == "CustomResourceDefinition"]
    cluster_kinds = frozenset(
        (c["spec"]["group"], c["spec"]["names"]["kind"]) for c in chart_crds + template_crds
        if c["spec"].get("scope") == "Cluster")
    objects, hooks = [], []
    for doc in rendered:
        if doc.get("kind") == "CustomResourceDefinition":
            continue
        _place_in_namespace(doc, namespace, cluster_kinds)
        hook = _hook_of(doc)
        if hook is None:
            objects.append(doc)
        else:
            hooks.append(hook)
    objects.sort(key=lambda o: kind_rank(o["kind"]))  # stable: same kind keeps file order
    hooks.sort(key=lambda h: kind_rank(h.object["kind"]))
    hooks.sort(key=lambda h: (h.weight, h.object["metadata"].get("name", "")))
    return tuple(chart_crds), tuple(template_crds), tuple(objects), tuple(hooks)


def render_release(release: HelmRelease, kubernetes_version: str,
                   charts_dir: Path | str | ChartSource | None = None) -> RenderedRelease:
    """Render ``release`` as ``helm install`` would on a cluster of ``kubernetes_version`` (``"1.33"``).

    ``charts_dir`` is a folder of ``<name>-<version>/`` charts or a :class:`ChartSource` (default:
    ``ChartSource.resolve()``). Each result is a fresh copy; the rendering itself is cached per process.
    Raises :class:`ChartError` (one line) when the chart is missing or does not render.
    """
    source = charts_dir if isinstance(charts_dir, ChartSource) else ChartSource.resolve(charts_dir)
    chart_dir = source.locate(release.chart)
    values_json = json.dumps(release.values, sort_keys=True)
    cached = _render_cached(chart_dir, values_json, release.name, release.namespace,
                            kubernetes_semver(kubernetes_version))
    chart_crds, template_crds, objects, hooks = pickle.loads(pickle.dumps(cached))  # faster than deepcopy
    return RenderedRelease(release, chart_dir, chart_crds, template_crds, objects, hooks)


# --- values the chart does not read -----------------------------------------------------------------


def unread_values(release: HelmRelease, charts_dir: Path | str | ChartSource | None = None) -> list[str]:
    """Dotted paths of values the release sets that the chart (subcharts included) neither declares in a
    ``values.yaml`` nor reads in a template: most likely typos, which Helm ignores silently.

    Cheap and deliberately lenient: a key counts as read when its name appears in a template (``.key`` or
    ``"key"``), or when it sits under a map the chart declares empty (``nodeSelector: {}``) or passes on whole
    (``range``/``toYaml`` over it, as cluster-autoscaler does with ``extraArgs``).
    """
    source = charts_dir if isinstance(charts_dir, ChartSource) else ChartSource.resolve(charts_dir)
    chart_dir = source.locate(release.chart)
    defaults = _load_chart(chart_dir).merge_values({})
    templates = _template_text(chart_dir)
    problems: list[str] = []

    def read_in_templates(key: str, parent: str | None) -> bool:
        if re.search(rf"\.{re.escape(key)}\b|\"{re.escape(key)}\"", templates):
            return True
        return parent is not None and re.search(
            rf"(range|toYaml|toJson)[^\n]*\.{re.escape(parent)}\s*(}}|\||\))", templates) is not None

    def walk(value: Any, default: Any, path: list[str]) -> None:
        if not isinstance(value, dict):
            return
        for key, child in value.items():
            where = [*path, str(key)]
            if isinstance(default, dict) and key in default:
                known = default[key]
                if isinstance(known, dict) and known:
                    walk(child, known, where)
                continue
            if not read_in_templates(str(key), path[-1] if path else None):
                problems.append(".".join(where))

    walk(release.values, defaults, [])
    return problems


@functools.cache
def _template_text(chart_dir: Path) -> str:
    """Every template of the chart and its unpacked subcharts, as one text."""
    return "\n".join(p.read_text(errors="replace") for p in sorted(chart_dir.rglob("templates/**/*"))
                     if p.is_file())


__all__ = [
    "BUILTIN_API_GROUPS", "CHART_CACHE_ENV", "CHART_DIR_ENV", "CLUSTER_SCOPED_BUILTIN_KINDS", "INSTALL_ORDER",
    "ChartError", "ChartSource", "Hook", "RenderedRelease", "api_group", "crd_kinds", "custom_resource_kinds",
    "is_custom_resource", "kind_rank", "kubernetes_semver", "render_release", "unread_values",
]
