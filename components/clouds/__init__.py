"""One small interface every cloud adapter implements, and the registry that finds them.

What each cloud offers and allows is declared once, without its SDK, in ``park.components.cloud_rules``
(:data:`CAPABILITIES` here is a view of it), so the rest of the project asks
``spec.capabilities.installs_device_plugin`` instead of testing ``cloud == "gcp"``. Cloud SDKs are imported
only inside their adapter module; this module imports none.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from park.components.cloud_rules import NETWORK_POLICY_DOCS as NETWORK_POLICY_DOCS
from park.components.cloud_rules import RULES, CloudCapabilities, rules_for
from park.components.cloud_rules import gcp_ray_service_account_email as gcp_ray_service_account_email
from park.components.conventions import (
    CLUSTER_AUTOSCALER_SERVICE_ACCOUNT as CLUSTER_AUTOSCALER_SERVICE_ACCOUNT,
)
from park.components.conventions import GPU_DRIVER_CONTAINER_DIR as GPU_DRIVER_CONTAINER_DIR
from park.components.conventions import KUBE_PROMETHEUS_SYSTEM_COMPONENTS as KUBE_PROMETHEUS_SYSTEM_COMPONENTS
from park.components.conventions import RAY_SERVICE_ACCOUNT
from park.components.spec import StackSpec

if TYPE_CHECKING:
    import pulumi
    import pulumi_kubernetes as k8s


CAPABILITIES: dict[str, CloudCapabilities] = {name: rules.capabilities for name, rules in RULES.items()}
"""Each cloud's capabilities, as its rules (``park.components.cloud_rules``) declare them."""

_ADAPTERS = {"aws": "park.components.clouds.aws", "gcp": "park.components.clouds.gcp",
             "kind": "park.components.clouds.kind"}


@dataclass
class ClusterHandle:
    """What an adapter hands to the cloud-neutral add-ons once the cluster exists."""

    provider: "k8s.Provider"
    """Kubernetes provider for the new cluster (server-side apply on)."""
    kubeconfig: "pulumi.Output[str]"
    cluster_name: "pulumi.Output[str]"
    storage_uri: "pulumi.Output[str]"
    ray_service_account_annotations: "pulumi.Output[dict[str, str]]"
    """Annotations that give the Ray service account its cloud identity (empty where the binding
    lives outside Kubernetes, as with EKS Pod Identity)."""
    depends_on: list["pulumi.Resource"] = field(default_factory=list)
    """Resources the add-ons must wait for (node groups, add-ons of the managed cluster)."""
    shared_filesystem: "pulumi.Output[dict[str, str]] | None" = None
    """Where the shared filesystem is, for the storage add-on's PersistentVolume; None without one.
    FSx for Lustre: ``{"kind": "fsx-lustre", "fileSystemId", "dnsName", "mountName", "mountPath"}``
    (mount through the aws-fsx-csi-driver add-on); Filestore: ``{"kind": "filestore", "server", "share",
    "mountPath"}`` (a plain NFS volume)."""
    outputs: dict[str, "pulumi.Output[Any]"] = field(default_factory=dict)
    """Cloud-specific facts worth exporting or handing to add-ons, e.g. ``clusterAutoscalerRoleArn`` on aws,
    ``vpcId`` / ``network``. Documented per cloud in docs/clouds.md."""


class CloudAdapter(Protocol):
    name: str
    capabilities: CloudCapabilities

    def provision(self, name: str, spec: StackSpec, parent: "pulumi.Resource") -> ClusterHandle:
        """Declare network, cluster, node pools, storage and identity; children of ``parent``."""
        ...


class UnknownCloudError(ValueError):
    pass


def load_adapter(cloud: str) -> CloudAdapter:
    """The adapter for ``cloud``; an unknown name lists the known ones, a missing SDK names the extra."""
    module_name = _ADAPTERS.get(cloud)
    if module_name is None:
        raise UnknownCloudError(f"unknown cloud {cloud!r}; known: {', '.join(_ADAPTERS)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        extra = CAPABILITIES[cloud].extra
        if extra and err.name and err.name.startswith(f"pulumi_{extra}"):
            raise ModuleNotFoundError(f"install park-stack[{extra}] to use the {cloud} cloud") from err
        raise
    return module.ADAPTER


# --- pure facts about the cloud identity, shared by the adapters and `park render` --------------


def ray_identity_annotations(spec: StackSpec) -> dict[str, str]:
    """Annotations on the Ray service account. EKS Pod Identity binds outside Kubernetes (none needed);
    GKE Workload Identity names the Google service account; kind has no cloud identity."""
    return rules_for(spec.cloud).ray_identity_annotations(spec)


def ray_service_accounts(spec: StackSpec) -> list[tuple[str, str]]:
    """(namespace, name) of every Ray service account the cloud identity must trust."""
    return [(team.namespace_name, RAY_SERVICE_ACCOUNT) for team in spec.teams]
