"""The gcp adapter: VPC-native private GKE, node pools with GPUs, GCS storage and Workload Identity for Ray.

What it declares, all children of the ``parent`` the Platform hands in and all through an explicit
``gcp.Provider`` for ``spec.project`` / ``spec.region``:

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


# --- the adapter ---------------------------------------------------------------------------------------


class GcpAdapter:
    name = "gcp"
    capabilities = CAPABILITIES["gcp"]

    def provision(self, name: str, spec: StackSpec, parent: pulumi.Resource) -> ClusterHandle:
        require_provisionable(spec)
        return _GkeBuild(name, spec, parent).handle()


class _GkeBuild:
    """Declares the resources of one GKE stack; one method per concern, in dependency order."""

    def __init__(self, name: str, spec: StackSpec, parent: pulumi.Resource):
        self.name, self.spec, self.parent = name, spec, parent
        self.provider = gcp.Provider(
            f"{name}-gcp",
            project=spec.project,
            region=spec.region,
            default_labels={"park-stack-cluster": spec.cluster_name},
            opts=pulumi.ResourceOptions(parent=parent),
        )

    def opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self.parent, provider=self.provider, **kwargs)

    def apis(self) -> None:
        services = [*REQUIRED_APIS, *([FILESTORE_API] if self.spec.storage.shared_filesystem else [])]
        self.enabled_apis: list[pulumi.Resource] = [
            gcp.projects.Service(
                f"{self.name}-api-{service.split('.')[0]}",
                service=service,
                disable_on_destroy=False,
                opts=self.opts(),
            )
            for service in services
        ]

    def network(self) -> None:
        n = self.name
        self.vpc = gcp.compute.Network(
            f"{n}-vpc",
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            opts=self.opts(depends_on=self.enabled_apis),
        )
        self.subnet = gcp.compute.Subnetwork(
            f"{n}-nodes",
            network=self.vpc.id,
            region=self.spec.region,
            ip_cidr_range=NODES_CIDR,
            private_ip_google_access=True,
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=r, ip_cidr_range=cidr)
                for r, cidr in (PODS_RANGE, SERVICES_RANGE)
            ],
            opts=self.opts(),
        )
        router = gcp.compute.Router(
            f"{n}-router", network=self.vpc.id, region=self.spec.region, opts=self.opts()
        )
        gcp.compute.RouterNat(
            f"{n}-nat",
            router=router.name,
            region=self.spec.region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=self.opts(),
        )

    def node_service_account(self) -> None:
        self.node_sa = gcp.serviceaccount.Account(
            f"{self.name}-nodes",
            account_id=account_id(self.spec.cluster_name, "nodes"),
            display_name=f"park-stack {self.spec.cluster_name} GKE nodes",
            opts=self.opts(depends_on=self.enabled_apis),
        )
        self.node_sa_roles = [
            gcp.projects.IAMMember(
                f"{self.name}-nodes-{role.split('/')[-1]}",
                project=self.spec.project,
                role=role,
                member=self.node_sa.email.apply(lambda email: f"serviceAccount:{email}"),
                opts=self.opts(),
            )
            for role in NODE_ROLES
        ]

    def cluster(self) -> None:
        security = self.spec.security
        self.gke = gcp.container.Cluster(
            f"{self.name}-gke",
            name=self.spec.cluster_name,
            location=self.spec.region,
            node_locations=list(dict.fromkeys(self.spec.zones)) or None,
            network=self.vpc.id,
            subnetwork=self.subnet.id,
            networking_mode="VPC_NATIVE",
            datapath_provider=DATAPATH_PROVIDER,
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=PODS_RANGE[0], services_secondary_range_name=SERVICES_RANGE[0]
            ),
            # GKE insists on creating a default pool; it is deleted at once and replaced by the spec's pools.
            remove_default_node_pool=True,
            initial_node_count=1,
            node_config=gcp.container.ClusterNodeConfigArgs(
                service_account=self.node_sa.email, oauth_scopes=OAUTH_SCOPES
            ),
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
                workload_pool=workload_pool(self.spec)
            ),
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=RELEASE_CHANNEL),
            min_master_version=self.spec.kubernetes_version,
            resource_labels={"park-stack-cluster": self.spec.cluster_name},
            # like EKS: `pulumi destroy` removes the cluster without a separate unlock step
            deletion_protection=False,
            opts=self.opts(depends_on=[*self.enabled_apis, *self.node_sa_roles]),
        )

    def node_config(self, pool: NodePool) -> gcp.container.NodePoolNodeConfigArgs:
        offering = self.spec.offering(pool)
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
            machine_type=self.spec.instance_type(pool),
            disk_size_gb=pool.disk_gib,
            disk_type="pd-balanced",
            spot=pool.spot,
            guest_accelerators=accelerators,
            labels=self.spec.node_labels(pool),
            taints=[gcp.container.NodePoolNodeConfigTaintArgs(**t) for t in gke_taints(self.spec, pool)],
            service_account=self.node_sa.email,
            oauth_scopes=OAUTH_SCOPES,
            workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(
                mode=WORKLOAD_METADATA_MODE
            ),
            shielded_instance_config=gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_integrity_monitoring=True
            ),
        )

    def node_pools(self) -> None:
        self.pools = [
            gcp.container.NodePool(
                f"{self.name}-{pool.name}",
                cluster=self.gke.name,
                location=self.spec.region,
                initial_node_count=initial_nodes_per_zone(self.spec, pool),
                autoscaling=gcp.container.NodePoolAutoscalingArgs(
                    total_min_node_count=pool.min_nodes,
                    total_max_node_count=pool.max_nodes,
                    # spot and GPU capacity is scarce: take it in whichever zone has it
                    location_policy="ANY" if pool.spot or pool.has_gpus else "BALANCED",
                ),
                management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
                node_config=self.node_config(pool),
                # the autoscaler owns the size after creation
                opts=self.opts(ignore_changes=["initialNodeCount"]),
            )
            for pool in self.spec.node_pools
        ]

    def bucket(self) -> None:
        days = self.spec.storage.retention_days
        self.gcs = gcp.storage.Bucket(
            f"{self.name}-bucket",
            name=self.spec.bucket_name,
            location=self.spec.region.upper(),
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
            opts=self.opts(depends_on=self.enabled_apis),
        )

    def ray_identity(self) -> None:
        email = gcp_ray_service_account_email(self.spec)
        self.ray_sa = gcp.serviceaccount.Account(
            f"{self.name}-ray",
            account_id=email.split("@")[0],
            display_name=f"park-stack {self.spec.cluster_name} Ray workloads",
            opts=self.opts(depends_on=self.enabled_apis),
        )
        gcp.storage.BucketIAMMember(
            f"{self.name}-ray-bucket",
            bucket=self.gcs.name,
            role=RAY_BUCKET_ROLE,
            member=self.ray_sa.email.apply(lambda e: f"serviceAccount:{e}"),
            opts=self.opts(),
        )
        for (namespace, _), member in zip(
            ray_service_accounts(self.spec), workload_identity_members(self.spec)
        ):
            # the identity pool PROJECT.svc.id.goog exists only once a cluster with Workload Identity does
            gcp.serviceaccount.IAMMember(
                f"{self.name}-ray-{namespace}",
                service_account_id=self.ray_sa.name,
                role=WORKLOAD_IDENTITY_ROLE,
                member=member,
                opts=self.opts(depends_on=[self.gke]),
            )

    def shared_filesystem(self) -> pulumi.Output[dict[str, str]] | None:
        shared = self.spec.storage.shared_filesystem
        if shared is None:
            return None
        instance = gcp.filestore.Instance(
            f"{self.name}-filestore",
            tier=FILESTORE_TIER,
            location=self.spec.zones[0],
            file_shares=gcp.filestore.InstanceFileSharesArgs(
                name=FILESTORE_SHARE, capacity_gb=shared.capacity_gib
            ),
            networks=[
                gcp.filestore.InstanceNetworkArgs(
                    network=self.vpc.name, modes=["MODE_IPV4"], connect_mode="DIRECT_PEERING"
                )
            ],
            opts=self.opts(depends_on=self.enabled_apis),
        )
        return instance.networks.apply(
            lambda networks: {
                "kind": "filestore",
                "server": networks[0].ip_addresses[0],
                "share": f"/{FILESTORE_SHARE}",
                "mountPath": shared.mount_path,
            }
        )

    def handle(self) -> ClusterHandle:
        self.apis()
        self.network()
        self.node_service_account()
        self.cluster()
        self.node_pools()
        self.bucket()
        self.ray_identity()
        shared = self.shared_filesystem()
        kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(
                self.gke.name,
                self.gke.endpoint,
                self.gke.master_auth.cluster_ca_certificate,
            ).apply(lambda v: json.dumps(gke_kubeconfig(v[0], v[1], v[2])))
        )
        provider = k8s.Provider(
            f"{self.name}-k8s",
            kubeconfig=kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self.parent),
        )
        return ClusterHandle(
            provider=provider,
            kubeconfig=kubeconfig,
            cluster_name=self.gke.name,
            storage_uri=pulumi.Output.from_input(self.spec.storage_uri),
            ray_service_account_annotations=pulumi.Output.from_input(ray_identity_annotations(self.spec)),
            depends_on=list(self.pools),
            shared_filesystem=shared,
            outputs={
                "network": self.vpc.name,
                "rayServiceAccount": self.ray_sa.email,
                "nodeServiceAccount": self.node_sa.email,
            },
        )


ADAPTER = GcpAdapter()
