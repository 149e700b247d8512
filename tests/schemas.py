"""Test helpers around :mod:`park.components.manifests.schemas`: shipped stacks, document classes, and the
CRD and chart folders the tests read. Where neither ``$PARK_CRD_SCHEMA_DIR`` / ``$PARK_CHART_DIR`` nor
``../shared`` exists, the pinned CRDs and charts are fetched from upstream into a cache (CRDs checksummed);
when that fails, the test fails with one line saying how to provide them. Nothing here skips.

Import from a test module (pytest puts ``tests/`` on ``sys.path``)::

    from schemas import assert_valid_custom_resource, shipped_specs
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from park.components import charts, versions
from park.components.manifests.schemas import (
    SCHEMA_DIR_ENV,
    SchemaDirMissing,
    SchemaNotFound,
    crd_index,
    ensure_schema_dir,
    validate_core_object,
    validate_custom_resource,
)
from park.components.spec import StackSpec, load_stack_file, project_root


def shipped_stack_files() -> list[Path]:
    return sorted((project_root() / "stacks").glob("Pulumi.*.yaml"))


def stack_name(path: Path) -> str:
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


def shipped_specs() -> dict[str, StackSpec]:
    """Stack name -> spec, for every ``stacks/Pulumi.<stack>.yaml``."""
    return {stack_name(path): load_stack_file(path) for path in shipped_stack_files()}


def shipped_variant(stack: str, **changes: Any) -> StackSpec:
    """The shipped ``stack``'s spec with some top-level park:* keys replaced (validated like any config)."""
    from park.components.spec import config_from_stack_file, parse_spec, resolve_stack_file

    return parse_spec({**config_from_stack_file(resolve_stack_file(stack)), **changes})


TEST_ALLOWED_CIDR = "198.18.0.1/32"
"""Stands for the caller's egress address that a team sets before `pulumi up` (the shipped aws stack has none):
an RFC 2544 benchmarking address, so it is neither a documentation range nor anybody's real network."""


TEST_PROJECT = "park-test-project"
"""Stands for the team's own GCP project id, which replaces the shipped stand-in before `pulumi up`."""


def provisionable(config: dict[str, Any]) -> dict[str, Any]:
    """park:* config (keys without the prefix) as a team has it before `pulumi up`: a public endpoint gets
    ``security.allowedCidrs: [TEST_ALLOWED_CIDR]`` when it lists none, an unset ``storage.bucket`` becomes the
    default name set explicitly (``<clusterName>-park-data``, so bucket names in tests stay put), and the gcp
    stand-in project becomes :data:`TEST_PROJECT`; anything else is returned as is."""
    if config.get("cloud") not in ("aws", "gcp"):
        return config
    config = dict(config)
    storage = dict(config.get("storage") or {})
    if not storage.get("bucket"):
        config["storage"] = {**storage, "bucket": f"{config.get('clusterName')}-park-data"}
    if config.get("cloud") == "gcp" and config.get("project") == "park-stack-demo":
        config["project"] = TEST_PROJECT
    security = dict(config.get("security") or {})
    if not (security.get("privateEndpoint") or security.get("allowedCidrs")):
        config["security"] = {**security, "allowedCidrs": [TEST_ALLOWED_CIDR]}
    return config


def provisionable_stack_config(config: dict[str, Any]) -> dict[str, Any]:
    """A whole ``config:`` mapping of a stack file (``park:``, ``gcp:`` ... keys) made :func:`provisionable`,
    with ``gcp:project`` following ``park:project`` as the team sets both."""
    park = provisionable({k.removeprefix("park:"): v for k, v in config.items() if k.startswith("park:")})
    config = {**config, **{f"park:{k}": v for k, v in park.items()}}
    if "gcp:project" in config and "project" in park:
        config["gcp:project"] = park["project"]
    return config


def provisionable_variant(stack: str, **changes: Any) -> StackSpec:
    """:func:`shipped_variant`, made provisionable (see :func:`provisionable`): for tests that provision it."""
    from park.components.spec import config_from_stack_file, parse_spec, resolve_stack_file

    shipped = provisionable(config_from_stack_file(resolve_stack_file(stack)))  # its bucket, whatever changes
    return parse_spec(provisionable({**shipped, **changes}))


def group_of(doc: dict[str, Any]) -> str:
    api_version = doc["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


def is_custom_resource(doc: dict[str, Any]) -> bool:
    """Not served by the API server itself (``park.components.charts.BUILTIN_API_GROUPS``)."""
    return charts.is_custom_resource(doc)


def is_core_object(doc: dict[str, Any]) -> bool:
    return not is_custom_resource(doc)


def describe(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc['kind']} {where}{meta.get('name')}"


def require_schema_dir() -> Path:
    """The CRD folder, with its index loaded (fetched into the cache first where there is no local folder);
    fails the calling test with the one-line reason when there is none."""
    found = _schema_dir(os.environ.get(SCHEMA_DIR_ENV))
    if isinstance(found, str):
        pytest.fail(found, pytrace=False)
    return found


@functools.cache
def _schema_dir(configured: str | None) -> Path | str:
    """The folder, or why there is none: a failed download is tried once per session, not once per test."""
    try:
        folder = ensure_schema_dir()
        crd_index(folder)
    except SchemaDirMissing as err:
        return str(err)
    return folder


def assert_valid_custom_resource(doc: dict[str, Any]) -> None:
    """Fails listing every schema problem, or when no CRD in the schema folder defines the kind."""
    require_schema_dir()
    try:
        problems = validate_custom_resource(doc)
    except SchemaNotFound as err:
        problems = [f"no CRD for it: {err}"]
    assert problems == [], f"{describe(doc)} does not match its CRD:\n" + "\n".join(problems)


def assert_valid_core_object(doc: dict[str, Any], kubernetes_version: str) -> None:
    problems = validate_core_object(doc, kubernetes_version)
    assert problems == [], f"{describe(doc)} is not valid Kubernetes {kubernetes_version}:\n" + "\n".join(problems)


PINNED_CHARTS = (versions.KUBERAY_CHART, versions.KUEUE_CHART, versions.KUBE_PROMETHEUS_STACK_CHART,
                 versions.DCGM_EXPORTER_CHART, versions.NVIDIA_DEVICE_PLUGIN_CHART, versions.CLUSTER_AUTOSCALER_CHART)
"""Every chart a shipped stack installs (test_schemas.py checks the releases name exactly these)."""


def require_chart_dir() -> Path:
    """A folder of the pinned charts as ``<name>-<version>/`` (the layout of ``../shared/charts``):
    ``$PARK_CHART_DIR``, else ``../shared/charts``, else the charts pulled from their repositories into the
    chart cache (linked into that layout). Fails the calling test with one line when none can be had."""
    found = _chart_dir(os.environ.get(charts.CHART_DIR_ENV) or None)
    if isinstance(found, str):
        pytest.fail(found, pytrace=False)
    return found


@functools.cache
def _chart_dir(configured: str | None) -> Path | str:
    """The folder, or why there is none (a failed pull is tried once per session)."""
    if configured:
        folder = Path(configured)
        if not folder.is_dir():
            return (f"${charts.CHART_DIR_ENV} is {folder}, which is not a folder; unpack the pinned charts there "
                    f"as <name>-<version>/, or unset it to pull them")
        return folder
    shared = charts.default_shared_chart_dir()
    if shared is not None:
        return shared
    source = charts.ChartSource()  # no local folder: pull each chart into the cache
    linked = Path(tempfile.mkdtemp(prefix="park-test-charts-"))
    try:
        for chart in PINNED_CHARTS:
            (linked / charts.folder_name(chart.name, chart.version)).symlink_to(source.locate(chart))
    except charts.ChartError as err:
        return str(err)
    return linked


def pinned_chart(chart: versions.Chart) -> Path:
    """The unpacked folder of one pinned chart in :func:`require_chart_dir`; fails in one line without it."""
    folder = require_chart_dir() / charts.folder_name(chart.name, chart.version)
    if not (folder / "Chart.yaml").is_file():
        pytest.fail(f"chart {chart.name} {chart.version}: no {folder.name}/ in {folder.parent}; unpack it from "
                    f"{chart.repo} there, or unset ${charts.CHART_DIR_ENV} to pull it", pytrace=False)
    return folder
