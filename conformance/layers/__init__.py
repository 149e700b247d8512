"""The checks' implementations, one module per layer of :data:`park.conformance.model.LAYERS`, each holding
its layer's local and cluster variants side by side (``local_<what>`` on a
:class:`~park.conformance.local.LocalMachine`, ``cluster_<what>`` on a
:class:`~park.conformance.kube.KubeCluster`), marked with the check they prove by the layer's
:class:`~park.conformance.layers.table.CheckTable`.

Here the layers' tables are merged into one per target; :mod:`park.conformance.targets` looks checks up in
them by name.
"""

from __future__ import annotations

from park.conformance.layers import (
    accelerators,
    infrastructure,
    observability,
    operators,
    scheduling,
    storage,
    workloads,
)
from park.conformance.layers.table import CheckFunction, ObjectBuilder
from park.conformance.model import LAYERS

TABLES = tuple(
    module.checks
    for module in (infrastructure, accelerators, operators, scheduling, storage, workloads, observability)
)
assert tuple(table.layer for table in TABLES) == LAYERS, "one module per layer, in run order"

LOCAL_CHECKS: dict[str, CheckFunction] = {n: f for t in TABLES for n, f in t.local_checks.items()}
"""Check name -> the function proving it on the local target; every other check is not applicable there."""
KUBERNETES_CHECKS: dict[str, CheckFunction] = {n: f for t in TABLES for n, f in t.cluster_checks.items()}
"""Check name -> the function proving it on a cluster; every other check is not applicable there."""
CLUSTER_OBJECTS: dict[str, ObjectBuilder] = {n: b for t in TABLES for n, b in t.creates.items()}
"""Cluster check -> what it would create (for the plan); checks that only read are absent."""
