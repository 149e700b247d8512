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

It sits in the CLI layer, beside ``park.cli``, because it combines the components' manifests with the reference
workloads: ``park.components`` never imports ``park.workloads`` (.importlinter).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

from park.components.charts import ChartError, ChartSource, RenderedRelease, render_release
from park.components.manifests import build_all
from park.components.manifests.yaml_writer import to_yaml
from park.components.spec import (
    INVALID_CONFIG_EXIT,
    SpecError,
    StackSpec,
    load_stack_for_command,
    print_problems,
)
from park.outputs import os_error_text

RECORD_FILE = ".park-render"
"""What ``park render --out`` wrote into a folder: JSON with the park version, the stack and each file's name
and sha256. Named without ``.json``/``.yaml``/``.yml`` because ``kubectl apply -f DIR`` reads every file with
those extensions (kubernetes cli-runtime pkg/resource/visitor.go, ``FileExtensions`` and ``ignoreFile``)."""

OUT_REFUSED_EXIT = 2
"""``--out`` refused (not empty and not park render's; nothing is changed then) or not writable."""

FORCE_HINT = "pass --force to write anyway (it overwrites files of the same names and removes nothing else)"


class RenderError(RuntimeError):
    """Rendering failed for a reason that is not the stack config (reported without a traceback)."""


def workload_documents(spec: StackSpec, team: str | None = None, priority: str | None = None) -> list[dict[str, Any]]:
    """The reference workloads' RayJobs / RayService (``park.workloads.render_workloads``), imported here so
    that a builder needing the workloads extra fails ``--workloads`` only, with one line, not ``park render``."""
    try:
        from park.workloads import render_workloads  # optional extra: workloads, if a builder needs it
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


class OutFolderError(RenderError):
    """``--out`` names a folder park render must not or cannot write: one line, exit 2, nothing changed."""


@dataclass
class DirectoryWrite:
    """What ``write_directory`` did: files written, stale files of its previous render removed, and files
    of its previous render kept because they were edited since (the stack no longer makes them)."""

    written: list[Path]
    removed: list[str] = field(default_factory=list)
    kept_edited: list[str] = field(default_factory=list)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _park_version() -> str:
    try:
        return version("park-stack")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def _read_record(directory: Path, force: bool) -> dict[str, str] | None:
    """The recorded ``{file name: sha256}`` of the previous render into ``directory``; None without one."""
    path = directory / RECORD_FILE
    if not path.exists():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise ValueError("files is not a name -> sha256 mapping")
        return files
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        if force:
            return {}
        raise OutFolderError(f"--out {directory}: {RECORD_FILE} is not a park render record ({err}); "
                             f"{FORCE_HINT}") from None


def _one_line_list(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def write_directory(documents: list[dict[str, Any]], directory: Path, stack: str = "",
                    force: bool = False) -> DirectoryWrite:
    """One file per document, and ``RECORD_FILE`` listing them with their hashes.

    Only what park render wrote is ever removed: files the previous render's record lists and that are
    unchanged since (so ``kubectl apply -f DIR`` does not bring back objects the stack dropped). Raises
    ``OutFolderError``, before changing anything, for a folder that is not empty and has no record, or for a
    file render would overwrite that it did not write or that was edited since; ``force`` writes anyway
    (overwriting such files, removing nothing else). Raises ``OSError`` for a folder it cannot write."""
    if directory.exists() and not directory.is_dir():
        raise OutFolderError(f"--out {directory} exists and is not a folder")
    recorded = _read_record(directory, force) if directory.is_dir() else None
    present = {entry.name: entry for entry in directory.iterdir()} if directory.is_dir() else {}
    present.pop(RECORD_FILE, None)
    present.pop(f"{RECORD_FILE}.tmp", None)  # left by a render interrupted while writing the record
    if recorded is None and present and not force:
        raise OutFolderError(f"--out {directory} is not empty and park render did not write it (no {RECORD_FILE} "
                             f"there); choose an empty or new folder, or {FORCE_HINT}")
    ours, edited = [], []  # files of the previous render: unchanged since / changed since
    for name, digest in (recorded or {}).items():
        entry = present.get(name)
        if entry is not None and entry.is_file():
            (ours if _sha256(entry.read_bytes()) == digest else edited).append(name)
    contents = [to_yaml(doc).encode("utf-8") for doc in documents]
    names = file_names(documents)
    in_the_way = [name for name in names if name in present and name not in ours]
    if in_the_way and not force:
        changed = [name for name in in_the_way if name in edited]
        foreign = [name for name in in_the_way if name not in edited]
        what = [f"{_one_line_list(group)} ({why})" for group, why in (
            (changed, "edited since park render wrote it"), (foreign, "not written by park render")) if group]
        raise OutFolderError(f"--out {directory}: park render would overwrite {' and '.join(what)}; "
                             f"move them away, or {FORCE_HINT}")
    directory.mkdir(parents=True, exist_ok=True)
    new_names = set(names)
    removed = [name for name in ours if name not in new_names]
    for name in removed:
        (directory / name).unlink()
    written = []
    for name, data in zip(names, contents, strict=True):
        path = directory / name
        path.write_bytes(data)
        written.append(path)
    record = {"park": _park_version(), "stack": stack,
              "files": {name: _sha256(data) for name, data in zip(names, contents, strict=True)}}
    staging = directory / f"{RECORD_FILE}.tmp"
    staging.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(staging, directory / RECORD_FILE)
    return DirectoryWrite(written, removed, [name for name in edited if name not in new_names])


def render_command(stack: str, out: Path | None = None, workloads: bool = False, charts: Path | None = None,
                   team: str | None = None, priority: str | None = None, force: bool = False,
                   stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``park render``; returns the exit code (2 for invalid config, one ``path: reason`` line each, and
    for an ``--out`` it refuses or cannot write, one line; 1 for a chart that cannot be found or rendered,
    one line)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    spec = load_stack_for_command(stack, stderr)
    if spec is None:
        return INVALID_CONFIG_EXIT
    try:
        documents = render_documents(spec, workloads=workloads, charts=charts, team=team, priority=priority)
    except SpecError as err:  # a workload builder found the spec unusable for it (or an unknown --team)
        print_problems(err, stderr)
        return INVALID_CONFIG_EXIT
    except (RenderError, ChartError) as err:
        print(str(err), file=stderr)
        return 1
    if out is None:
        write_stream(documents, stdout)
        return 0
    try:
        done = write_directory(documents, out, stack=stack, force=force)
    except OutFolderError as err:
        print(f"error: {err}", file=stderr)
        return OUT_REFUSED_EXIT
    except OSError as err:  # a read-only file system, no permission, a file where a folder belongs
        print(f"error: --out {out}: {os_error_text(err, out)}", file=stderr)
        return OUT_REFUSED_EXIT
    removed = f"; removed {len(done.removed)} files of its previous render" if done.removed else ""
    print(f"wrote {len(done.written)} files to {out}{removed}", file=stderr)
    for name in done.kept_edited:
        print(f"kept {out / name}: edited since park render wrote it (the stack no longer makes it)", file=stderr)
    return 0
