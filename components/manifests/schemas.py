"""Validate rendered objects against real schemas: CRDs (strictly) and core Kubernetes (kubernetes-validate).

Custom resources are checked with ``jsonschema`` against the ``openAPIV3Schema`` of the CRD version their
``apiVersion`` names, read from a folder of CRD YAMLs (the CRDs are never copied into the project), first match:

1. ``$PARK_CRD_SCHEMA_DIR``: used alone, nothing is downloaded (the air-gapped way);
2. ``../shared/schemas`` beside the checkout (development and CI);
3. a cache (``$PARK_CRD_CACHE``, default ``~/.cache/park-stack/crds``) that :func:`fetch_schemas` fills with
   the pinned upstream files of ``versions.CRD_FILES``, each kept only when its sha256 matches. The tests fetch
   on first use; ``python -m park.components.manifests.schemas`` does it by hand. ``$PARK_CRD_MIRROR`` replaces
   the upstream host by a mirror with the same ``<repo>/<tag>/<path>`` layout (``https://`` or ``file://``).

The API server prunes unknown fields
silently, which hides typos; to catch them, every object schema that lists ``properties`` and neither keeps
unknown fields (``x-kubernetes-preserve-unknown-fields``) nor sets ``additionalProperties`` is made closed
(``additionalProperties: false``).

Usage (also from the workloads' tests)::

    from park.components.manifests.schemas import validate_custom_resource
    assert validate_custom_resource(ray_job) == []
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from park.components import versions
from park.components.spec import shared_folder, user_cache_dir

SCHEMA_DIR_ENV = versions.CRD_SCHEMA_DIR_ENV
CACHE_ENV = "PARK_CRD_CACHE"
MIRROR_ENV = "PARK_CRD_MIRROR"
UPSTREAM = "https://raw.githubusercontent.com"
"""Where ``<repo>/<tag>/<path>`` of a pinned CRD is served: the file exactly as tagged upstream."""
FETCH_TIMEOUT_S = 60


class SchemaDirMissing(FileNotFoundError):
    """No usable CRD schema folder; the message is one line saying where it looked and how to get one."""


class SchemaFetchFailed(SchemaDirMissing):
    """A pinned CRD could not be downloaded, or its checksum did not match; one line naming the URL."""


class SchemaNotFound(LookupError):
    """No CRD in the schema folder defines this apiVersion and kind."""


@dataclass(frozen=True)
class CrdVersion:
    group: str
    version: str
    kind: str
    scope: str
    """``Namespaced`` or ``Cluster``."""
    schema: dict[str, Any]
    """The version's openAPIV3Schema, made strict."""
    source: Path


def shared_schema_dir() -> Path:
    """``../shared/schemas`` beside the checkout (it may not exist)."""
    return shared_folder("schemas")


def default_cache_dir() -> Path:
    return user_cache_dir("crds", CACHE_ENV)


def default_schema_dir() -> Path:
    """``$PARK_CRD_SCHEMA_DIR``, else ``../shared/schemas`` when it exists, else the cache folder (which only
    :func:`fetch_schemas` fills: this function never downloads)."""
    configured = os.environ.get(SCHEMA_DIR_ENV)
    if configured:
        return Path(configured)
    shared = shared_schema_dir()
    return shared if shared.is_dir() else default_cache_dir()


def crd_url(crd: versions.CrdFile, base: str | None = None) -> str:
    """Where ``crd`` is downloaded from: ``base`` (default ``$PARK_CRD_MIRROR``, else upstream) + repo/tag/path."""
    base = base or os.environ.get(MIRROR_ENV) or UPSTREAM
    return f"{base.rstrip('/')}/{crd.repo}/{crd.tag}/{crd.path}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_schemas(cache_dir: Path | None = None, base: str | None = None,
                  crds: tuple[versions.CrdFile, ...] = versions.CRD_FILES) -> Path:
    """``cache_dir`` (default :func:`default_cache_dir`) holding every pinned CRD with its pinned sha256.

    Files already there with the right checksum are kept; others are downloaded (announced on stderr) and
    written only when their sha256 matches the pin. Raises :class:`SchemaFetchFailed` with one line naming
    the URL and how to provide the folder instead.
    """
    cache_dir = cache_dir or default_cache_dir()
    for crd in crds:
        target = cache_dir / crd.file
        if target.is_file() and _sha256(target) == crd.sha256:
            continue
        url = crd_url(crd, base)
        print(f"fetching CRD {crd.file} from {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
                body = response.read()
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            raise SchemaFetchFailed(
                f"CRD {crd.file}: fetching {url} failed ({reason}); without network, copy the CRD files listed "
                f"in components/versions.py CRD_FILES into a folder and set ${SCHEMA_DIR_ENV} to it") from None
        digest = hashlib.sha256(body).hexdigest()
        if digest != crd.sha256:
            raise SchemaFetchFailed(f"CRD {crd.file}: {url} has sha256 {digest}, pinned {crd.sha256}; not saved "
                                    f"(a tampered mirror, or a re-tagged release: check before changing the pin)")
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=f".{crd.file}.", suffix=".partial",
                                         delete=False) as partial:
            partial.write(body)
        Path(partial.name).replace(target)  # never a half-written file under the final name
    return cache_dir


def ensure_schema_dir() -> Path:
    """:func:`default_schema_dir`, fetched into first when it is the cache (neither ``$PARK_CRD_SCHEMA_DIR``
    nor ``../shared/schemas`` exists). This is the one call that may use the network."""
    folder = default_schema_dir()
    if os.environ.get(SCHEMA_DIR_ENV) or folder == shared_schema_dir():
        return folder
    return fetch_schemas(folder)


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` in which unknown fields are errors, except where the CRD keeps them."""
    schema = copy.deepcopy(schema)
    _close(schema)
    return schema


def _close(node: Any) -> None:
    if not isinstance(node, dict):
        return
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        node["additionalProperties"] = False
    for child in (node.get("properties") or {}).values():
        _close(child)
    items = node.get("items")
    for child in items if isinstance(items, list) else [items]:
        _close(child)
    _close(node.get("additionalProperties"))
    for key in ("allOf", "anyOf", "oneOf"):
        for child in node.get(key) or []:
            _close(child)
    _close(node.get("not"))


def _load_yaml(path: Path) -> list[Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads a 1.4 MB CRD in ~0.3 s
    with path.open() as handle:
        return [doc for doc in yaml.load_all(handle, Loader=loader) if doc]


@functools.cache
def crd_index(schema_dir: Path) -> dict[tuple[str, str], CrdVersion]:
    """(apiVersion, kind) -> strict schema, for every CRD version in every YAML file of ``schema_dir``."""
    files = sorted(schema_dir.glob("*.y*ml")) if schema_dir.is_dir() else []
    if not files:
        state = "holds no CRD YAML" if schema_dir.is_dir() else "not found"
        raise SchemaDirMissing(
            f"CRD schema folder {schema_dir} {state}; put the pinned CRDs there (components/versions.py CRD_FILES), "
            f"point ${SCHEMA_DIR_ENV} at a folder that has them, or leave it unset to fetch them into "
            f"{default_cache_dir()} (python -m park.components.manifests.schemas)")
    index: dict[tuple[str, str], CrdVersion] = {}
    for path in files:
        index.update(index_crds(_load_yaml(path), path))
    return index


def index_crds(documents: list[Any], source: Path) -> dict[tuple[str, str], CrdVersion]:
    """(apiVersion, kind) -> strict schema, for every served version of every CRD among ``documents``
    (for example the CRDs a chart renders; ``source`` names where they came from)."""
    index: dict[tuple[str, str], CrdVersion] = {}
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for version in spec.get("versions", []):
            api_version = f"{spec['group']}/{version['name']}"
            schema = version.get("schema", {}).get("openAPIV3Schema")
            if schema is None or not version.get("served", True):
                continue
            index[(api_version, spec["names"]["kind"])] = CrdVersion(
                spec["group"], version["name"], spec["names"]["kind"], spec.get("scope", "Namespaced"),
                strict(schema), source)
    return index


def find_crd(api_version: str, kind: str, schema_dir: Path | None = None) -> CrdVersion:
    index = crd_index(schema_dir or default_schema_dir())
    found = index.get((api_version, kind))
    if found is None:
        groups = sorted({a.split("/")[0] for a, _ in index})
        raise SchemaNotFound(f"no CRD for {api_version} {kind} in {schema_dir or default_schema_dir()} "
                             f"(it has CRDs of: {', '.join(groups)})")
    return found


def _json_path(error: jsonschema.ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate_custom_resource(obj: dict[str, Any], schema_dir: Path | None = None) -> list[str]:
    """Every problem of a custom resource against its CRD, as ``$.json.path: message``; [] when valid.

    Also checks what the CRD schema leaves to the API server: a ``metadata.name``, and a namespace exactly
    when the kind is namespaced. Raises :class:`SchemaNotFound` for an apiVersion/kind no CRD defines and
    :class:`SchemaDirMissing` when the schema folder is absent.
    """
    return validate_against_crd(obj, find_crd(str(obj.get("apiVersion")), str(obj.get("kind")), schema_dir))


def validate_against_crd(obj: dict[str, Any], crd: CrdVersion) -> list[str]:
    """:func:`validate_custom_resource` against a given CRD version (e.g. from :func:`index_crds`)."""
    validator = jsonschema.Draft202012Validator(crd.schema)
    problems = [f"{_json_path(e)}: {e.message}" for e in sorted(validator.iter_errors(obj), key=_json_path)]
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    if not meta.get("name"):
        problems.append("$.metadata.name: required")
    if crd.scope == "Namespaced" and not meta.get("namespace"):
        problems.append(f"$.metadata.namespace: {crd.kind} is namespaced; set a namespace")
    if crd.scope == "Cluster" and meta.get("namespace"):
        problems.append(f"$.metadata.namespace: {crd.kind} is cluster-scoped; remove the namespace")
    return problems


# --- core Kubernetes objects -------------------------------------------------------------------------


def kubernetes_validate_version(kubernetes_version: str) -> tuple[str, bool]:
    """The schema version kubernetes-validate will use for ``kubernetes_version`` and whether it is exact.

    kubernetes-validate bundles one schema set per minor version; without the exact one, the nearest
    older one is used (or the oldest bundled, for a version older than all of them).
    """
    from kubernetes_validate.utils import all_versions  # optional extra: dev (kubernetes-validate)

    bundled = {".".join(v.split(".")[:2]) for v in all_versions()}
    if kubernetes_version in bundled:
        return kubernetes_version, True
    def as_tuple(version: str) -> tuple[int, ...]:
        return tuple(int(x) for x in version.split("."))

    older = [v for v in bundled if as_tuple(v) <= as_tuple(kubernetes_version)]
    if older:
        return max(older, key=as_tuple), False
    return min(bundled, key=as_tuple), False


def validate_core_object(obj: dict[str, Any], kubernetes_version: str) -> list[str]:
    """Problems of a built-in Kubernetes object under kubernetes-validate's strict schemas; [] when valid.

    kubernetes-validate reports the first problem only. Needs the ``dev`` extra (kubernetes-validate).
    """
    import kubernetes_validate  # optional extra: dev (kubernetes-validate)

    version, _ = kubernetes_validate_version(kubernetes_version)
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{_json_path(err)}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [f"$: {err.message}"]
    return []


def main() -> int:
    """Fetch the pinned CRDs where the tests will read them; print that folder. Exit 1 with one line on failure."""
    try:
        print(ensure_schema_dir())
    except SchemaDirMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
