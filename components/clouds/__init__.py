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
    network_policy_datapath: str | None = None
    """What enforces the NetworkPolicies park-stack applies, as the adapter configures it; None means nothing
    would (a default-deny policy would then only look like isolation). See :data:`NETWORK_POLICY_DOCS`."""
    scrapable_system_components: frozenset[str] = frozenset()
    """Which of kube-prometheus-stack's system-component scrapers (:data:`KUBE_PROMETHEUS_SYSTEM_COMPONENTS`)
    reach something on this cloud. A scraper with nothing to reach is a target that is always down and an
    alert (``KubeControllerManagerDown``, ``TargetDown``...) that fires forever."""
    gpu_driver_host_dir: str | None = None
    """Host folder holding the NVIDIA driver's libraries and tools when the cloud installs the driver outside
    the container runtime's reach (GKE: ``/home/kubernetes/bin/nvidia``); host agents such as dcgm-exporter
    must mount it at :data:`GPU_DRIVER_CONTAINER_DIR`. None where the container toolkit injects the driver."""
    isolates_unrequested_gpus: bool = False
    """GPU nodes give a container GPUs only through the device plugin: an unprivileged container that requests
    no ``nvidia.com/gpu`` gets none even if it sets ``NVIDIA_VISIBLE_DEVICES=all``. GKE: true (its own device
    plugin hands out device nodes; no NVIDIA runtime hook reads the variable). EKS AL2023 NVIDIA AMI: false
    (nodeadm makes nvidia-container-runtime containerd's default runtime, with the toolkit's packaged
    ``accept-nvidia-visible-devices-envvar-when-unprivileged = true``). Sets the device plugin's
    ``deviceListStrategy`` where park-stack installs it, and what ``accelerators.gpu-isolation`` demands."""


KUBE_PROMETHEUS_SYSTEM_COMPONENTS = ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy", "coreDns")
"""kube-prometheus-stack 88.5.3 values keys whose ServiceMonitor and alert rules depend on the cluster
(templates/exporters/*/servicemonitor.yaml and templates/prometheus/rules-1.14/*, each gated on ``.enabled``).
The API server and kubelet scrapers are left on: every cluster serves those to Prometheus."""

GPU_DRIVER_CONTAINER_DIR = "/usr/local/nvidia"
"""Where GKE documents mounting the driver folder, with ``LD_LIBRARY_PATH=/usr/local/nvidia/lib64``."""

NETWORK_POLICY_DOCS = {
    "aws": "https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy-configure.html",
    "gcp": "https://cloud.google.com/kubernetes-engine/docs/concepts/dataplane-v2",
    "kind": "https://github.com/kubernetes-sigs/kind/releases/tag/v0.24.0",
}
"""Where each enforcing datapath is documented: the EKS vpc-cni add-on enforces NetworkPolicy only with the
``enableNetworkPolicy`` configuration value (VPC CNI v1.14.0-eksbuild.3 or later); GKE Dataplane V2 always
enforces it (no Calico add-on to enable on top); kind's kindnet enforces it since kind v0.24.0
(kubernetes-sigs/kind#842, kube-network-policies)."""


CAPABILITIES: dict[str, CloudCapabilities] = {
    "aws": CloudCapabilities(
        True, True, True, False, True, True, "aws",
        needs_cluster_autoscaler=True,
        network_policy_datapath="vpc-cni network policy agent (enableNetworkPolicy)",
        # EKS manages the control plane (no controller-manager, scheduler or etcd targets) and its kube-proxy
        # add-on serves metrics on 127.0.0.1:10249 only; CoreDNS (managed add-on) serves :9153.
        scrapable_system_components=frozenset({"coreDns"}),
    ),
    "gcp": CloudCapabilities(
        True, True, True, True, True, True, "gcp",
        network_policy_datapath="GKE Dataplane V2 (ADVANCED_DATAPATH)",
        # GKE manages the control plane, Dataplane V2 replaces kube-proxy, and GKE Standard's DNS is kube-dns
        # (no CoreDNS on :9153): none of the five scrapers has a target.
        scrapable_system_components=frozenset(),
        gpu_driver_host_dir="/home/kubernetes/bin/nvidia",
        isolates_unrequested_gpus=True,
    ),
    "kind": CloudCapabilities(
        False, False, False, False, False, False, None,
        network_policy_datapath="kindnet with kube-network-policies (kind v0.24.0 and later)",
        # kind is kubeadm with its defaults: controller-manager, scheduler, etcd metrics and kube-proxy metrics
        # listen on 127.0.0.1 of the control-plane node, out of Prometheus's reach; CoreDNS serves :9153.
        scrapable_system_components=frozenset({"coreDns"}),
    ),
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
