"""One small interface every cloud adapter implements, and the registry that finds them.

Capability differences between clouds are declared here once (:data:`CAPABILITIES`) so the rest of
the project asks ``capabilities.installs_device_plugin`` instead of testing ``cloud == "gcp"``.
Cloud SDKs are imported only inside their adapter module; this module imports none.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from park.components.spec import RAY_SERVICE_ACCOUNT, StackSpec

if TYPE_CHECKING:
    import pulumi
    import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class CloudCapabilities:
    supports_spot: bool
    supports_gpu: bool
    installs_gpu_driver: bool
    """Node images ship the NVIDIA driver (EKS AL2023 NVIDIA AMI, GKE driver installation)."""
    installs_device_plugin: bool
    """The cloud runs its own NVIDIA device plugin (GKE); we must not install a second one."""
    supports_private_endpoint: bool
    supports_shared_filesystem: bool
    extra: str | None
    """The pip extra that brings the cloud's SDK."""
    needs_cluster_autoscaler: bool = False
    """Node groups scale only if park-stack installs the Kubernetes cluster autoscaler (EKS managed node
    groups); GKE scales node pools itself and kind has no autoscaling."""


CAPABILITIES: dict[str, CloudCapabilities] = {
    "aws": CloudCapabilities(True, True, True, False, True, True, "aws", needs_cluster_autoscaler=True),
    "gcp": CloudCapabilities(True, True, True, True, True, True, "gcp"),
    "kind": CloudCapabilities(False, False, False, False, False, False, None),
}

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


CLUSTER_AUTOSCALER_SERVICE_ACCOUNT = ("kube-system", "cluster-autoscaler")
"""(namespace, name) the cluster autoscaler runs as; on aws its Pod Identity association trusts exactly this."""


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


def gcp_ray_service_account_email(spec: StackSpec) -> str:
    """The Google service account the Ray Kubernetes service account impersonates on GKE."""
    # GCP account ids are 6-30 characters and must not end in a hyphen.
    account_id = f"{spec.cluster_name}-ray"[:30].rstrip("-")
    return f"{account_id}@{spec.project}.iam.gserviceaccount.com"


def ray_identity_annotations(spec: StackSpec) -> dict[str, str]:
    """Annotations on the Ray service account. EKS Pod Identity binds outside Kubernetes (none needed);
    GKE Workload Identity names the Google service account; kind has no cloud identity."""
    if spec.cloud == "gcp":
        return {"iam.gke.io/gcp-service-account": gcp_ray_service_account_email(spec)}
    return {}


def ray_service_accounts(spec: StackSpec) -> list[tuple[str, str]]:
    """(namespace, name) of every Ray service account the cloud identity must trust."""
    return [(team.namespace_name, RAY_SERVICE_ACCOUNT) for team in spec.teams]
