"""What each cloud offers and allows, without its SDK: the registry the spec, the manifest builders and the
cloud adapters ask, instead of testing ``cloud == "gcp"``.

One :class:`CloudRules` per cloud: its :class:`CloudCapabilities` (facts the cloud-neutral code branches on)
and its limits of a stack spec (checked with the spec itself by ``parse_spec``, so that ``park render``,
``park kind-config`` and ``pulumi up`` all report them, each with its property path). The adapters in
``park.components.clouds`` provision what these rules describe; the rules live below the spec so that the spec
and the builders can read them without importing an adapter (.importlinter).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from park.components import versions
from park.components.problems import Problem

if TYPE_CHECKING:
    from park.components.spec import StackSpec


@dataclass(frozen=True)
class CloudCapabilities:
    supports_spot: bool
    """Pools may ask for spot / preemptible capacity (``nodePools[].spot``)."""
    supports_gpu: bool
    """Pools may name an accelerator; without, workloads fall back to CPU."""
    supports_shared_filesystem: bool
    """``storage.sharedFilesystem`` is provisioned (FSx for Lustre, Filestore)."""
    extra: str | None
    """The pip extra that brings the cloud's SDK."""
    installs_device_plugin: bool
    """The cloud runs its own NVIDIA device plugin (GKE); we must not install a second one."""
    needs_region: bool = False
    """``region`` is required."""
    needs_project: bool = False
    """``project`` (the GCP project id) is required."""
    min_zones: int = 0
    """Fewest distinct ``zones`` the cluster needs; the reason is :attr:`min_zones_reason`."""
    min_zones_reason: str = ""
    takes_kube_context: bool = False
    """``kubeContext`` names a local cluster's context; cloud clusters get their kubeconfig from the stack."""
    fixed_node_shape: str | None = None
    """Why pools take no ``instanceType`` (the nodes are not machines of a catalog); None where they do."""
    bucket_scheme: str | None = None
    """URI scheme of the stack's bucket (``s3``, ``gs``); None where storage is a host folder."""
    needs_cluster_autoscaler: bool = False
    """Node groups scale only if park-stack installs the Kubernetes cluster autoscaler (EKS managed node
    groups); GKE scales node pools itself and kind has no autoscaling."""
    network_policy_datapath: str | None = None
    """What enforces the NetworkPolicies park-stack applies, as the adapter configures it; None means nothing
    would (a default-deny policy would then only look like isolation). See :data:`NETWORK_POLICY_DOCS`."""
    scrapable_system_components: frozenset[str] = frozenset()
    """Which of kube-prometheus-stack's system-component scrapers
    (:data:`~park.components.conventions.KUBE_PROMETHEUS_SYSTEM_COMPONENTS`) reach something on this cloud. A
    scraper with nothing to reach is a target that is always down and an alert (``KubeControllerManagerDown``,
    ``TargetDown``...) that fires forever."""
    gpu_driver_host_dir: str | None = None
    """Host folder holding the NVIDIA driver's libraries and tools when the cloud installs the driver outside
    the container runtime's reach (GKE: ``/home/kubernetes/bin/nvidia``); host agents such as dcgm-exporter
    must mount it at :data:`~park.components.conventions.GPU_DRIVER_CONTAINER_DIR`. None where the container
    toolkit injects the driver."""
    isolates_unrequested_gpus: bool = False
    """GPU nodes give a container GPUs only through the device plugin: an unprivileged container that requests
    no ``nvidia.com/gpu`` gets none even if it sets ``NVIDIA_VISIBLE_DEVICES=all``. GKE: true (its own device
    plugin hands out device nodes; no NVIDIA runtime hook reads the variable). EKS AL2023 NVIDIA AMI: false
    (nodeadm makes nvidia-container-runtime containerd's default runtime, with the toolkit's packaged
    ``accept-nvidia-visible-devices-envvar-when-unprivileged = true``). Sets the device plugin's
    ``deviceListStrategy`` where park-stack installs it, and what ``accelerators.gpu-isolation`` demands."""


NETWORK_POLICY_DOCS = {
    "aws": "https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy-configure.html",
    "gcp": "https://cloud.google.com/kubernetes-engine/docs/concepts/dataplane-v2",
    "kind": "https://github.com/kubernetes-sigs/kind/releases/tag/v0.24.0",
}
"""Where each enforcing datapath is documented: the EKS vpc-cni add-on enforces NetworkPolicy only with the
``enableNetworkPolicy`` configuration value (VPC CNI v1.14.0-eksbuild.3 or later); GKE Dataplane V2 always
enforces it (no Calico add-on to enable on top); kind's kindnet enforces it since kind v0.24.0
(kubernetes-sigs/kind#842, kube-network-policies)."""


# --- limits shared by the clouds with a bucket -------------------------------------------------------------

S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(cloud: str, name: str) -> str | None:
    """Why ``name`` cannot be the stack's bucket on ``cloud`` (None when it can), beyond the 3-63 lower-case
    letters, digits, dots and hyphens that ``storage.bucket``'s pattern already demands. S3: "General purpose
    bucket naming rules" (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html); GCS: "Bucket
    names" (cloud.google.com/storage/docs/buckets#naming)."""
    if ".." in name:
        return f"{name!r} has two adjacent periods"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return f"{name!r} is formatted as an IP address"
    if cloud == "aws":
        reserved = next((x for x in S3_RESERVED_PREFIXES if name.startswith(x)), None)
        if reserved:
            return f"{name!r} starts with {reserved!r}, a prefix S3 reserves"
        reserved = next((x for x in S3_RESERVED_SUFFIXES if name.endswith(x)), None)
        if reserved:
            return f"{name!r} ends with {reserved!r}, a suffix S3 reserves"
    if cloud == "gcp":
        if name.startswith("goog"):
            return f"{name!r} starts with 'goog', which Cloud Storage does not allow"
        if "google" in name or "g00gle" in name:
            return f"{name!r} contains 'google' (or a look-alike), which Cloud Storage does not allow"
    return None


def _bucket_problems(spec: StackSpec) -> list[Problem]:
    reason = bucket_name_problem(spec.cloud, spec.bucket_name)
    if reason is None:
        return []
    if spec.storage.bucket is None:
        reason = f"the default bucket name (<clusterName>-park-data): {reason}; set storage.bucket"
    return [Problem("storage.bucket", reason)]


def no_identity_annotations(spec: StackSpec) -> dict[str, str]:
    """EKS Pod Identity binds outside Kubernetes and kind has no cloud identity: no annotation needed."""
    return {}


# --- aws --------------------------------------------------------------------------------------------------

MAX_ZONES = 6
"""aws: the subnet plan carves one private /19 and one public /22 per zone out of the VPC."""


def fsx_capacity_problem(capacity_gib: int) -> str | None:
    """FSx for Lustre PERSISTENT_2 SSD takes 1200 GiB, 2400 GiB or a multiple of 2400 GiB."""
    if capacity_gib == 1200 or capacity_gib % 2400 == 0:
        return None
    lower = max(1200, capacity_gib // 2400 * 2400)
    upper = (capacity_gib // 2400 + 1) * 2400
    return (
        f"{capacity_gib} GiB is not an FSx for Lustre size (1200, 2400 or a multiple of 2400); "
        f"nearest: {lower} or {upper}"
    )


def aws_problems(spec: StackSpec) -> list[Problem]:
    """Problems only the aws adapter can see (the spec's own checks have passed already)."""
    problems = _bucket_problems(spec)
    if len(set(spec.zones)) > MAX_ZONES:
        problems.append(Problem("zones", f"at most {MAX_ZONES} zones on aws (one subnet pair each)"))
    shared = spec.storage.shared_filesystem
    if shared is not None and (reason := fsx_capacity_problem(shared.capacity_gib)):
        problems.append(Problem("storage.sharedFilesystem.capacityGib", reason))
    return problems


# --- gcp --------------------------------------------------------------------------------------------------


def account_id(cluster_name: str, suffix: str) -> str:
    """A Google service account id (6-30 characters, no trailing hyphen) named after the cluster."""
    return f"{cluster_name}-{suffix}"[:30].rstrip("-")


def gcp_ray_service_account_email(spec: StackSpec) -> str:
    """The Google service account the Ray Kubernetes service account impersonates on GKE."""
    return f"{account_id(spec.cluster_name, 'ray')}@{spec.project}.iam.gserviceaccount.com"


def gcp_identity_annotations(spec: StackSpec) -> dict[str, str]:
    """GKE Workload Identity: the Ray service account names the Google service account it impersonates."""
    return {"iam.gke.io/gcp-service-account": gcp_ray_service_account_email(spec)}


def filestore_capacity_problem(capacity_gib: int) -> str | None:
    """Filestore zonal: 1024-9984 GiB in steps of 256 GiB, or 10240-102400 GiB in steps of 2560 GiB."""
    if 1024 <= capacity_gib <= 9984 and capacity_gib % 256 == 0:
        return None
    if 10240 <= capacity_gib <= 102400 and capacity_gib % 2560 == 0:
        return None
    if capacity_gib < 10240:
        nearest = min(max(1024, math.ceil(capacity_gib / 256) * 256), 9984)
    else:
        nearest = min(math.ceil(capacity_gib / 2560) * 2560, 102400)
    return (
        f"{capacity_gib} GiB is not a Filestore zonal size (1024-9984 GiB in steps of 256, "
        f"10240-102400 GiB in steps of 2560); nearest: {nearest}"
    )


def gcp_problems(spec: StackSpec) -> list[Problem]:
    """Problems only the gcp adapter can see (the spec's own checks have passed already)."""
    problems = _bucket_problems(spec)
    for suffix in ("ray", "nodes"):
        if len(account_id(spec.cluster_name, suffix)) < 6:
            problems.append(
                Problem(
                    "clusterName",
                    f"{spec.cluster_name!r} is too short to name the Google "
                    f"service account {account_id(spec.cluster_name, suffix)!r} "
                    "(6-30 characters); use at least 2 characters",
                )
            )
            break
    shared = spec.storage.shared_filesystem
    if shared is not None:
        if not spec.zones:
            problems.append(
                Problem(
                    "zones",
                    "required with storage.sharedFilesystem on gcp: a zonal Filestore "
                    "instance lives in the first zone",
                )
            )
        if reason := filestore_capacity_problem(shared.capacity_gib):
            problems.append(Problem("storage.sharedFilesystem.capacityGib", reason))
    return problems


# --- kind -------------------------------------------------------------------------------------------------


def kind_problems(spec: StackSpec) -> list[Problem]:
    """Problems only the kind adapter can see (the spec's own checks have passed already)."""
    problems = []
    if versions.kind_node_image(spec.kubernetes_version) is None:
        known = ", ".join(sorted(versions.KIND_NODE_IMAGES))
        problems.append(
            Problem(
                "kubernetesVersion",
                f"no kindest/node image pinned for {spec.kubernetes_version} "
                f"(pinned: {known}); set PARK_KIND_NODE_IMAGE to use another",
            )
        )
    for i, pool in enumerate(spec.node_pools):
        if pool.min_nodes < 1:
            problems.append(
                Problem(
                    f"nodePools[{i}].minNodes",
                    "kind has no autoscaler: a pool with minNodes 0 gets no node; set at least 1",
                )
            )
    return problems


# --- the registry ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloudRules:
    capabilities: CloudCapabilities
    problems: Callable[[StackSpec], list[Problem]]
    """The cloud's limits the cloud-neutral checks do not know; run once those pass."""
    ray_identity_annotations: Callable[[StackSpec], dict[str, str]] = no_identity_annotations
    """Annotations that give the Ray service account its cloud identity."""
    shared_filesystem_placeholder: dict[str, str] | None = None
    """``ClusterFacts.shared_filesystem`` without its ``mountPath``, as ``park render`` shows it: the addresses
    exist only once the cloud created the file system, so they are ``<placeholders>``."""


RULES: dict[str, CloudRules] = {
    "aws": CloudRules(
        CloudCapabilities(
            supports_spot=True, supports_gpu=True, supports_shared_filesystem=True, extra="aws",
            installs_device_plugin=False, needs_region=True,
            min_zones=2,
            min_zones_reason="aws needs at least two availability zones of the region (EKS requires subnets in two)",
            bucket_scheme="s3",
            needs_cluster_autoscaler=True,
            network_policy_datapath="vpc-cni network policy agent (enableNetworkPolicy)",
            # EKS manages the control plane (no controller-manager, scheduler or etcd targets) and its kube-proxy
            # add-on serves metrics on 127.0.0.1:10249 only; CoreDNS (managed add-on) serves :9153.
            scrapable_system_components=frozenset({"coreDns"}),
        ),
        aws_problems,
        shared_filesystem_placeholder={"kind": "fsx-lustre", "fileSystemId": "<fsx-file-system-id>",
                                       "dnsName": "<fsx-dns-name>", "mountName": "<fsx-mount-name>"},
    ),
    "gcp": CloudRules(
        CloudCapabilities(
            supports_spot=True, supports_gpu=True, supports_shared_filesystem=True, extra="gcp",
            installs_device_plugin=True, needs_region=True, needs_project=True,
            bucket_scheme="gs",
            network_policy_datapath="GKE Dataplane V2 (ADVANCED_DATAPATH)",
            # GKE manages the control plane, Dataplane V2 replaces kube-proxy, and GKE Standard's DNS is kube-dns
            # (no CoreDNS on :9153): none of the five scrapers has a target.
            scrapable_system_components=frozenset(),
            gpu_driver_host_dir="/home/kubernetes/bin/nvidia",
            isolates_unrequested_gpus=True,
        ),
        gcp_problems,
        gcp_identity_annotations,
        shared_filesystem_placeholder={"kind": "filestore", "server": "<filestore-ip-address>",
                                       "share": "<filestore-share>"},
    ),
    "kind": CloudRules(
        CloudCapabilities(
            supports_spot=False, supports_gpu=False, supports_shared_filesystem=False, extra=None,
            installs_device_plugin=False, takes_kube_context=True,
            fixed_node_shape="kind nodes are containers on this host",
            network_policy_datapath="kindnet with kube-network-policies (kind v0.24.0 and later)",
            # kind is kubeadm with its defaults: controller-manager, scheduler, etcd metrics and kube-proxy metrics
            # listen on 127.0.0.1 of the control-plane node, out of Prometheus's reach; CoreDNS serves :9153.
            scrapable_system_components=frozenset({"coreDns"}),
        ),
        kind_problems,
    ),
}


def rules_for(cloud: str) -> CloudRules:
    return RULES[cloud]


def cloud_problems(spec: StackSpec) -> list[Problem]:
    """The limits of ``spec.cloud`` that the cloud-neutral checks do not know."""
    return rules_for(spec.cloud).problems(spec)
