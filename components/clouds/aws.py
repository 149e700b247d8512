"""The aws adapter: VPC, EKS cluster, managed node groups, S3 storage and Pod Identity for Ray.

What it declares, all children of the ``parent`` the Platform hands in and all through an explicit
``aws.Provider`` for ``spec.region``:

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
tested without mocks; :class:`AwsAdapter` only declares resources from them.
"""

from __future__ import annotations

import ipaddress
import json
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
from park.components.spec import NodePool, StackSpec

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

# --- the adapter ---------------------------------------------------------------------------------------


class AwsAdapter:
    name = "aws"
    capabilities = CAPABILITIES["aws"]

    def provision(self, name: str, spec: StackSpec, parent: pulumi.Resource) -> ClusterHandle:
        require_provisionable(spec)
        return _EksBuild(name, spec, parent).handle()


class _EksBuild:
    """Declares the resources of one EKS stack; one method per concern, in dependency order."""

    def __init__(self, name: str, spec: StackSpec, parent: pulumi.Resource):
        self.name, self.spec, self.parent = name, spec, parent
        self.provider = aws.Provider(
            f"{name}-aws",
            region=spec.region,
            default_tags=aws.ProviderDefaultTagsArgs(tags={"park-stack.io/cluster": spec.cluster_name}),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        self.partition = aws.get_partition_output(
            opts=pulumi.InvokeOutputOptions(parent=parent, provider=self.provider)
        ).partition

    def opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self.parent, provider=self.provider, **kwargs)

    def managed_policy(self, policy_name: str) -> pulumi.Output[str]:
        return self.partition.apply(lambda partition: f"arn:{partition}:iam::aws:policy/{policy_name}")

    # -- network --

    def network(self) -> None:
        n, cluster = self.name, self.spec.cluster_name
        self.vpc = aws.ec2.Vpc(
            f"{n}-vpc",
            cidr_block=VPC_CIDR,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{cluster}-vpc"},
            opts=self.opts(),
        )
        gateway = aws.ec2.InternetGateway(
            f"{n}-igw", vpc_id=self.vpc.id, tags={"Name": f"{cluster}-igw"}, opts=self.opts()
        )
        public_routes = aws.ec2.RouteTable(
            f"{n}-public",
            vpc_id=self.vpc.id,
            tags={"Name": f"{cluster}-public"},
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            opts=self.opts(),
        )
        self.public_subnets: list[aws.ec2.Subnet] = []
        self.private_subnets: list[aws.ec2.Subnet] = []
        cluster_tag = f"kubernetes.io/cluster/{cluster}"
        for plan in subnet_plan(self.spec.zones):
            public = aws.ec2.Subnet(
                f"{n}-public-{plan.zone}",
                vpc_id=self.vpc.id,
                availability_zone=plan.zone,
                cidr_block=plan.public_cidr,
                map_public_ip_on_launch=False,
                tags={
                    "Name": f"{cluster}-public-{plan.zone}",
                    "kubernetes.io/role/elb": "1",
                    cluster_tag: "shared",
                },
                opts=self.opts(),
            )
            aws.ec2.RouteTableAssociation(
                f"{n}-public-{plan.zone}",
                subnet_id=public.id,
                route_table_id=public_routes.id,
                opts=self.opts(),
            )
            private = aws.ec2.Subnet(
                f"{n}-private-{plan.zone}",
                vpc_id=self.vpc.id,
                availability_zone=plan.zone,
                cidr_block=plan.private_cidr,
                tags={
                    "Name": f"{cluster}-private-{plan.zone}",
                    "kubernetes.io/role/internal-elb": "1",
                    cluster_tag: "shared",
                },
                opts=self.opts(),
            )
            self.public_subnets.append(public)
            self.private_subnets.append(private)
        nat_address = aws.ec2.Eip(
            f"{n}-nat", domain="vpc", tags={"Name": f"{cluster}-nat"}, opts=self.opts(depends_on=[gateway])
        )
        nat = aws.ec2.NatGateway(
            f"{n}-nat",
            allocation_id=nat_address.id,
            subnet_id=self.public_subnets[0].id,
            connectivity_type="public",
            tags={"Name": f"{cluster}-nat"},
            opts=self.opts(),
        )
        private_routes = aws.ec2.RouteTable(
            f"{n}-private",
            vpc_id=self.vpc.id,
            tags={"Name": f"{cluster}-private"},
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
            opts=self.opts(),
        )
        for subnet, plan in zip(self.private_subnets, subnet_plan(self.spec.zones)):
            aws.ec2.RouteTableAssociation(
                f"{n}-private-{plan.zone}",
                subnet_id=subnet.id,
                route_table_id=private_routes.id,
                opts=self.opts(),
            )

    # -- cluster --

    def role(
        self, suffix: str, trust_policy: pulumi.Input[str], policies: tuple[str, ...] = ()
    ) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
        """An IAM role with AWS-managed policies attached; returns the role and everything that must exist
        before a service can use it (the role and its attachments)."""
        role = aws.iam.Role(
            f"{self.name}-{suffix}",
            assume_role_policy=trust_policy,
            description=f"park-stack {self.spec.cluster_name}: {suffix}",
            opts=self.opts(),
        )
        ready: list[pulumi.Resource] = [role]
        for policy in policies:
            ready.append(
                aws.iam.RolePolicyAttachment(
                    f"{self.name}-{suffix}-{policy.rsplit('/', 1)[-1]}",
                    role=role.name,
                    policy_arn=self.managed_policy(policy),
                    opts=self.opts(),
                )
            )
        return role, ready

    def cluster(self) -> None:
        security = self.spec.security
        cluster_role, cluster_role_ready = self.role(
            "cluster", json.dumps(service_trust_policy("eks.amazonaws.com")), ("AmazonEKSClusterPolicy",)
        )
        self.eks = aws.eks.Cluster(
            f"{self.name}-eks",
            name=self.spec.cluster_name,
            version=self.spec.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=[s.id for s in self.private_subnets + self.public_subnets],
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
            opts=self.opts(depends_on=cluster_role_ready),
        )

    def addon(
        self,
        addon_name: str,
        depends_on: list[pulumi.Resource],
        pod_identity: list[aws.eks.AddonPodIdentityAssociationArgs] | None = None,
    ) -> aws.eks.Addon:
        # Pinned per Kubernetes minor: EKS's default version moves, and with it a later `pulumi up`.
        configuration = ADDON_CONFIGURATION.get(addon_name)
        return aws.eks.Addon(
            f"{self.name}-{addon_name}",
            cluster_name=self.eks.name,
            addon_name=addon_name,
            addon_version=versions.eks_addon_version(addon_name, self.spec.kubernetes_version),
            configuration_values=json.dumps(configuration) if configuration else None,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            pod_identity_associations=pod_identity,
            opts=self.opts(depends_on=depends_on),
        )

    def node_groups(self) -> None:
        node_role, node_role_ready = self.role(
            "nodes",
            json.dumps(service_trust_policy("ec2.amazonaws.com")),
            ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"),
        )
        early_addons = [self.addon(a, [self.eks]) for a in ADDONS_BEFORE_NODES]
        self.groups: list[aws.eks.NodeGroup] = []
        for pool in self.spec.node_pools:
            self.groups.append(
                aws.eks.NodeGroup(
                    f"{self.name}-{pool.name}",
                    cluster_name=self.eks.name,
                    node_role_arn=node_role.arn,
                    subnet_ids=[s.id for s in self.private_subnets],
                    instance_types=[self.spec.instance_type(pool)],
                    ami_type=ami_type(pool),
                    capacity_type=capacity_type(pool),
                    disk_size=pool.disk_gib,
                    scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                        min_size=pool.min_nodes, max_size=pool.max_nodes, desired_size=pool.min_nodes
                    ),
                    update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
                    labels=self.spec.node_labels(pool),
                    taints=[aws.eks.NodeGroupTaintArgs(**t) for t in eks_taints(self.spec, pool)],
                    tags={"park-stack.io/pool": pool.name},
                    # the cluster autoscaler owns the desired size once the group exists
                    opts=self.opts(
                        depends_on=[*early_addons, *node_role_ready],
                        ignore_changes=["scalingConfig.desiredSize"],
                    ),
                )
            )

    def pod_identity_role(self, suffix: str, service_accounts: list[tuple[str, str]]) -> aws.iam.Role:
        trust = self.eks.arn.apply(lambda arn: json.dumps(pod_identity_trust_policy(arn, service_accounts)))
        role, _ = self.role(suffix, trust)
        return role

    def late_addons(self) -> None:
        ebs_role = self.pod_identity_role("ebs-csi", [EBS_CSI_SERVICE_ACCOUNT])
        aws.iam.RolePolicyAttachment(
            f"{self.name}-ebs-csi-policy",
            role=ebs_role.name,
            policy_arn=self.managed_policy("service-role/AmazonEBSCSIDriverPolicy"),
            opts=self.opts(),
        )
        self.late: list[pulumi.Resource] = [self.addon("coredns", self.groups)]
        self.late.append(
            self.addon(
                "aws-ebs-csi-driver",
                self.groups,
                pod_identity=[
                    aws.eks.AddonPodIdentityAssociationArgs(
                        role_arn=ebs_role.arn, service_account=EBS_CSI_SERVICE_ACCOUNT[1]
                    )
                ],
            )
        )

    def autoscaler_identity(self) -> None:
        namespace, service_account = CLUSTER_AUTOSCALER_SERVICE_ACCOUNT
        self.autoscaler_role = self.pod_identity_role(
            "cluster-autoscaler", [CLUSTER_AUTOSCALER_SERVICE_ACCOUNT]
        )
        aws.iam.RolePolicy(
            f"{self.name}-cluster-autoscaler",
            role=self.autoscaler_role.name,
            policy=json.dumps(cluster_autoscaler_policy(self.spec.cluster_name)),
            opts=self.opts(),
        )
        aws.eks.PodIdentityAssociation(
            f"{self.name}-cluster-autoscaler",
            cluster_name=self.eks.name,
            namespace=namespace,
            service_account=service_account,
            role_arn=self.autoscaler_role.arn,
            opts=self.opts(),
        )

    # -- storage and identity --

    def bucket(self) -> None:
        n, days = self.name, self.spec.storage.retention_days
        self.s3 = aws.s3.Bucket(
            f"{n}-bucket", bucket=self.spec.bucket_name, force_destroy=False, opts=self.opts()
        )
        aws.s3.BucketOwnershipControls(
            f"{n}-bucket",
            bucket=self.s3.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=self.opts(),
        )
        aws.s3.BucketPublicAccessBlock(
            f"{n}-bucket",
            bucket=self.s3.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=self.opts(),
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{n}-bucket",
            bucket=self.s3.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    # the AWS-managed aws/s3 key: no key policy to keep, usable by every principal S3 lets in
                    apply_server_side_encryption_by_default=_SseByDefault(sse_algorithm="aws:kms"),
                    bucket_key_enabled=True,
                )
            ],
            opts=self.opts(),
        )
        versioning = aws.s3.BucketVersioning(
            f"{n}-bucket",
            bucket=self.s3.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=self.opts(),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{n}-bucket",
            bucket=self.s3.id,
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
            opts=self.opts(depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{n}-bucket",
            bucket=self.s3.id,
            policy=self.s3.arn.apply(lambda arn: json.dumps(deny_insecure_transport_policy(arn))),
            opts=self.opts(),
        )

    def ray_identity(self) -> None:
        accounts = ray_service_accounts(self.spec)
        self.ray_role = self.pod_identity_role("ray", accounts)
        aws.iam.RolePolicy(
            f"{self.name}-ray-bucket",
            role=self.ray_role.name,
            policy=self.s3.arn.apply(lambda arn: json.dumps(ray_bucket_policy(arn))),
            opts=self.opts(),
        )
        for namespace, service_account in accounts:
            aws.eks.PodIdentityAssociation(
                f"{self.name}-ray-{namespace}",
                cluster_name=self.eks.name,
                namespace=namespace,
                service_account=service_account,
                role_arn=self.ray_role.arn,
                opts=self.opts(),
            )

    def shared_filesystem(self) -> pulumi.Output[dict[str, str]] | None:
        shared = self.spec.storage.shared_filesystem
        if shared is None:
            return None
        n = self.name
        lustre = aws.ec2.SecurityGroup(
            f"{n}-lustre",
            vpc_id=self.vpc.id,
            description="FSx for Lustre traffic from inside the VPC",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp", from_port=lo, to_port=hi, cidr_blocks=[VPC_CIDR]
                )
                for lo, hi in LUSTRE_PORTS
            ],
            egress=[
                aws.ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, cidr_blocks=[VPC_CIDR])
            ],
            opts=self.opts(),
        )
        filesystem = aws.fsx.LustreFileSystem(
            f"{n}-lustre",
            subnet_ids=self.private_subnets[0].id,
            security_group_ids=[lustre.id],
            storage_capacity=shared.capacity_gib,
            deployment_type=FSX_DEPLOYMENT_TYPE,
            per_unit_storage_throughput=FSX_THROUGHPUT_MB_PER_TIB,
            data_compression_type="LZ4",
            file_system_type_version=versions.FSX_LUSTRE_VERSION,
            opts=self.opts(),
        )
        self.late.append(self.addon(FSX_CSI_ADDON, self.groups))
        return pulumi.Output.all(filesystem.id, filesystem.dns_name, filesystem.mount_name).apply(
            lambda v: {
                "kind": "fsx-lustre",
                "fileSystemId": v[0],
                "dnsName": v[1],
                "mountName": v[2],
                "mountPath": shared.mount_path,
            }
        )

    # -- the handle --

    def handle(self) -> ClusterHandle:
        self.network()
        self.cluster()
        self.node_groups()
        self.late_addons()
        self.autoscaler_identity()
        self.bucket()
        self.ray_identity()
        shared = self.shared_filesystem()
        region = self.spec.region
        kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(
                self.eks.name,
                self.eks.endpoint,
                self.eks.certificate_authority.data,
            ).apply(lambda v: json.dumps(eks_kubeconfig(v[0], v[1], v[2], region)))
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
            cluster_name=self.eks.name,
            storage_uri=pulumi.Output.from_input(self.spec.storage_uri),
            ray_service_account_annotations=pulumi.Output.from_input(ray_identity_annotations(self.spec)),
            depends_on=[*self.groups, *self.late],
            shared_filesystem=shared,
            outputs={
                "vpcId": self.vpc.id,
                "clusterArn": self.eks.arn,
                "rayRoleArn": self.ray_role.arn,
                "clusterAutoscalerRoleArn": self.autoscaler_role.arn,
                "clusterAutoscalerServiceAccount": pulumi.Output.from_input(
                    "/".join(CLUSTER_AUTOSCALER_SERVICE_ACCOUNT)
                ),
            },
        )


ADAPTER = AwsAdapter()
