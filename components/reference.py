"""Writes docs/stack-config.md from the StackSpec model itself, so the reference cannot drift.

Run ``python -m park.components.reference > docs/stack-config.md``; a test fails when the file is stale.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from park.components import spec as spec_module
from park.components.spec import StackSpec, config_from_stack_file

INTRO = """\
# Stack config reference

A stack is one file, `stacks/Pulumi.<stack>.yaml`; park-stack reads its `park:*` keys. The same file drives
`pulumi up`, `park render <stack>` and `park conformance --stack <stack>`. Shipped stacks: `aws` (EKS),
`gcp` (GKE) and `kind` (local, CPU only).

Validation reports every problem at once, one `file:line: property.path (pool or team): reason` line each,
before anything is created, and exits 2. With this `broken.yaml`:

```yaml
# broken.yaml
config:
  park:cloud: kind
  park:clusterName: park-broken
  park:nodePools:
    - {name: system, role: system, minNodes: 1, maxNodes: 1}
    - {name: cpu, minNodes: 1, maxNodes: 2, spot: true}
  park:teams:
    - name: research
      quotas:
        - {pool: gpu, gpus: 1}
```

```console
$ park render broken.yaml
broken.yaml:7: nodePools[1].spot (pool cpu): kind has no spot capacity
broken.yaml:11: teams[0].quotas[0].pool (team research): unknown pool 'gpu'; known: system, cpu
$ echo $?
2
```

Besides types and ranges, these cross-field rules apply: at least one `system` pool; no GPUs or spot on kind;
`gpuSharing` and `gpusPerNode` only on GPU pools; the accelerator, instance type and GPU count must be an
offering of the cloud in the catalog (`components/catalog.py`), and a CPU pool's `instanceType` one of the
catalog's CPU shapes of the cloud; unique pool, team, namespace, priority-class and model names, and no team in a
platform namespace; team quotas, alone and summed across teams, within what a pool can supply (`maxNodes` x GPUs
per node x time-slicing replicas; `maxNodes` x the node shape's vCPUs and memory); the Kubernetes version within
what the pinned KubeRay and Kueue support; a served model's `gpuFraction` must fit a GPU pool, and one slice
(1 / `gpuSharing.replicas`) of the time-sliced pool it is served on, and `gpuFraction: 0` (CPU) needs a CPU
workers pool; a model source in a bucket
must be the stack's own bucket (the only one its Ray pods may read; none on kind); workload images must be image
references with a tag or digest;
`region` on aws/gcp, `project` on gcp, two zones on aws; `aws:region`, `gcp:region` and `gcp:project`, where
the file has them, equal to `park:region` / `park:project` (the stack's providers are built from the `park:`
keys); the bucket name within the cloud's naming rules. `pulumi up` (not `park render`) also needs
`security.allowedCidrs` when the API endpoint is public, a `storage.bucket` of your own on aws and gcp (bucket
names are global), and on gcp a `project` other than the shipped stand-in `park-stack-demo`.

This file is generated from `components/spec.py` by `python -m park.components.reference`.
"""

_SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("nodePools[]", spec_module.NodePool),
    ("nodePools[].taints[]", spec_module.Taint),
    ("nodePools[].gpuSharing", spec_module.GpuSharing),
    ("teams[]", spec_module.Team),
    ("teams[].quotas[]", spec_module.PoolQuota),
    ("priorityClasses[]", spec_module.PriorityClass),
    ("observability", spec_module.Observability),
    ("storage", spec_module.Storage),
    ("storage.sharedFilesystem", spec_module.SharedFilesystem),
    ("security", spec_module.Security),
    ("models[]", spec_module.ServedModel),
    ("workloads", spec_module.WorkloadImages),
]


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" (optional)" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default
    if value is PydanticUndefined or value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return ", ".join(f"{v.name} ({v.value})" for v in value)
    return f"`{json.dumps(value)}`"


def _examples() -> dict[str, Any]:
    """First value seen for each key path in the shipped stacks, keyed like the section tables."""
    found: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                path = f"{prefix}.{key}" if prefix else key
                found.setdefault(path, child)
                walk(path, child)
        elif isinstance(value, list):
            for item in value:
                walk(f"{prefix}[]", item)

    stacks = spec_module.project_root(Path(__file__).parent) / "stacks"
    for stack in sorted(stacks.glob("Pulumi.*.yaml")):
        walk("", config_from_stack_file(stack))
    return found


def _table(prefix: str, model: type[BaseModel], examples: dict[str, Any]) -> list[str]:
    rows = ["| key | type | default | example | meaning |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}.{key}" if prefix else key
        example = examples.get(path)
        shown = "" if example is None or isinstance(example, (dict, list)) and len(json.dumps(example)) > 40 \
            else f"`{json.dumps(example)}`"
        meaning = (field.description or "").replace("``", "`").replace("\n", " ")
        display = f"park:{key}" if not prefix else key
        rows.append(f"| `{display}` | {_type_name(field.annotation)} | {_default(field)} | {shown} | {meaning} |")
    return rows


def config_reference() -> str:
    examples = _examples()
    lines = [INTRO, "## Top-level keys", "", *_table("", StackSpec, examples)]
    for prefix, model in _SECTIONS:
        lines += ["", f"## `{prefix}`", "", *_table(prefix, model, examples)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
