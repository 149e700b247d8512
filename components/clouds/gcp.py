"""The gcp adapter: VPC-native private GKE, node pools with GPUs, GCS storage and Workload Identity for Ray.

What it declares, as components under the ``parent`` the Platform hands in (:class:`GcpProjectApis`,
:class:`GkeNetwork`, :class:`GkeCluster` with one :class:`GkeNodePool` per spec pool, :class:`GkeStorage`),
every cloud resource through one explicit ``gcp.Provider`` for ``spec.project`` / ``spec.region``:

- the Google APIs the stack uses (enabled, never disabled on destroy);
- network: a custom-mode VPC, one subnet with secondary ranges for pods and services, Cloud NAT so
  private nodes can pull images;
- cluster: regional GKE without its default node pool, private nodes, optional private endpoint, master
  authorized networks from ``security.allowedCidrs``, Workload Identity, release channel REGULAR;
- node pools: one per spec pool (guest accelerators from the catalog with GKE-installed drivers, spot,
  total-size autoscaling, labels and taints, GKE metadata server) running as a least-privilege node
  service account;
- storage: a private, versioned GCS bucket with lifecycle rules; optional Filestore (zonal tier);
- identity: a Google service account for Ray with ``roles/storage.objectUser`` on the bucket, which only
  the ``park-ray`` service accounts of the team namespaces may impersonate.

GPU taints: GKE itself taints every GPU node ``nvidia.com/gpu=present:NoSchedule``, so the adapter does
not pass that taint again (see :func:`gke_taints`); the nodes still carry exactly ``spec.node_taints``.
GPU time-slicing is GKE's own ``gpu_sharing_config`` because GKE runs its own device plugin.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
from park.components.clouds import (
    CAPABILITIES,
    ClusterHandle,
    gcp_ray_service_account_email,
    ray_identity_annotations,
    ray_service_accounts,
)
from park.components.clouds.checks import account_id, filestore_capacity_problem, gcp_problems as check  # noqa: F401
from park.components.clouds.checks import require_provisionable
from park.components.clouds.component import CloudComponent
from park.components.spec import GPU_TAINT, NodePool, StackSpec

# --- pure facts --------------------------------------------------------------------------------------

NODES_CIDR = "10.0.0.0/20"
PODS_RANGE = ("pods", "10.16.0.0/14")
SERVICES_RANGE = ("services", "10.20.0.0/20")
RELEASE_CHANNEL = "REGULAR"
DATAPATH_PROVIDER = "ADVANCED_DATAPATH"
"""GKE Dataplane V2: eBPF datapath that always enforces NetworkPolicy (and replaces kube-proxy), so the
platform's default-deny policies hold. The Calico network-policy add-on is not enabled on top: GKE does
not support both (https://cloud.google.com/kubernetes-engine/docs/concepts/dataplane-v2)."""
GPU_DRIVER_VERSION = "LATEST"
"""LATEST, not DEFAULT: current vLLM and PyTorch CUDA 12.8 wheels need a newer driver than GKE's default."""
WORKLOAD_METADATA_MODE = "GKE_METADATA"
GKE_TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}
ZONES_PER_REGION_GUESS = 3
"""Used only to size a node pool's first nodes when the spec names no zones (most regions have three)."""

REQUIRED_APIS = (
    "compute.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "storage.googleapis.com",
)
FILESTORE_API = "file.googleapis.com"
NODE_ROLES = ("roles/container.defaultNodeServiceAccount", "roles/artifactregistry.reader")
RAY_BUCKET_ROLE = "roles/storage.objectUser"
WORKLOAD_IDENTITY_ROLE = "roles/iam.workloadIdentityUser"
OAUTH_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
"""Access is decided by IAM roles on the service account; the scope only stops being a second filter."""

FILESTORE_TIER = "ZONAL"
FILESTORE_SHARE = "park"


def workload_pool(spec: StackSpec) -> str:
    return f"{spec.project}.svc.id.goog"


def workload_identity_members(spec: StackSpec) -> list[str]:
    """IAM members for the Kubernetes service accounts that may act as the Ray Google service account."""
    return [f"serviceAccount:{workload_pool(spec)}[{ns}/{sa}]" for ns, sa in ray_service_accounts(spec)]


def gke_taints(spec: StackSpec, pool: NodePool) -> list[dict[str, str]]:
    """The taints to declare on a GKE node pool: the spec's, minus the GPU taint GKE adds by itself."""
    taints = spec.node_taints(pool)
    if pool.has_gpus:
        taints = [t for t in taints if t["key"] != GPU_TAINT["key"]]
    return [{**t, "effect": GKE_TAINT_EFFECTS[t["effect"]]} for t in taints]


def initial_nodes_per_zone(spec: StackSpec, pool: NodePool) -> int:
    """GKE sizes a regional pool per zone at creation; enough that the total reaches ``minNodes``."""
    zones = len(set(spec.zones)) or ZONES_PER_REGION_GUESS
    return math.ceil(pool.min_nodes / zones)


def gke_kubeconfig(cluster_name: str, endpoint: str, cluster_ca_certificate: str) -> dict[str, Any]:
    """A kubeconfig for the GKE cluster that gets a token from ``gke-gcloud-auth-plugin`` on every use."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {
                    "server": f"https://{endpoint}",
                    "certificate-authority-data": cluster_ca_certificate,
                },
            }
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [
            {
                "name": cluster_name,
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "gke-gcloud-auth-plugin",
                        "installHint": "gcloud components install gke-gcloud-auth-plugin",
                        "interactiveMode": "Never",
                        "provideClusterInfo": True,
                    }
                },
            }
        ],
    }


# --- the components: project APIs, network, cluster (with its node pools), storage ----------------------


class GcpProjectApis(CloudComponent):
    """The Google APIs the stack uses, enabled and never disabled on destroy (other things may use them)."""

    services: list[gcp.projects.Service]
    """What every resource calling one of these APIs waits for."""

    def __init__(self, name: str, apis: Sequence[str], prefix: str, provider: gcp.Provider,
                 moved_from: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:gcp:ProjectApis", name, prefix, provider, moved_from, opts)
        self.services = [
            gcp.projects.Service(
                f"{prefix}-api-{service.split('.')[0]}",
                service=service,
                disable_on_destroy=False,
                opts=self.child_opts(),
            )
            for service in apis
        ]
        self.register_outputs({"enabledApis": [s.service for s in self.services]})


@dataclass(frozen=True)
class GkeNetworkArgs:
    region: str
    """Region of the nodes' subnet and of the Cloud NAT router."""
    depends_on: Sequence[pulumi.Resource] = ()
    """The enabled Compute API (:class:`GcpProjectApis`). Default: nothing."""


class GkeNetwork(CloudComponent):
    """A custom-mode VPC, one subnet with secondary ranges for pods and services, Cloud NAT for egress."""

    network_id: pulumi.Output[str]
    network_name: pulumi.Output[str]
    subnetwork_id: pulumi.Output[str]

    def __init__(self, name: str, args: GkeNetworkArgs, prefix: str, provider: gcp.Provider,
                 moved_from: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:gcp:GkeNetwork", name, prefix, provider, moved_from, opts)
        n = prefix
        vpc = gcp.compute.Network(
            f"{n}-vpc",
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            opts=self.child_opts(depends_on=list(args.depends_on)),
        )
        subnet = gcp.compute.Subnetwork(
            f"{n}-nodes",
            network=vpc.id,
            region=args.region,
            ip_cidr_range=NODES_CIDR,
            private_ip_google_access=True,
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=r, ip_cidr_range=cidr)
                for r, cidr in (PODS_RANGE, SERVICES_RANGE)
            ],
            opts=self.child_opts(),
        )
        router = gcp.compute.Router(f"{n}-router", network=vpc.id, region=args.region, opts=self.child_opts())
        gcp.compute.RouterNat(
            f"{n}-nat",
            router=router.name,
            region=args.region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=self.child_opts(),
        )
        self.network_id, self.network_name, self.subnetwork_id = vpc.id, vpc.name, subnet.id
        self.register_outputs({"networkId": self.network_id, "networkName": self.network_name,
                               "subnetworkId": self.subnetwork_id})


def gke_node_config(spec: StackSpec, pool: NodePool,
                    service_account: pulumi.Input[str]) -> gcp.container.NodePoolNodeConfigArgs:
    """A pool's nodes: machine type and GPUs from the catalog (GKE installs the driver and time-slices),
    labels and taints from the spec, the least-privilege node service account, shielded VMs."""
    offering = spec.offering(pool)
    accelerators = None
    if offering is not None:
        sharing = None
        if pool.gpu_sharing is not None:
            sharing = gcp.container.NodePoolNodeConfigGuestAcceleratorGpuSharingConfigArgs(
                gpu_sharing_strategy="TIME_SHARING", max_shared_clients_per_gpu=pool.gpu_sharing.replicas
            )
        accelerators = [
            gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                type=offering.guest_accelerator_type,
                count=offering.gpus_per_node,
                gpu_driver_installation_config=(
                    gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                        gpu_driver_version=GPU_DRIVER_VERSION
                    )
                ),
                gpu_sharing_config=sharing,
            )
        ]
    return gcp.container.NodePoolNodeConfigArgs(
        machine_type=spec.instance_type(pool),
        disk_size_gb=pool.disk_gib,
        disk_type="pd-balanced",
        spot=pool.spot,
        guest_accelerators=accelerators,
        labels=spec.node_labels(pool),
        taints=[gcp.container.NodePoolNodeConfigTaintArgs(**t) for t in gke_taints(spec, pool)],
        service_account=service_account,
        oauth_scopes=OAUTH_SCOPES,
        workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(
            mode=WORKLOAD_METADATA_MODE
        ),
        shielded_instance_config=gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
            enable_secure_boot=True, enable_integrity_monitoring=True
        ),
    )


@dataclass(frozen=True)
class GkeNodePoolArgs:
    cluster_name: pulumi.Input[str]
    """The GKE cluster (its output, so the pool waits for it)."""
    location: str
    """The cluster's region: a regional pool, sized per zone."""
    pool: NodePool
    """The spec's pool: sizes, spot, GPUs (spot or GPU pools take capacity in any zone that has it)."""
    initial_node_count: int
    """Nodes per zone at creation (:func:`initial_nodes_per_zone`); the autoscaler owns the size after."""
    node_config: gcp.container.NodePoolNodeConfigArgs
    """From :func:`gke_node_config`."""


class GkeNodePool(CloudComponent):
    """One autoscaled, auto-repaired, auto-upgraded GKE node pool for one spec pool."""

    node_pool_name: pulumi.Output[str]

    def __init__(self, name: str, args: GkeNodePoolArgs, prefix: str, provider: gcp.Provider,
                 moved_from: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:gcp:GkeNodePool", name, prefix, provider, moved_from, opts)
        pool = args.pool
        self.node_pool = gcp.container.NodePool(
            f"{prefix}-{pool.name}",
            cluster=args.cluster_name,
            location=args.location,
            initial_node_count=args.initial_node_count,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=pool.min_nodes,
                total_max_node_count=pool.max_nodes,
                # spot and GPU capacity is scarce: take it in whichever zone has it
                location_policy="ANY" if pool.spot or pool.has_gpus else "BALANCED",
            ),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            node_config=args.node_config,
            # the autoscaler owns the size after creation
            opts=self.child_opts(ignore_changes=["initialNodeCount"]),
        )
        self.node_pool_name = self.node_pool.name
        self.register_outputs({"nodePoolName": self.node_pool_name})


@dataclass(frozen=True)
class GkeClusterArgs:
    spec: StackSpec
    """Cluster name, project, region and zones, Kubernetes version, endpoint security
    (``security.privateEndpoint``; ``security.allowedCidrs`` become master authorized networks) and pools."""
    network_id: pulumi.Input[str]
    """From :class:`GkeNetwork`."""
    subnetwork_id: pulumi.Input[str]
    """From :class:`GkeNetwork`: its secondary ranges hold pods and services."""
    depends_on: Sequence[pulumi.Resource] = ()
    """The enabled Container and IAM APIs (:class:`GcpProjectApis`). Default: nothing."""


class GkeCluster(CloudComponent):
    """Regional, VPC-native, private GKE without its default pool, one :class:`GkeNodePool` per spec pool
    running as a least-privilege node service account, and a Kubernetes provider."""

    cluster_name: pulumi.Output[str]
    node_service_account: pulumi.Output[str]
    """Email of the nodes' Google service account."""
    kubeconfig: pulumi.Output[str]
    """Secret; gets tokens from ``gke-gcloud-auth-plugin``."""
    provider: k8s.Provider
    node_pools: list[GkeNodePool]
    cluster: gcp.container.Cluster
    """Workload Identity's pool ``PROJECT.svc.id.goog`` exists only once this does."""

    def __init__(self, name: str, args: GkeClusterArgs, prefix: str, provider: gcp.Provider,
                 moved_from: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:gcp:GkeCluster", name, prefix, provider, moved_from, opts)
        spec, security = args.spec, args.spec.security
        node_sa = gcp.serviceaccount.Account(
            f"{prefix}-nodes",
            account_id=account_id(spec.cluster_name, "nodes"),
            display_name=f"park-stack {spec.cluster_name} GKE nodes",
            opts=self.child_opts(depends_on=list(args.depends_on)),
        )
        node_sa_roles = [
            gcp.projects.IAMMember(
                f"{prefix}-nodes-{role.split('/')[-1]}",
                project=spec.project,
                role=role,
                member=node_sa.email.apply(lambda email: f"serviceAccount:{email}"),
                opts=self.child_opts(),
            )
            for role in NODE_ROLES
        ]
        gke = gcp.container.Cluster(
            f"{prefix}-gke",
            name=spec.cluster_name,
            location=spec.region,
            node_locations=list(dict.fromkeys(spec.zones)) or None,
            network=args.network_id,
            subnetwork=args.subnetwork_id,
            networking_mode="VPC_NATIVE",
            datapath_provider=DATAPATH_PROVIDER,
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=PODS_RANGE[0], services_secondary_range_name=SERVICES_RANGE[0]
            ),
            # GKE insists on creating a default pool; it is deleted at once and replaced by the spec's pools.
            remove_default_node_pool=True,
            initial_node_count=1,
            node_config=gcp.container.ClusterNodeConfigArgs(service_account=node_sa.email, oauth_scopes=OAUTH_SCOPES),
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True, enable_private_endpoint=security.private_endpoint
            ),
            master_authorized_networks_config=gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
                cidr_blocks=[
                    gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                        cidr_block=cidr, display_name=f"allowed-{i}"
                    )
                    for i, cidr in enumerate(security.allowed_cidrs)
                ]
            ),
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=workload_pool(spec)
            ),
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=RELEASE_CHANNEL),
            min_master_version=spec.kubernetes_version,
            resource_labels={"park-stack-cluster": spec.cluster_name},
            # like EKS: `pulumi destroy` removes the cluster without a separate unlock step
            deletion_protection=False,
            opts=self.child_opts(depends_on=[*args.depends_on, *node_sa_roles]),
        )
        self.node_pools = [
            GkeNodePool(
                f"{prefix}-{pool.name}",
                GkeNodePoolArgs(cluster_name=gke.name, location=spec.region, pool=pool,
                                initial_node_count=initial_nodes_per_zone(spec, pool),
                                node_config=gke_node_config(spec, pool, node_sa.email)),
                prefix, provider, moved_from, pulumi.ResourceOptions(parent=self))
            for pool in spec.node_pools
        ]
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(gke.name, gke.endpoint, gke.master_auth.cluster_ca_certificate).apply(
                lambda v: json.dumps(gke_kubeconfig(v[0], v[1], v[2])))
        )
        self.provider = k8s.Provider(f"{prefix}-k8s", kubeconfig=self.kubeconfig, enable_server_side_apply=True,
                                     opts=self.provider_opts())
        self.cluster = gke
        self.cluster_name = gke.name
        self.node_service_account = node_sa.email
        self.register_outputs({"clusterName": self.cluster_name, "kubeconfig": self.kubeconfig,
                               "nodeServiceAccount": self.node_service_account})


@dataclass(frozen=True)
class GkeStorageArgs:
    spec: StackSpec
    """Bucket name, region and retention (``storage.*``), the Ray service accounts of the team namespaces,
    the optional shared filesystem (Filestore in the first zone)."""
    network_name: pulumi.Input[str]
    """From :class:`GkeNetwork`: Filestore peers with it."""
    cluster: pulumi.Resource
    """The GKE cluster: Workload Identity bindings wait for it (the identity pool exists only with it)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """The enabled Storage, IAM and Filestore APIs (:class:`GcpProjectApis`). Default: nothing."""


class GkeStorage(CloudComponent):
    """The stack's GCS bucket (private, versioned, expiring), the Ray Google service account that alone may
    use it (impersonated through Workload Identity), and an optional Filestore instance."""

    ray_service_account: pulumi.Output[str]
    """Email of the Google service account the Ray Kubernetes service accounts act as."""
    shared_filesystem: pulumi.Output[dict[str, str]] | None
    """Where Filestore is (``ClusterHandle.shared_filesystem``); None without one."""

    def __init__(self, name: str, args: GkeStorageArgs, prefix: str, provider: gcp.Provider,
                 moved_from: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:gcp:GkeStorage", name, prefix, provider, moved_from, opts)
        spec, apis = args.spec, list(args.depends_on)
        days = spec.storage.retention_days
        bucket = gcp.storage.Bucket(
            f"{prefix}-bucket",
            name=spec.bucket_name,
            location=spec.region.upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        days_since_noncurrent_time=days, with_state="ARCHIVED"
                    ),
                ),
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        age=days, matches_prefixes=["scratch/"], with_state="ANY"
                    ),
                ),
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="AbortIncompleteMultipartUpload"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=7),
                ),
            ],
            force_destroy=False,
            opts=self.child_opts(depends_on=apis),
        )
        email = gcp_ray_service_account_email(spec)
        ray_sa = gcp.serviceaccount.Account(
            f"{prefix}-ray",
            account_id=email.split("@")[0],
            display_name=f"park-stack {spec.cluster_name} Ray workloads",
            opts=self.child_opts(depends_on=apis),
        )
        gcp.storage.BucketIAMMember(
            f"{prefix}-ray-bucket",
            bucket=bucket.name,
            role=RAY_BUCKET_ROLE,
            member=ray_sa.email.apply(lambda e: f"serviceAccount:{e}"),
            opts=self.child_opts(),
        )
        for (namespace, _), member in zip(ray_service_accounts(spec), workload_identity_members(spec), strict=True):
            # the identity pool PROJECT.svc.id.goog exists only once a cluster with Workload Identity does
            gcp.serviceaccount.IAMMember(
                f"{prefix}-ray-{namespace}",
                service_account_id=ray_sa.name,
                role=WORKLOAD_IDENTITY_ROLE,
                member=member,
                opts=self.child_opts(depends_on=[args.cluster]),
            )
        self.shared_filesystem = self._filestore(args) if spec.storage.shared_filesystem is not None else None
        self.ray_service_account = ray_sa.email
        self.register_outputs({"bucketName": bucket.name, "rayServiceAccount": self.ray_service_account,
                               "sharedFilesystem": self.shared_filesystem})

    def _filestore(self, args: GkeStorageArgs) -> pulumi.Output[dict[str, str]]:
        spec = args.spec
        shared = spec.storage.shared_filesystem
        assert shared is not None
        instance = gcp.filestore.Instance(
            f"{self.prefix}-filestore",
            tier=FILESTORE_TIER,
            location=spec.zones[0],
            file_shares=gcp.filestore.InstanceFileSharesArgs(name=FILESTORE_SHARE, capacity_gb=shared.capacity_gib),
            networks=[
                gcp.filestore.InstanceNetworkArgs(
                    network=args.network_name, modes=["MODE_IPV4"], connect_mode="DIRECT_PEERING"
                )
            ],
            opts=self.child_opts(depends_on=list(args.depends_on)),
        )
        return instance.networks.apply(
            lambda networks: {
                "kind": "filestore",
                "server": networks[0].ip_addresses[0],
                "share": f"/{FILESTORE_SHARE}",
                "mountPath": shared.mount_path,
            }
        )


# --- the adapter ---------------------------------------------------------------------------------------


def gcp_provider(name: str, spec: StackSpec, parent: pulumi.Resource) -> gcp.Provider:
    """The one gcp provider of the stack: the spec's project and region (never the ambient ones)."""
    return gcp.Provider(
        f"{name}-gcp",
        project=spec.project,
        region=spec.region,
        default_labels={"park-stack-cluster": spec.cluster_name},
        opts=pulumi.ResourceOptions(parent=parent),
    )


class GcpAdapter:
    name = "gcp"
    capabilities = CAPABILITIES["gcp"]

    def provision(self, name: str, spec: StackSpec, parent: pulumi.Resource) -> ClusterHandle:
        """APIs, network, the cluster in it, storage its Ray service accounts may use: each a component
        under ``parent``, each taking what it needs from the ones before as arguments."""
        require_provisionable(spec)
        provider = gcp_provider(name, spec, parent)
        under_parent = pulumi.ResourceOptions(parent=parent)
        apis = GcpProjectApis(
            f"{name}-apis", [*REQUIRED_APIS, *([FILESTORE_API] if spec.storage.shared_filesystem else [])],
            name, provider, parent, under_parent)
        network = GkeNetwork(f"{name}-network", GkeNetworkArgs(region=spec.region, depends_on=apis.services),
                             name, provider, parent, under_parent)
        cluster = GkeCluster(
            f"{name}-cluster",
            GkeClusterArgs(spec=spec, network_id=network.network_id, subnetwork_id=network.subnetwork_id,
                           depends_on=apis.services),
            name, provider, parent, under_parent)
        storage = GkeStorage(
            f"{name}-cloud-storage",
            GkeStorageArgs(spec=spec, network_name=network.network_name, cluster=cluster.cluster,
                           depends_on=apis.services),
            name, provider, parent, under_parent)
        return ClusterHandle(
            provider=cluster.provider,
            kubeconfig=cluster.kubeconfig,
            cluster_name=cluster.cluster_name,
            storage_uri=pulumi.Output.from_input(spec.storage_uri),
            ray_service_account_annotations=pulumi.Output.from_input(ray_identity_annotations(spec)),
            depends_on=[p.node_pool for p in cluster.node_pools],
            shared_filesystem=storage.shared_filesystem,
            outputs={
                "network": network.network_name,
                "rayServiceAccount": storage.ray_service_account,
                "nodeServiceAccount": cluster.node_service_account,
            },
        )


ADAPTER = GcpAdapter()
