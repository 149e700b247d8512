"""``park render``: every Kubernetes object a stack applies, as YAML anyone can ``kubectl apply --server-side``.

Output order:

1. every CustomResourceDefinition of every Helm release (the charts' ``crds/`` folders and CRDs a chart renders
   as templates), as objects of their own: Helm installs ``crds/`` once and never upgrades them, so applying
   them server-side here is how a pinned-version bump reaches the cluster;
2. per add-on in apply order (namespaces and security, storage, observability, GPU, KubeRay, Kueue,
   autoscaler): each Helm release's objects as Helm's engine renders them for a first install
   (``park.components.charts``), then the add-on's own objects (often custom resources of those operators);
3. with ``--workloads``, the reference RayJobs / RayService.

Helm hooks: test hooks and hooks a first install never runs (delete, upgrade-only, rollback) are dropped;
install hooks are kept in place, pre-install before the release's objects and post-install after them, with
their ``helm.sh/hook`` annotations (kubectl applies them as ordinary objects; Argo CD maps them to its own
sync hooks). No Pulumi, no cluster, no cloud needed: cloud-side facts come from the spec
(``ClusterFacts.for_spec``); charts come from ``--charts DIR`` / ``$PARK_CHART_DIR`` or their repositories.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml
from park.components.charts import ChartError, ChartSource, RenderedRelease, render_release
from park.components.manifests import build_all
from park.components.spec import SpecError, StackSpec, load_stack_file, resolve_stack_file

INVALID_CONFIG_EXIT = 2
_RENDERED_FILE = re.compile(r"^\d{3,}-[a-z0-9.-]+\.yaml$")


class RenderError(RuntimeError):
    """Rendering failed for a reason that is not the stack config (reported without a traceback)."""


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style for multi-line strings (embedded configs and dashboards stay readable); no YAML
    anchors for values the builders share between objects. LibYAML's emitter when present: the pure-Python
    one takes most of a minute on the charts' megabyte CRDs."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def workload_documents(spec: StackSpec, team: str | None = None, priority: str | None = None) -> list[dict[str, Any]]:
    """The reference workloads' RayJobs / RayService (``park.workloads.render_workloads``), imported lazily."""
    try:
        from park.workloads import render_workloads
    except ImportError as err:
        raise RenderError(f"--workloads: park.workloads.render_workloads is not available ({err})") from None
    return list(render_workloads(spec, team=team, priority=priority))


def rendered_releases(spec: StackSpec, charts: Path | str | ChartSource | None = None) -> list[RenderedRelease]:
    """Every Helm release of the stack, rendered for the stack's Kubernetes version, in apply order."""
    source = charts if isinstance(charts, ChartSource) else ChartSource.resolve(charts)
    return [render_release(release, spec.kubernetes_version, source)
            for addon in build_all(spec) for release in addon.releases]


def render_documents(spec: StackSpec, workloads: bool = False, charts: Path | str | ChartSource | None = None,
                     team: str | None = None, priority: str | None = None) -> list[dict[str, Any]]:
    """Everything ``park render`` writes, in apply order: all CRDs, then per add-on its releases' objects
    and its own objects, then (``workloads``) the reference workloads. Raises ``ChartError``."""
    source = charts if isinstance(charts, ChartSource) else ChartSource.resolve(charts)
    crds: dict[str, dict[str, Any]] = {}
    body: list[dict[str, Any]] = []
    for addon in build_all(spec):
        for release in addon.releases:
            rendered = render_release(release, spec.kubernetes_version, source)
            for crd in rendered.crds:
                crds.setdefault(crd["metadata"]["name"], crd)
            body += rendered.install_objects()
        body += addon.documents()
    if workloads:
        body += workload_documents(spec, team=team, priority=priority)
    return [*crds.values(), *body]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-")


def file_names(documents: list[dict[str, Any]]) -> list[str]:
    """Stable, sortable names in apply order: ``010-namespace-research.yaml``,
    ``040-serviceaccount-research-park-ray.yaml`` (kind, then namespace if any, then name)."""
    width = max(3, len(str(len(documents) * 10)))
    names = []
    for position, doc in enumerate(documents, start=1):
        meta = doc.get("metadata", {})
        parts = [doc.get("kind", "object"), meta.get("namespace"), meta.get("name", "unnamed")]
        slug = "-".join(_slug(str(p)) for p in parts if p)
        names.append(f"{position * 10:0{width}d}-{slug}.yaml")
    return names


def write_stream(documents: list[dict[str, Any]], out: TextIO) -> None:
    out.write("---\n".join(to_yaml(doc) for doc in documents))


def write_directory(documents: list[dict[str, Any]], directory: Path) -> list[Path]:
    """One file per document; files from an earlier render (same naming pattern) are removed first,
    so the folder always matches the stack."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.iterdir():
        if stale.is_file() and _RENDERED_FILE.match(stale.name):
            stale.unlink()
    written = []
    for name, doc in zip(file_names(documents), documents, strict=True):
        path = directory / name
        path.write_text(to_yaml(doc))
        written.append(path)
    return written


def render_command(stack: str, out: Path | None = None, workloads: bool = False, charts: Path | None = None,
                   team: str | None = None, priority: str | None = None,
                   stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``park render``; returns the exit code (2 for invalid config, one ``path: reason`` line each;
    1 for a chart that cannot be found or rendered, one line)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        spec = load_stack_file(resolve_stack_file(stack))
    except SpecError as err:
        for problem in err.problems:
            print(str(problem), file=stderr)
        return INVALID_CONFIG_EXIT
    try:
        documents = render_documents(spec, workloads=workloads, charts=charts, team=team, priority=priority)
    except SpecError as err:  # a workload builder found the spec unusable for it (or an unknown --team)
        for problem in err.problems:
            print(str(problem), file=stderr)
        return INVALID_CONFIG_EXIT
    except (RenderError, ChartError) as err:
        print(str(err), file=stderr)
        return 1
    if out is None:
        write_stream(documents, stdout)
    else:
        written = write_directory(documents, out)
        print(f"wrote {len(written)} files to {out}", file=stderr)
    return 0
