"""The small vocabulary every manifest builder shares: cluster facts, Helm releases, add-on groups.

Builders are pure functions of ``(StackSpec, ClusterFacts)`` returning plain dicts, so ``park render``,
the schema tests and the Pulumi components all apply exactly the same objects. Nothing here imports
Pulumi or a cloud SDK; names every layer shares (labels, service accounts, ``metadata``) live in
``park.components.conventions``, what a cloud offers in ``park.components.cloud_rules``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from park.components import versions
from park.components.cloud_rules import rules_for
from park.components.conventions import MANAGED_BY_LABEL as MANAGED_BY_LABEL
from park.components.conventions import POOL_LABEL, tolerations_for
from park.components.conventions import metadata as metadata
from park.components.spec import StackSpec

KUBERAY_NAMESPACE = "kuberay-system"
KUEUE_NAMESPACE = "kueue-system"
MONITORING_NAMESPACE = "monitoring"
DEVICE_PLUGIN_NAMESPACE = "nvidia-device-plugin"
KUBE_SYSTEM_NAMESPACE = "kube-system"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by Kubernetes on every namespace; NetworkPolicies and ClusterQueues select namespaces by it."""


@dataclass(frozen=True)
class ClusterFacts:
    """What the manifests need to know about the provisioned cluster beyond the spec.

    Under ``pulumi up`` these come from the cloud adapter's outputs; ``park render`` (no cloud at hand)
    uses :meth:`for_spec`, which computes the same values from the spec alone.
    """

    storage_uri: str
    """Where workloads keep checkpoints and outputs (``s3://``, ``gs://`` or ``file://``)."""
    ray_service_account_annotations: dict[str, str] = field(default_factory=dict)
    """Annotations giving the Ray service account its cloud identity (GKE Workload Identity)."""
    shared_filesystem: dict[str, str] | None = None
    """Where the shared filesystem is (``ClusterHandle.shared_filesystem``): FSx for Lustre
    ``{"kind": "fsx-lustre", "fileSystemId", "dnsName", "mountName", "mountPath"}`` or Filestore
    ``{"kind": "filestore", "server", "share", "mountPath"}``; None without one."""

    @classmethod
    def for_spec(cls, spec: StackSpec) -> ClusterFacts:
        """Facts from the spec alone. Addresses of a shared filesystem exist only once the cloud created it:
        they appear as ``<placeholders>`` here (``pulumi up`` fills in the real ones)."""
        return cls(storage_uri=spec.storage_uri,
                   ray_service_account_annotations=rules_for(spec.cloud).ray_identity_annotations(spec),
                   shared_filesystem=placeholder_shared_filesystem(spec))


def placeholder_shared_filesystem(spec: StackSpec) -> dict[str, str] | None:
    shared = spec.storage.shared_filesystem
    placeholder = rules_for(spec.cloud).shared_filesystem_placeholder
    if shared is None or placeholder is None:
        return None
    return {**placeholder, "mountPath": shared.mount_path}


@dataclass(frozen=True)
class HelmRelease:
    """One Helm chart installed at a pinned version with the given values. ``pulumi up`` installs it as a
    Helm release; ``park render`` writes the objects Helm would install (``park.components.charts``)."""

    name: str
    """Helm release name; fixed so the services it creates have predictable names."""
    namespace: str
    chart: versions.Chart
    values: dict[str, Any]

    @property
    def is_oci(self) -> bool:
        return self.chart.repo.startswith("oci://")


@dataclass(frozen=True)
class AddonManifests:
    """Everything one add-on applies: Helm releases first, then the plain objects (often their custom
    resources), which is the order the Pulumi component and ``park render`` use."""

    name: str
    releases: tuple[HelmRelease, ...] = ()
    objects: tuple[dict[str, Any], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.releases and not self.objects

    def documents(self) -> list[dict[str, Any]]:
        """The add-on's own objects (its releases' objects come from rendering their charts)."""
        return [dict(o) for o in self.objects]


# --- small helpers for building objects -------------------------------------------------------------


def system_pool_selector(spec: StackSpec) -> dict[str, str]:
    """nodeSelector that keeps operators and monitoring on the (first) system pool."""
    system = next(p for p in spec.node_pools if p.role == "system")
    return {POOL_LABEL: system.name}


def gpu_pool_tolerations(spec: StackSpec) -> list[dict[str, str]]:
    """Tolerations for every taint of every GPU pool (node agents must run on all GPU nodes)."""
    return tolerations_for([t for pool in spec.gpu_pools for t in spec.node_taints(pool)])


def gpu_pool_affinity(spec: StackSpec) -> dict[str, Any]:
    """Node affinity for the GPU pools: a DaemonSet selects several pools, which one nodeSelector cannot."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": POOL_LABEL, "operator": "In", "values": [p.name for p in spec.gpu_pools]}]}
    ]}}}
