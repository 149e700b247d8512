"""Test helpers around :mod:`park.components.manifests.schemas`: shipped stacks, document classes, skips.

Import from a test module (pytest puts ``tests/`` on ``sys.path``)::

    from schemas import assert_valid_custom_resource, shipped_specs
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from park.components import charts
from park.components.manifests.schemas import (
    SchemaDirMissing,
    SchemaNotFound,
    crd_index,
    default_schema_dir,
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


def provisionable(config: dict[str, Any]) -> dict[str, Any]:
    """park:* config (keys without the prefix) as a team has it before `pulumi up`: a public endpoint gets
    ``security.allowedCidrs: [TEST_ALLOWED_CIDR]`` when it lists none; anything else is returned as is."""
    security = dict(config.get("security") or {})
    if config.get("cloud") == "kind" or security.get("privateEndpoint") or security.get("allowedCidrs"):
        return config
    return {**config, "security": {**security, "allowedCidrs": [TEST_ALLOWED_CIDR]}}


def provisionable_variant(stack: str, **changes: Any) -> StackSpec:
    """:func:`shipped_variant`, made provisionable (see :func:`provisionable`): for tests that provision it."""
    from park.components.spec import config_from_stack_file, parse_spec, resolve_stack_file

    return parse_spec(provisionable({**config_from_stack_file(resolve_stack_file(stack)), **changes}))


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
    """The CRD folder, with its index loaded; skips the calling test (with the reason) when it is missing."""
    folder = default_schema_dir()
    try:
        crd_index(folder)
    except SchemaDirMissing as err:
        pytest.skip(str(err))
    return folder


def assert_valid_custom_resource(doc: dict[str, Any]) -> None:
    """Fails listing every schema problem; skips when no CRD for the kind is available here."""
    require_schema_dir()
    try:
        problems = validate_custom_resource(doc)
    except SchemaNotFound as err:
        pytest.skip(f"{describe(doc)}: {err}")
    assert problems == [], f"{describe(doc)} does not match its CRD:\n" + "\n".join(problems)


def assert_valid_core_object(doc: dict[str, Any], kubernetes_version: str) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate comes with the dev extra")
    problems = validate_core_object(doc, kubernetes_version)
    assert problems == [], f"{describe(doc)} is not valid Kubernetes {kubernetes_version}:\n" + "\n".join(problems)


def require_chart_dir() -> Path:
    """The folder of pinned charts the tests render from (``$PARK_CHART_DIR``, else ``../shared/charts``
    beside the checkout); skips the calling test when there is none: CI has no network to chart repositories."""
    import os

    configured = os.environ.get(charts.CHART_DIR_ENV)
    folder = Path(configured) if configured else charts.default_shared_chart_dir()
    if folder is None or not folder.is_dir():
        pytest.skip(f"no chart folder (set ${charts.CHART_DIR_ENV} or put the pinned charts in ../shared/charts)")
    return folder
