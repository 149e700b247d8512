"""How a layer module says which of its functions prove which check on which target.

Each layer module makes one :class:`CheckTable` and marks its check functions with it::

    checks = CheckTable("workloads")

    @checks.local("workloads.train")
    def local_train(machine: LocalMachine, ctx: RunContext) -> Passed: ...

    @checks.cluster("workloads.train", creates=lambda cluster: [train_rayjob(cluster)])
    def cluster_train(cluster: KubeCluster, ctx: RunContext) -> Passed: ...

A check a table leaves out is not applicable on that target. A name that is not a check of the table's layer
fails at import, naming the checks it could be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from park.conformance.checks import BY_NAME
from park.conformance.context import RunContext
from park.conformance.model import Passed

CheckFunction = Callable[[Any, RunContext], Passed]
"""``(machine or cluster, ctx) -> Passed``: proves one check, or raises CheckFailed / NotApplicable."""
ObjectBuilder = Callable[[Any], list]
"""``cluster -> [object | (object, note)]``: what a cluster check would create, for the plan."""


@dataclass
class CheckTable:
    """One layer's check functions, by check name, for each target."""

    layer: str
    local_checks: dict[str, CheckFunction] = field(default_factory=dict)
    cluster_checks: dict[str, CheckFunction] = field(default_factory=dict)
    creates: dict[str, ObjectBuilder] = field(default_factory=dict)
    """Cluster check -> what it would create, built by the same functions it uses (the plan's source)."""

    def local(self, name: str) -> Callable[[CheckFunction], CheckFunction]:
        """Mark the function that proves ``name`` on the local target."""
        return self._register(self.local_checks, name)

    def cluster(
        self, name: str, creates: ObjectBuilder | None = None
    ) -> Callable[[CheckFunction], CheckFunction]:
        """Mark the function that proves ``name`` on a cluster; ``creates`` builds what it would submit."""
        if creates is not None:
            self.creates[name] = creates
        return self._register(self.cluster_checks, name)

    def _register(self, table: dict, name: str) -> Callable[[CheckFunction], CheckFunction]:
        known = [n for n, c in BY_NAME.items() if c.layer == self.layer]
        if name not in known:
            raise ValueError(f"{name!r} is not a check of layer {self.layer}; its checks: {', '.join(known)}")
        if name in table:
            raise ValueError(f"{name!r} already has a function here: {table[name].__name__}")

        def mark(function: CheckFunction) -> CheckFunction:
            table[name] = function
            return function

        return mark
