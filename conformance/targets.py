"""The two targets a run can check: each is its context (:class:`LocalMachine`, :class:`KubeCluster`) plus
the lookup of the check functions that prove each check there (:mod:`park.conformance.layers`), which is
what the runner (:class:`park.conformance.runner.Target`) asks of a target.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from park.conformance.context import RunContext
from park.conformance.kube import KubeCluster
from park.conformance.layers import CLUSTER_OBJECTS, KUBERNETES_CHECKS, LOCAL_CHECKS
from park.conformance.local import LocalMachine
from park.conformance.model import Check, Passed

__all__ = ["KUBERNETES_CHECKS", "LOCAL_CHECKS", "KubernetesTarget", "LocalTarget"]


class LocalTarget(LocalMachine):
    """This machine, with a Ray head the run starts; cluster-only checks are not applicable here."""

    name = "local"
    platform_under_test = False

    def implementation(self, check: Check) -> Callable[[RunContext], Passed] | None:
        function = LOCAL_CHECKS.get(check.name)
        return partial(function, self) if function else None

    def not_applicable_reason(self, check: Check) -> str:
        return (
            "needs a Kubernetes cluster; the local target has none (run park conformance --target "
            "kubernetes against one)"
        )

    def describe(self) -> dict[str, Any]:
        import ray  # the workloads extra; a local run has started its head by now

        self.gpus()
        facts = {
            "ray_version": ray.__version__,
            "stack": self.stack_path or "(none)",
            "accelerator": self.accelerator_summary(),
        }
        if self._head is not None and self._head.ports:
            facts["ray_dashboard"] = self._head.dashboard_url
        facts.update({k: v for k, v in self.ctx.facts.items() if k not in facts})
        return facts


class KubernetesTarget(KubeCluster):
    """A live cluster (or, :meth:`offline`, one the plan only builds objects for)."""

    name = "kubernetes"
    platform_under_test = True

    def implementation(self, check: Check) -> Callable[[RunContext], Passed] | None:
        function = KUBERNETES_CHECKS.get(check.name)
        return partial(function, self) if function else None

    def not_applicable_reason(self, check: Check) -> str:
        if check.name == "infrastructure.host":
            return "the kubernetes target checks the cluster's nodes instead (infrastructure.nodes)"
        if check.name == "operators.ray-head":
            return "on clusters KubeRay starts Ray heads (operators.kuberay)"
        if check.name == "observability.ray-metrics":
            return "on clusters Prometheus scrapes Ray (observability.prometheus-targets)"
        return "not implemented for the kubernetes target"

    def describe(self) -> dict[str, Any]:
        return {
            "api_server": self.api.host,
            "kubernetes_version": self.server.get("gitVersion"),
            "stack": self.stack_path,
            "context": self.context or "current",
            "namespace": self.namespace,
            "team": self.team.name,
            "priority": self.ctx.options.priority or "each team's defaultPriority",
            "accelerator": (
                f"GPU pools: {', '.join(p.name for p in self.spec.gpu_pools)}"
                if self.spec.has_gpus
                else "no GPU pools in the stack: workloads run on CPU"
            ),
            **self.ctx.facts,
        }

    def planned_objects(self, check: str) -> list[tuple[dict, str]]:
        """What ``check`` would create, built by the same functions the check uses, each with a note (empty,
        or why it runs no pod); [] for checks that only read. May raise NotApplicable as the check would."""
        builder = CLUSTER_OBJECTS.get(check)
        if builder is None:
            return []
        return [item if isinstance(item, tuple) else (item, "") for item in builder(self)]
