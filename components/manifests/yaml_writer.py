"""The one YAML writer for park's objects: ``park render`` output and the workloads' sample manifests."""

from __future__ import annotations

from typing import Any

import yaml


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


def to_yaml(document: dict[str, Any], width: int = 120) -> str:
    """One object as YAML, keys in the builders' order; lines fold at ``width``."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=width)
