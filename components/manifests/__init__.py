"""Pure manifest builders: every Kubernetes object and Helm release the stack applies, as plain data.

``build_all(spec, facts)`` returns one :class:`AddonManifests` per add-on, in apply order:

1. ``namespaces`` — namespaces with Pod Security labels, Ray service accounts, network policies, storage ConfigMaps
2. ``storage`` — kind only: the host folder as PersistentVolumes and claims
3. ``observability`` — kube-prometheus-stack (its CRDs are needed by monitors of later releases), dcgm-exporter,
   monitors, dashboards
4. ``gpu`` — the NVIDIA device plugin with time-slicing
5. ``kuberay`` — the KubeRay operator
6. ``kueue`` — the Kueue controller, then flavors, queues and priority classes
7. ``autoscaler`` — aws only: the cluster autoscaler for the managed node groups

Within an add-on, Helm releases come before objects (operators before their custom resources). The
Pulumi add-ons (``park.components.addons``) and ``park render`` both apply exactly this output.
No Pulumi import here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from park.components.manifests import autoscaler, gpu, kuberay, kueue, namespaces, observability, storage
from park.components.manifests.common import AddonManifests, ClusterFacts, HelmRelease
from park.components.spec import StackSpec

Builder = Callable[[StackSpec, ClusterFacts], AddonManifests]

BUILDERS: dict[str, Builder] = {
    "namespaces": namespaces.build,
    "storage": storage.build,
    "observability": observability.build,
    "gpu": gpu.build,
    "kuberay": kuberay.build,
    "kueue": kueue.build,
    "autoscaler": autoscaler.build,
}
"""Add-on name -> builder, in apply order."""


def build_all(spec: StackSpec, facts: ClusterFacts | None = None) -> list[AddonManifests]:
    """Every add-on's manifests in apply order; ``facts`` default to what the spec alone implies."""
    facts = facts or ClusterFacts.for_spec(spec)
    return [build(spec, facts) for build in BUILDERS.values()]


def all_documents(spec: StackSpec, facts: ClusterFacts | None = None) -> list[dict[str, Any]]:
    """park-stack's own objects in apply order (what the builders make, not what the Helm releases install;
    ``park render`` adds those from the rendered charts)."""
    return [doc for addon in build_all(spec, facts) for doc in addon.documents()]


__all__ = ["BUILDERS", "AddonManifests", "ClusterFacts", "HelmRelease", "all_documents", "build_all"]
