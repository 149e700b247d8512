"""The aws adapter: VPC, EKS cluster, managed node groups, S3 storage and Pod Identity for Ray.

What it declares, as components under the ``parent`` the Platform hands in (:class:`EksNetwork`,
:class:`EksCluster` with one :class:`EksNodePool` per spec pool, :class:`EksStorage`), every cloud resource
through one explicit ``aws.Provider`` for ``spec.region``:

- network: a VPC with one private and one public subnet per zone, an internet gateway, one NAT gateway
  (in the first zone; cheaper than one per zone, at the price of cross-zone egress if that zone fails);
- cluster: EKS with API authentication mode, control-plane logging, private or public endpoint, IAM roles;
- node groups: one managed node group per spec pool (AL2023 standard or NVIDIA AMI, spot or on-demand,
  labels and taints from the spec), EKS add-ons (vpc-cni, kube-proxy, pod identity agent before the nodes;
  coredns and the EBS CSI driver after them);
- storage: a private, encrypted, versioned S3 bucket with lifecycle rules; optional FSx for Lustre;
- identity: EKS Pod Identity roles for Ray (only the ``park-ray`` service accounts of the team namespaces),
  the EBS CSI driver and the cluster autoscaler.

The pure builders (subnet plan, IAM policy documents, kubeconfig, capacity checks) are module functions
tested without mocks; the components only declare resources from them, and :class:`AwsAdapter` wires them
together by passing one component's outputs as the next one's arguments.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from park.components import versions
from park.components.clouds import (
    CAPABILITIES,
    CLUSTER_AUTOSCALER_SERVICE_ACCOUNT,
    ClusterHandle,
    ray_identity_annotations,
    ray_service_accounts,
)
from park.components.clouds.checks import MAX_ZONES, aws_problems as check, fsx_capacity_problem  # noqa: F401
from park.components.clouds.checks import require_provisionable
from park.components.clouds.component import CloudComponent
from park.components.spec import NodePool, SharedFilesystem, StackSpec

# --- pure facts --------------------------------------------------------------------------------------

VPC_CIDR = "10.0.0.0/16"
"""The subnet plan gives each zone a /19 private subnet (pods take VPC addresses) and a /22 public one."""

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
CPU_AMI_TYPE = "AL2023_x86_64_STANDARD"
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"
"""The EKS-optimized AL2023 NVIDIA AMI ships the driver and container toolkit (no GPU operator driver)."""
EKS_TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}

ADDONS_BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")
"""DaemonSets the nodes need to become Ready; installed before the node groups."""
ADDONS_AFTER_NODES = ("coredns", "aws-ebs-csi-driver")
"""Deployments that need nodes to schedule on; installed once the node groups exist."""
FSX_CSI_ADDON = "aws-fsx-csi-driver"

VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}
"""vpc-cni add-on configuration values: run the network policy agent, so the NetworkPolicies the platform
applies are enforced (EKS User Guide, cni-network-policy-configure: the value is the string "true"; needs
VPC CNI v1.14.0-eksbuild.3 or later, which every pin in versions.EKS_ADDON_VERSIONS is)."""
ADDON_CONFIGURATION = {"vpc-cni": VPC_CNI_CONFIGURATION}

EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
FSX_DEPLOYMENT_TYPE = "PERSISTENT_2"
FSX_THROUGHPUT_MB_PER_TIB = 125
LUSTRE_PORTS = ((988, 988), (1018, 1023))


@dataclass(frozen=True)
class ZoneSubnets:
    zone: str
    private_cidr: str
    public_cidr: str


def subnet_plan(zones: list[str]) -> list[ZoneSubnets]:
    """One private /19 and one public /22 per zone, carved from :data:`VPC_CIDR` without overlap."""
    unique = list(dict.fromkeys(zones))
    if len(unique) > MAX_ZONES:
        raise ValueError(f"at most {MAX_ZONES} zones fit the subnet plan, got {len(unique)}")
    blocks = list(ipaddress.ip_network(VPC_CIDR).subnets(new_prefix=19))
    public_blocks = list(blocks[-1].subnets(new_prefix=22))
    return [ZoneSubnets(zone, str(blocks[i]), str(public_blocks[i])) for i, zone in enumerate(unique)]


def ami_type(pool: NodePool) -> str:
    return GPU_AMI_TYPE if pool.has_gpus else CPU_AMI_TYPE


def capacity_type(pool: NodePool) -> str:
    return "SPOT" if pool.spot else "ON_DEMAND"


def eks_taints(spec: StackSpec, pool: NodePool) -> list[dict[str, str]]:
    """The pool's taints with EKS effect names (``NoSchedule`` -> ``NO_SCHEDULE``)."""
    return [{**t, "effect": EKS_TAINT_EFFECTS[t["effect"]]} for t in spec.node_taints(pool)]


def service_trust_policy(service: str) -> dict[str, Any]:
    """Trust policy letting an AWS service (``eks.amazonaws.com``, ``ec2.amazonaws.com``) assume a role."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def pod_identity_trust_policy(cluster_arn: str, service_accounts: list[tuple[str, str]]) -> dict[str, Any]:
    """Trust policy for an EKS Pod Identity role, usable only by the listed (namespace, name) service
    accounts of this cluster.

    The Pod Identity associations already bind the role to those service accounts; the conditions on the
    session tags EKS sets make any other association in the account that names this role fail too.
    """
    namespaces = sorted({ns for ns, _ in service_accounts})
    names = sorted({sa for _, sa in service_accounts})
    if len(names) > 1 and len(namespaces) > 1:
        # Two lists would trust every namespace x name pair; one statement per pair trusts exactly the list.
        statements = [
            _pod_identity_statement(cluster_arn, [ns], [sa]) for ns, sa in sorted(set(service_accounts))
        ]
    else:
        statements = [_pod_identity_statement(cluster_arn, namespaces, names)]
    return {"Version": "2012-10-17", "Statement": statements}


def _pod_identity_statement(cluster_arn: str, namespaces: list[str], names: list[str]) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {
            "StringEquals": {
                "aws:RequestTag/eks-cluster-arn": cluster_arn,
                "aws:RequestTag/kubernetes-namespace": namespaces,
                "aws:RequestTag/kubernetes-service-account": names,
            }
        },
    }


def ray_bucket_policy(bucket_arn: str) -> dict[str, Any]:
    """What Ray may do: read, write and list checkpoints and outputs in the stack's bucket, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListTheBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                "Resource": bucket_arn,
            },
            {
                "Sid": "ReadWriteObjects",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": f"{bucket_arn}/*",
            },
        ],
    }


def deny_insecure_transport_policy(bucket_arn: str) -> dict[str, Any]:
    """Bucket policy refusing plain-HTTP requests."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def cluster_autoscaler_policy(cluster_name: str) -> dict[str, Any]:
    """The autoscaler may read every group but resize only the node groups of this cluster."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Describe",
                "Effect": "Allow",
                "Resource": "*",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeAutoScalingInstances",
                    "autoscaling:DescribeLaunchConfigurations",
                    "autoscaling:DescribeScalingActivities",
                    "autoscaling:DescribeTags",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:GetInstanceTypesFromInstanceRequirements",
                    "eks:DescribeNodegroup",
                ],
            },
            {
                "Sid": "ResizeOwnGroups",
                "Effect": "Allow",
                "Resource": "*",
                "Action": [
                    "autoscaling:SetDesiredCapacity",
                    "autoscaling:TerminateInstanceInAutoScalingGroup",
                ],
                "Condition": {
                    "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}
                },
            },
        ],
    }


def eks_kubeconfig(
    cluster_name: str, endpoint: str, certificate_authority_data: str, region: str
) -> dict[str, Any]:
    """A kubeconfig for the EKS cluster that gets a token from ``aws eks get-token`` on every use."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": endpoint, "certificate-authority-data": certificate_authority_data},
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
                        "command": "aws",
                        "args": [
                            "eks",
                            "get-token",
                            "--cluster-name",
                            cluster_name,
                            "--region",
                            region,
                            "--output",
                            "json",
                        ],
                        "interactiveMode": "Never",
                        "provideClusterInfo": False,
                    }
                },
            }
        ],
    }


_SseByDefault = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs

# --- the components: network, cluster (with its node pools), storage -------------------------------------


@dataclass(frozen=True)
class EksNetworkArgs:
    cluster_name: str
    """Names the VPC, gateways and subnets (``Name`` tags) and tags the subnets for the cluster's load
    balancers (``kubernetes.io/cluster/<name>: shared``)."""
    zones: Sequence[str]
    """One private /19 and one public /22 subnet per zone (repeats ignored, order kept; at most
    :data:`MAX_ZONES`); the one NAT gateway sits in the first zone."""


class EksNetwork(CloudComponent):
    """The VPC: private and public subnets per zone, an internet gateway, one NAT gateway for private egress."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    """Per zone, in the order of ``args.zones``: where the nodes, the control plane's ENIs and FSx go."""
    public_subnet_ids: list[pulumi.Output[str]]
    """Per zone: the NAT gateway and internet-facing load balancers."""

    def __init__(self, name: str, args: EksNetworkArgs, prefix: str, provider: aws.Provider,
                 moved_from: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:aws:EksNetwork", name, prefix, provider, moved_from, opts)
        n, cluster = prefix, args.cluster_name
        vpc = aws.ec2.Vpc(
            f"{n}-vpc",
            cidr_block=VPC_CIDR,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{cluster}-vpc"},
            opts=self.child_opts(),
        )
        gateway = aws.ec2.InternetGateway(
            f"{n}-igw", vpc_id=vpc.id, tags={"Name": f"{cluster}-igw"}, opts=self.child_opts()
        )
        public_routes = aws.ec2.RouteTable(
            f"{n}-public",
            vpc_id=vpc.id,
            tags={"Name": f"{cluster}-public"},
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            opts=self.child_opts(),
        )
        plan = subnet_plan(list(args.zones))
        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        cluster_tag = f"kubernetes.io/cluster/{cluster}"
        for zone in plan:
            public = aws.ec2.Subnet(
                f"{n}-public-{zone.zone}",
                vpc_id=vpc.id,
                availability_zone=zone.zone,
                cidr_block=zone.public_cidr,
                map_public_ip_on_launch=False,
                tags={
                    "Name": f"{cluster}-public-{zone.zone}",
                    "kubernetes.io/role/elb": "1",
                    cluster_tag: "shared",
                },
                opts=self.child_opts(),
            )
            aws.ec2.RouteTableAssociation(
                f"{n}-public-{zone.zone}",
                subnet_id=public.id,
                route_table_id=public_routes.id,
                opts=self.child_opts(),
            )
            private = aws.ec2.Subnet(
                f"{n}-private-{zone.zone}",
                vpc_id=vpc.id,
                availability_zone=zone.zone,
                cidr_block=zone.private_cidr,
                tags={
                    "Name": f"{cluster}-private-{zone.zone}",
                    "kubernetes.io/role/internal-elb": "1",
                    cluster_tag: "shared",
                },
                opts=self.child_opts(),
            )
            public_subnets.append(public)
            private_subnets.append(private)
        nat_address = aws.ec2.Eip(
            f"{n}-nat", domain="vpc", tags={"Name": f"{cluster}-nat"}, opts=self.child_opts(depends_on=[gateway])
        )
        nat = aws.ec2.NatGateway(
            f"{n}-nat",
            allocation_id=nat_address.id,
            subnet_id=public_subnets[0].id,
            connectivity_type="public",
            tags={"Name": f"{cluster}-nat"},
            opts=self.child_opts(),
        )
        private_routes = aws.ec2.RouteTable(
            f"{n}-private",
            vpc_id=vpc.id,
            tags={"Name": f"{cluster}-private"},
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
            opts=self.child_opts(),
        )
        for subnet, zone in zip(private_subnets, plan, strict=True):
            aws.ec2.RouteTableAssociation(
                f"{n}-private-{zone.zone}",
                subnet_id=subnet.id,
                route_table_id=private_routes.id,
                opts=self.child_opts(),
            )
        self.vpc_id = vpc.id
        self.private_subnet_ids = [s.id for s in private_subnets]
        self.public_subnet_ids = [s.id for s in public_subnets]
        self.register_outputs({"vpcId": self.vpc_id, "privateSubnetIds": self.private_subnet_ids,
                               "publicSubnetIds": self.public_subnet_ids})


def iam_role(owner: CloudComponent, suffix: str, cluster_name: str, trust_policy: pulumi.Input[str],
             managed_policy_arns: Sequence[tuple[str, pulumi.Input[str]]] = ()) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
    """An IAM role ``{prefix}-{suffix}`` of ``owner`` with AWS-managed policies (``(short name, ARN)``)
    attached; returns the role and what must exist before a service can use it (role and attachments)."""
    role = aws.iam.Role(
        f"{owner.prefix}-{suffix}",
        assume_role_policy=trust_policy,
        description=f"park-stack {cluster_name}: {suffix}",
        opts=owner.child_opts(),
    )
    ready: list[pulumi.Resource] = [role]
    for short_name, arn in managed_policy_arns:
        ready.append(
            aws.iam.RolePolicyAttachment(
                f"{owner.prefix}-{suffix}-{short_name}",
                role=role.name,
                policy_arn=arn,
                opts=owner.child_opts(),
            )
        )
    return role, ready


def pod_identity_role(owner: CloudComponent, suffix: str, cluster_name: str, cluster_arn: pulumi.Input[str],
                      service_accounts: list[tuple[str, str]]) -> aws.iam.Role:
    """An IAM role only the listed service accounts of this cluster may assume through EKS Pod Identity."""
    trust = pulumi.Output.from_input(cluster_arn).apply(
        lambda arn: json.dumps(pod_identity_trust_policy(arn, service_accounts)))
    role, _ = iam_role(owner, suffix, cluster_name, trust)
    return role


@dataclass(frozen=True)
class EksNodePoolArgs:
    cluster_name: pulumi.Input[str]
    """The EKS cluster the group joins (its output, so the group waits for the control plane)."""
    node_role_arn: pulumi.Input[str]
    """The instance role every node runs as."""
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private subnets only: nodes get no public addresses."""
    pool: NodePool
    """The spec's pool: sizes, disk, spot, GPUs (which pick the AMI type)."""
    instance_type: str
    """From the catalog (``spec.instance_type(pool)``)."""
    labels: Mapping[str, str]
    """Node labels, including ``park-stack.io/pool`` (``spec.node_labels(pool)``)."""
    taints: Sequence[Mapping[str, str]]
    """With EKS effect names (:func:`eks_taints`)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What the nodes need before they can become Ready: the CNI, kube-proxy and Pod Identity agent
    add-ons and the instance role's policies. Default: nothing."""


class EksNodePool(CloudComponent):
    """One managed node group for one spec pool; the cluster autoscaler owns its size once it exists."""

    node_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: EksNodePoolArgs, prefix: str, provider: aws.Provider,
                 moved_from: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:aws:EksNodePool", name, prefix, provider, moved_from, opts)
        pool = args.pool
        self.node_group = aws.eks.NodeGroup(
            f"{prefix}-{pool.name}",
            cluster_name=args.cluster_name,
            node_role_arn=args.node_role_arn,
            subnet_ids=list(args.subnet_ids),
            instance_types=[args.instance_type],
            ami_type=ami_type(pool),
            capacity_type=capacity_type(pool),
            disk_size=pool.disk_gib,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=pool.min_nodes, max_size=pool.max_nodes, desired_size=pool.min_nodes
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            labels=dict(args.labels),
            taints=[aws.eks.NodeGroupTaintArgs(**t) for t in args.taints],
            tags={"park-stack.io/pool": pool.name},
            # the cluster autoscaler owns the desired size once the group exists
            opts=self.child_opts(depends_on=list(args.depends_on), ignore_changes=["scalingConfig.desiredSize"]),
        )
        self.node_group_name = self.node_group.node_group_name
        self.register_outputs({"nodeGroupName": self.node_group_name})


@dataclass(frozen=True)
class EksClusterArgs:
    spec: StackSpec
    """Cluster name, Kubernetes version, endpoint security (``security.privateEndpoint`` and
    ``security.allowedCidrs``, which a private endpoint ignores) and the node pools."""
    private_subnet_ids: Sequence[pulumi.Input[str]]
    """From :class:`EksNetwork`: the nodes' subnets, and the control plane's with the public ones."""
    public_subnet_ids: Sequence[pulumi.Input[str]]
    fsx_csi_driver: bool = False
    """Add the FSx for Lustre CSI driver add-on (the stack has a shared filesystem). Default: off."""


class EksCluster(CloudComponent):
    """EKS: the control plane, the managed add-ons around the node pools (one :class:`EksNodePool` each),
    Pod Identity roles of the EBS CSI driver and the cluster autoscaler, and a Kubernetes provider."""

    cluster_name: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    """Secret; gets tokens from ``aws eks get-token``."""
    autoscaler_role_arn: pulumi.Output[str]
    provider: k8s.Provider
    """Server-side apply, through :attr:`kubeconfig`."""
    node_pools: list[EksNodePool]
    ready: list[pulumi.Resource]
    """What workloads on the cluster wait for: the node groups and the add-ons that need nodes."""

    def __init__(self, name: str, args: EksClusterArgs, prefix: str, provider: aws.Provider,
                 moved_from: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:aws:EksCluster", name, prefix, provider, moved_from, opts)
        spec, security = args.spec, args.spec.security
        partition = aws.get_partition_output(
            opts=pulumi.InvokeOutputOptions(parent=self, provider=provider)).partition

        def managed(*policies: str) -> list[tuple[str, pulumi.Output[str]]]:
            return [(p.rsplit("/", 1)[-1], partition.apply(lambda part, p=p: f"arn:{part}:iam::aws:policy/{p}"))
                    for p in policies]

        cluster_role, cluster_role_ready = iam_role(
            self, "cluster", spec.cluster_name, json.dumps(service_trust_policy("eks.amazonaws.com")),
            managed("AmazonEKSClusterPolicy"))
        eks = aws.eks.Cluster(
            f"{prefix}-eks",
            name=spec.cluster_name,
            version=spec.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=[*args.private_subnet_ids, *args.public_subnet_ids],
                endpoint_private_access=True,
                endpoint_public_access=not security.private_endpoint,
                public_access_cidrs=None if security.private_endpoint else list(security.allowed_cidrs),
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=True
            ),
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            # vpc-cni, kube-proxy and coredns come as managed add-ons below, not as unmanaged leftovers
            bootstrap_self_managed_addons=False,
            opts=self.child_opts(depends_on=cluster_role_ready),
        )

        def addon(addon_name: str, depends_on: list[pulumi.Resource],
                  pod_identity: list[aws.eks.AddonPodIdentityAssociationArgs] | None = None) -> aws.eks.Addon:
            # Pinned per Kubernetes minor: EKS's default version moves, and with it a later `pulumi up`.
            configuration = ADDON_CONFIGURATION.get(addon_name)
            return aws.eks.Addon(
                f"{prefix}-{addon_name}",
                cluster_name=eks.name,
                addon_name=addon_name,
                addon_version=versions.eks_addon_version(addon_name, spec.kubernetes_version),
                configuration_values=json.dumps(configuration) if configuration else None,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                pod_identity_associations=pod_identity,
                opts=self.child_opts(depends_on=depends_on),
            )

        # Nodes: the DaemonSets they need to become Ready first, then one node group per pool.
        node_role, node_role_ready = iam_role(
            self, "nodes", spec.cluster_name, json.dumps(service_trust_policy("ec2.amazonaws.com")),
            managed("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"))
        early_addons = [addon(a, [eks]) for a in ADDONS_BEFORE_NODES]
        self.node_pools = [
            EksNodePool(
                f"{prefix}-{pool.name}",
                EksNodePoolArgs(
                    cluster_name=eks.name, node_role_arn=node_role.arn, subnet_ids=args.private_subnet_ids,
                    pool=pool, instance_type=spec.instance_type(pool), labels=spec.node_labels(pool),
                    taints=eks_taints(spec, pool), depends_on=[*early_addons, *node_role_ready]),
                prefix, provider, moved_from, pulumi.ResourceOptions(parent=self))
            for pool in spec.node_pools
        ]
        groups: list[pulumi.Resource] = [p.node_group for p in self.node_pools]

        # Add-ons that schedule pods: once there are nodes.
        ebs_role = pod_identity_role(self, "ebs-csi", spec.cluster_name, eks.arn, [EBS_CSI_SERVICE_ACCOUNT])
        aws.iam.RolePolicyAttachment(
            f"{prefix}-ebs-csi-policy",
            role=ebs_role.name,
            policy_arn=managed("service-role/AmazonEBSCSIDriverPolicy")[0][1],
            opts=self.child_opts(),
        )
        late: list[pulumi.Resource] = [addon("coredns", groups)]
        late.append(addon(
            "aws-ebs-csi-driver", groups,
            pod_identity=[aws.eks.AddonPodIdentityAssociationArgs(
                role_arn=ebs_role.arn, service_account=EBS_CSI_SERVICE_ACCOUNT[1])]))

        # The cluster autoscaler (installed by the add-on of that name) resizes only this cluster's groups.
        namespace, service_account = CLUSTER_AUTOSCALER_SERVICE_ACCOUNT
        autoscaler_role = pod_identity_role(self, "cluster-autoscaler", spec.cluster_name, eks.arn,
                                            [CLUSTER_AUTOSCALER_SERVICE_ACCOUNT])
        aws.iam.RolePolicy(
            f"{prefix}-cluster-autoscaler",
            role=autoscaler_role.name,
            policy=json.dumps(cluster_autoscaler_policy(spec.cluster_name)),
            opts=self.child_opts(),
        )
        aws.eks.PodIdentityAssociation(
            f"{prefix}-cluster-autoscaler",
            cluster_name=eks.name,
            namespace=namespace,
            service_account=service_account,
            role_arn=autoscaler_role.arn,
            opts=self.child_opts(),
        )
        if args.fsx_csi_driver:
            late.append(addon(FSX_CSI_ADDON, groups))

        region = spec.region
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(eks.name, eks.endpoint, eks.certificate_authority.data).apply(
                lambda v: json.dumps(eks_kubeconfig(v[0], v[1], v[2], region)))
        )
        self.provider = k8s.Provider(f"{prefix}-k8s", kubeconfig=self.kubeconfig, enable_server_side_apply=True,
                                     opts=self.provider_opts())
        self.cluster_name = eks.name
        self.cluster_arn = eks.arn
        self.autoscaler_role_arn = autoscaler_role.arn
        self.ready = [*groups, *late]
        self.register_outputs({"clusterName": self.cluster_name, "clusterArn": self.cluster_arn,
                               "kubeconfig": self.kubeconfig, "clusterAutoscalerRoleArn": self.autoscaler_role_arn})


@dataclass(frozen=True)
class EksStorageArgs:
    bucket_name: str
    """The S3 bucket (``spec.bucket_name``); global, so one of the team's own."""
    retention_days: int
    """Noncurrent versions and ``scratch/`` objects expire after this many days."""
    cluster_name: str
    """``spec.cluster_name``: in the roles' descriptions."""
    eks_cluster_name: pulumi.Input[str]
    """The EKS cluster (its output) whose Ray service accounts get the bucket (Pod Identity associations)."""
    cluster_arn: pulumi.Input[str]
    """Scopes the Ray role's trust to this cluster's session tags."""
    ray_service_accounts: Sequence[tuple[str, str]]
    """(namespace, name) of every Ray service account that may use the bucket; nothing else may."""
    vpc_id: pulumi.Input[str]
    """Where FSx for Lustre lives (its security group admits only the VPC's CIDR)."""
    filesystem_subnet_id: pulumi.Input[str]
    """One private subnet for FSx for Lustre (a file system lives in one zone)."""
    shared_filesystem: SharedFilesystem | None = None
    """``storage.sharedFilesystem``: FSx for Lustre of that size, or none. Default: none."""


class EksStorage(CloudComponent):
    """The stack's S3 bucket (private, encrypted, versioned, expiring), the Ray role that alone may use it,
    and an optional FSx for Lustre file system."""

    bucket_arn: pulumi.Output[str]
    ray_role_arn: pulumi.Output[str]
    shared_filesystem: pulumi.Output[dict[str, str]] | None
    """Where FSx for Lustre is (``ClusterHandle.shared_filesystem``); None without one."""

    def __init__(self, name: str, args: EksStorageArgs, prefix: str, provider: aws.Provider,
                 moved_from: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:aws:EksStorage", name, prefix, provider, moved_from, opts)
        bucket = self._bucket(args)
        accounts = list(args.ray_service_accounts)
        ray_role = pod_identity_role(self, "ray", args.cluster_name, args.cluster_arn, accounts)
        aws.iam.RolePolicy(
            f"{prefix}-ray-bucket",
            role=ray_role.name,
            policy=bucket.arn.apply(lambda arn: json.dumps(ray_bucket_policy(arn))),
            opts=self.child_opts(),
        )
        for namespace, service_account in accounts:
            aws.eks.PodIdentityAssociation(
                f"{prefix}-ray-{namespace}",
                cluster_name=args.eks_cluster_name,
                namespace=namespace,
                service_account=service_account,
                role_arn=ray_role.arn,
                opts=self.child_opts(),
            )
        self.shared_filesystem = self._lustre(args) if args.shared_filesystem is not None else None
        self.bucket_arn = bucket.arn
        self.ray_role_arn = ray_role.arn
        self.register_outputs({"bucketArn": self.bucket_arn, "rayRoleArn": self.ray_role_arn,
                               "sharedFilesystem": self.shared_filesystem})

    def _bucket(self, args: EksStorageArgs) -> aws.s3.Bucket:
        n, days = self.prefix, args.retention_days
        bucket = aws.s3.Bucket(f"{n}-bucket", bucket=args.bucket_name, force_destroy=False, opts=self.child_opts())
        aws.s3.BucketOwnershipControls(
            f"{n}-bucket",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=self.child_opts(),
        )
        aws.s3.BucketPublicAccessBlock(
            f"{n}-bucket",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=self.child_opts(),
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{n}-bucket",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    # the AWS-managed aws/s3 key: no key policy to keep, usable by every principal S3 lets in
                    apply_server_side_encryption_by_default=_SseByDefault(sse_algorithm="aws:kms"),
                    bucket_key_enabled=True,
                )
            ],
            opts=self.child_opts(),
        )
        versioning = aws.s3.BucketVersioning(
            f"{n}-bucket",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=self.child_opts(),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{n}-bucket",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(),
                    noncurrent_version_expiration=(
                        aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                            noncurrent_days=days
                        )
                    ),
                    abort_incomplete_multipart_upload=(
                        aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                            days_after_initiation=7
                        )
                    ),
                ),
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-scratch",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix="scratch/"),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
                ),
            ],
            opts=self.child_opts(depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{n}-bucket",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(deny_insecure_transport_policy(arn))),
            opts=self.child_opts(),
        )
        return bucket

    def _lustre(self, args: EksStorageArgs) -> pulumi.Output[dict[str, str]]:
        n, shared = self.prefix, args.shared_filesystem
        assert shared is not None
        lustre = aws.ec2.SecurityGroup(
            f"{n}-lustre",
            vpc_id=args.vpc_id,
            description="FSx for Lustre traffic from inside the VPC",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=lo, to_port=hi, cidr_blocks=[VPC_CIDR])
                for lo, hi in LUSTRE_PORTS
            ],
            egress=[aws.ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, cidr_blocks=[VPC_CIDR])],
            opts=self.child_opts(),
        )
        filesystem = aws.fsx.LustreFileSystem(
            f"{n}-lustre",
            subnet_ids=args.filesystem_subnet_id,
            security_group_ids=[lustre.id],
            storage_capacity=shared.capacity_gib,
            deployment_type=FSX_DEPLOYMENT_TYPE,
            per_unit_storage_throughput=FSX_THROUGHPUT_MB_PER_TIB,
            data_compression_type="LZ4",
            file_system_type_version=versions.FSX_LUSTRE_VERSION,
            opts=self.child_opts(),
        )
        return pulumi.Output.all(filesystem.id, filesystem.dns_name, filesystem.mount_name).apply(
            lambda v: {"kind": "fsx-lustre", "fileSystemId": v[0], "dnsName": v[1], "mountName": v[2],
                       "mountPath": shared.mount_path}
        )


# --- the adapter ---------------------------------------------------------------------------------------


def aws_provider(name: str, spec: StackSpec, parent: pulumi.Resource) -> aws.Provider:
    """The one aws provider of the stack: the spec's region (never the ambient one), tags naming the cluster."""
    return aws.Provider(
        f"{name}-aws",
        region=spec.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags={"park-stack.io/cluster": spec.cluster_name}),
        opts=pulumi.ResourceOptions(parent=parent),
    )


class AwsAdapter:
    name = "aws"
    capabilities = CAPABILITIES["aws"]

    def provision(self, name: str, spec: StackSpec, parent: pulumi.Resource) -> ClusterHandle:
        """Network, then the cluster in it, then storage the cluster's Ray service accounts may use: each
        a component under ``parent``, each taking what it needs from the one before as arguments."""
        require_provisionable(spec)
        provider = aws_provider(name, spec, parent)
        under_parent = pulumi.ResourceOptions(parent=parent)
        network = EksNetwork(f"{name}-network", EksNetworkArgs(cluster_name=spec.cluster_name, zones=spec.zones),
                             name, provider, parent, under_parent)
        cluster = EksCluster(
            f"{name}-cluster",
            EksClusterArgs(spec=spec, private_subnet_ids=network.private_subnet_ids,
                           public_subnet_ids=network.public_subnet_ids,
                           fsx_csi_driver=spec.storage.shared_filesystem is not None),
            name, provider, parent, under_parent)
        storage = EksStorage(
            f"{name}-cloud-storage",
            EksStorageArgs(bucket_name=spec.bucket_name, retention_days=spec.storage.retention_days,
                           cluster_name=spec.cluster_name, eks_cluster_name=cluster.cluster_name,
                           cluster_arn=cluster.cluster_arn, ray_service_accounts=ray_service_accounts(spec),
                           vpc_id=network.vpc_id, filesystem_subnet_id=network.private_subnet_ids[0],
                           shared_filesystem=spec.storage.shared_filesystem),
            name, provider, parent, under_parent)
        return ClusterHandle(
            provider=cluster.provider,
            kubeconfig=cluster.kubeconfig,
            cluster_name=cluster.cluster_name,
            storage_uri=pulumi.Output.from_input(spec.storage_uri),
            ray_service_account_annotations=pulumi.Output.from_input(ray_identity_annotations(spec)),
            depends_on=cluster.ready,
            shared_filesystem=storage.shared_filesystem,
            outputs={
                "vpcId": network.vpc_id,
                "clusterArn": cluster.cluster_arn,
                "rayRoleArn": storage.ray_role_arn,
                "clusterAutoscalerRoleArn": cluster.autoscaler_role_arn,
                "clusterAutoscalerServiceAccount": pulumi.Output.from_input(
                    "/".join(CLUSTER_AUTOSCALER_SERVICE_ACCOUNT)
                ),
            },
        )


ADAPTER = AwsAdapter()
