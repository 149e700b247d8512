"""The aws adapter under Pulumi's mock engine, built from the shipped stacks/Pulumi.aws.yaml.

Pure builders (subnet plan, IAM documents, kubeconfig, capacity checks) are tested directly; the rest
asserts on what the adapter declares. Every mock test returns the Output its assertions run in.
"""

from __future__ import annotations

import functools

import ipaddress
import json
import sys

import pulumi
import pytest
from park.components import spec as specs
from park.components.clouds import aws as adapter
from park.components.clouds import load_adapter
from schemas import TEST_ALLOWED_CIDR, provisionable_variant
from pulumi_mocks import Declared, DeclaredList, Harness, install

STACK_FILE = specs.resolve_stack_file("aws")
SHIPPED = provisionable_variant("aws")
"""The shipped aws stack with the allowedCidrs a team sets before `pulumi up` (the file has none)."""

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ROUTE_TABLE_ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
INTERNET_GATEWAY = "aws:ec2/internetGateway:InternetGateway"
CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ADDON = "aws:eks/addon:Addon"
POD_IDENTITY = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
BUCKET = "aws:s3/bucket:Bucket"
K8S_PROVIDER = "pulumi:providers:kubernetes"
AWS_PROVIDER = "pulumi:providers:aws"

# What the shipped profile must become, pool by pool (an independent reading of Pulumi.aws.yaml + catalog).
EXPECTED_NODE_GROUPS = {
    #  pool:       (instance type,  AMI type,                 capacity,    min, max, disk, GPU taint)
    "system": ("m6i.2xlarge", "AL2023_x86_64_STANDARD", "ON_DEMAND", 2, 3, 100, False),
    "h100-spot": ("p5.48xlarge", "AL2023_x86_64_NVIDIA", "SPOT", 0, 2, 500, True),
    "l4-shared": ("g6.xlarge", "AL2023_x86_64_NVIDIA", "ON_DEMAND", 1, 4, 100, True),
}


variant = functools.partial(provisionable_variant, "aws")
"""The shipped aws spec with some park:* keys replaced (and a CIDR where its endpoint is public)."""


@pytest.fixture
def mocks():
    return install(stack="aws")


def provision(mocks, spec: specs.StackSpec = SHIPPED):
    harness = Harness(mocks)
    handle = adapter.ADAPTER.provision("park-aws", spec, harness.parent)
    return harness, handle


def policy(resource: Declared, key: str) -> dict:
    return json.loads(resource.inputs[key])


# --- pure builders -------------------------------------------------------------------------------


def test_subnet_plan_gives_each_zone_disjoint_subnets_inside_the_vpc():
    plan = adapter.subnet_plan(["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2a"])
    assert [p.zone for p in plan] == ["us-west-2a", "us-west-2b", "us-west-2c"], (
        "zones not deduplicated in order"
    )
    vpc = ipaddress.ip_network(adapter.VPC_CIDR)
    networks = [ipaddress.ip_network(c) for p in plan for c in (p.private_cidr, p.public_cidr)]
    assert all(n.subnet_of(vpc) for n in networks), f"a subnet lies outside {vpc}: {networks}"
    for i, a in enumerate(networks):
        for b in networks[i + 1 :]:
            assert not a.overlaps(b), f"subnets {a} and {b} overlap"
    assert all(ipaddress.ip_network(p.private_cidr).num_addresses >= 8192 for p in plan), (
        "private subnets too small"
    )


def test_subnet_plan_rejects_more_zones_than_fit():
    with pytest.raises(ValueError, match="at most 6 zones"):
        adapter.subnet_plan([f"us-east-1{c}" for c in "abcdefg"])


@pytest.mark.parametrize(
    "capacity, ok", [(1200, True), (2400, True), (7200, True), (1024, False), (3000, False)]
)
def test_fsx_capacity_follows_persistent_2_sizes(capacity, ok):
    problem = adapter.fsx_capacity_problem(capacity)
    assert (problem is None) == ok, f"{capacity} GiB: {problem}"
    if not ok:
        assert "nearest" in problem, f"no suggestion in {problem!r}"


def test_eks_kubeconfig_gets_tokens_from_aws_cli():
    config = adapter.eks_kubeconfig("c1", "https://x.eks.amazonaws.com", "Q0E=", "eu-west-1")
    assert config["clusters"][0]["cluster"] == {
        "server": "https://x.eks.amazonaws.com",
        "certificate-authority-data": "Q0E=",
    }
    exec_ = config["users"][0]["user"]["exec"]
    assert exec_["command"] == "aws"
    assert exec_["args"][:2] == ["eks", "get-token"]
    assert exec_["args"][exec_["args"].index("--cluster-name") + 1] == "c1"
    assert exec_["args"][exec_["args"].index("--region") + 1] == "eu-west-1"
    assert config["current-context"] == config["contexts"][0]["name"]


def test_pod_identity_trust_names_exactly_the_given_service_accounts():
    trust = adapter.pod_identity_trust_policy(
        "arn:aws:eks:r:1:cluster/c", [("a", "park-ray"), ("b", "park-ray")]
    )
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(statement["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    condition = statement["Condition"]["StringEquals"]
    assert condition["aws:RequestTag/kubernetes-namespace"] == ["a", "b"]
    assert condition["aws:RequestTag/kubernetes-service-account"] == ["park-ray"]
    assert condition["aws:RequestTag/eks-cluster-arn"] == "arn:aws:eks:r:1:cluster/c"


def test_pod_identity_trust_never_widens_to_a_cross_product():
    # two namespaces x two names as lists would also trust (a, y) and (b, x); one statement per pair does not
    trust = adapter.pod_identity_trust_policy("arn", [("a", "x"), ("b", "y")])
    pairs = {
        (
            s["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-namespace"][0],
            s["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"][0],
        )
        for s in trust["Statement"]
    }
    assert pairs == {("a", "x"), ("b", "y")}
    assert all(
        len(s["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-namespace"]) == 1
        for s in trust["Statement"]
    )


# --- the shipped profile under mocks ---------------------------------------------------------------


@pulumi.runtime.test
def test_every_resource_is_a_child_of_the_parent_and_uses_the_regional_provider(mocks):
    harness, _ = provision(mocks)

    def check(declared: DeclaredList):
        provider = declared.one(AWS_PROVIDER)
        assert provider.inputs["region"] == "us-west-2", f"{provider.urn} is not for the spec's region"
        for d in declared:
            types = [urn.split("::")[2].rsplit("$", 1)[-1] for urn in declared.ancestors(d)]
            assert types[-1] == "test:index:Harness", f"{d.urn} is not under the parent component"
            assert all(t.startswith("park:aws:") for t in types[:-1]), (
                f"{d.urn} sits under {types}: only the adapter's components may stand between"
            )
            assert d.name.startswith("park-aws-"), f"{d.urn} is not named after the component"
            if d.type.startswith("aws:"):
                assert d.provider.startswith(provider.urn), f"{d.urn} does not use the explicit aws provider"
        assert not any(t.startswith("gcp:") for t in declared.types), "the aws adapter declared gcp resources"

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_network_has_private_and_public_subnets_per_zone_behind_one_nat(mocks):
    harness, _ = provision(mocks)

    def check(declared: DeclaredList):
        vpc = declared.one(VPC)
        assert vpc.inputs["cidrBlock"] == adapter.VPC_CIDR and vpc.inputs["enableDnsHostnames"], vpc.urn
        subnets = declared.of_type(SUBNET)
        for zone in SHIPPED.zones:
            kinds = {
                s.name.removeprefix("park-aws-").split("-", 1)[0]
                for s in subnets
                if s.inputs["availabilityZone"] == zone
            }
            assert kinds == {"private", "public"}, f"zone {zone} has subnets {kinds}"
        for s in subnets:
            role_tag = (
                "kubernetes.io/role/internal-elb" if "-private-" in s.name else "kubernetes.io/role/elb"
            )
            assert s.inputs["tags"].get(role_tag) == "1", f"subnet {s.urn} lacks the {role_tag} tag"
            assert not s.inputs.get("mapPublicIpOnLaunch"), f"subnet {s.urn} gives instances public IPs"
        public_ids = {s.id for s in subnets if "-public-" in s.name}
        nat = declared.one(NAT_GATEWAY)
        assert nat.inputs["subnetId"] in public_ids, f"{nat.urn} is not in a public subnet"
        tables = {t.name: t for t in declared.of_type(ROUTE_TABLE)}
        private, public = tables["park-aws-private"], tables["park-aws-public"]
        assert private.inputs["routes"] == [{"cidrBlock": "0.0.0.0/0", "natGatewayId": nat.id}], (
            f"{private.urn} does not send egress through the NAT gateway"
        )
        assert public.inputs["routes"] == [
            {"cidrBlock": "0.0.0.0/0", "gatewayId": declared.one(INTERNET_GATEWAY).id}
        ], f"{public.urn} does not route to the internet gateway"
        table_of = {
            a.inputs["subnetId"]: a.inputs["routeTableId"] for a in declared.of_type(ROUTE_TABLE_ASSOCIATION)
        }
        for s in subnets:
            expected = public if "-public-" in s.name else private
            assert table_of.get(s.id) == expected.id, f"subnet {s.urn} is not associated with {expected.name}"

    return harness.settled().apply(check)


@pytest.mark.parametrize("private", [False, True], ids=["public-endpoint", "private-endpoint"])
@pulumi.runtime.test
def test_cluster_endpoint_logging_and_authentication(mocks, private):
    spec = variant(security={"privateEndpoint": True}) if private else SHIPPED
    harness, _ = provision(mocks, spec)

    def check(declared: DeclaredList):
        cluster = declared.one(CLUSTER)
        vpc_config = cluster.inputs["vpcConfig"]
        assert cluster.inputs["name"] == "park-aws" and cluster.inputs["version"] == "1.33", cluster.urn
        assert vpc_config["endpointPrivateAccess"] is True, (
            f"{cluster.urn}: nodes cannot reach the API privately"
        )
        assert vpc_config["endpointPublicAccess"] is (not private), (
            f"{cluster.urn}: public endpoint switch ignored"
        )
        if private:
            assert not vpc_config.get("publicAccessCidrs"), f"{cluster.urn}: CIDRs on a private endpoint"
        else:
            assert vpc_config["publicAccessCidrs"] == [TEST_ALLOWED_CIDR], f"{cluster.urn}: wrong public CIDRs"
        assert set(cluster.inputs["enabledClusterLogTypes"]) == {
            "api",
            "audit",
            "authenticator",
            "controllerManager",
            "scheduler",
        }, f"{cluster.urn}: logging"
        assert cluster.inputs["accessConfig"]["authenticationMode"] == "API", f"{cluster.urn}: auth mode"
        role = next(r for r in declared.of_type(ROLE) if r.name == "park-aws-cluster")
        assert policy(role, "assumeRolePolicy")["Statement"][0]["Principal"] == {
            "Service": "eks.amazonaws.com"
        }
        assert cluster.inputs["roleArn"] == role.state["arn"], f"{cluster.urn} does not use the cluster role"
        attachments = [
            a for a in declared.of_type(ROLE_POLICY_ATTACHMENT) if a.name.startswith("park-aws-cluster-")
        ]
        assert attachments[0].inputs["policyArn"] == "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
        assert attachments[0].name in cluster.depends_on, (
            f"{cluster.urn} may start before its policy is attached"
        )

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_node_groups_follow_the_pools(mocks):
    harness, _ = provision(mocks)

    def check(declared: DeclaredList):
        groups = {g.name.removeprefix("park-aws-"): g for g in declared.of_type(NODE_GROUP)}
        assert set(groups) == set(EXPECTED_NODE_GROUPS), f"node groups {sorted(groups)}"
        for pool, (itype, ami, capacity, lo, hi, disk, gpu) in EXPECTED_NODE_GROUPS.items():
            g = groups[pool]
            assert g.inputs["instanceTypes"] == [itype], f"node group {g.urn} has {g.inputs['instanceTypes']}"
            assert g.inputs["amiType"] == ami, f"node group {g.urn} has AMI type {g.inputs['amiType']}"
            assert g.inputs["capacityType"] == capacity, (
                f"node group {g.urn} has capacity {g.inputs['capacityType']}"
            )
            scaling = g.inputs["scalingConfig"]
            assert (scaling["minSize"], scaling["maxSize"], scaling["desiredSize"]) == (lo, hi, lo), g.urn
            assert g.inputs["diskSize"] == disk, f"node group {g.urn} disk {g.inputs['diskSize']}"
            assert g.inputs["labels"]["park-stack.io/pool"] == pool, (
                f"node group {g.urn} lacks the pool label"
            )
            gpu_taints = [t for t in g.inputs.get("taints", []) if t["key"] == "nvidia.com/gpu"]
            if gpu:
                assert gpu_taints == [
                    {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
                ], f"node group {g.urn} has no GPU taint"
            else:
                assert not g.inputs.get("taints"), f"node group {g.urn} is tainted: {g.inputs.get('taints')}"
            assert all(s.startswith("park-aws-private-") for s in g.inputs["subnetIds"]), (
                f"node group {g.urn} is not only in private subnets"
            )
        assert groups["h100-spot"].inputs["labels"]["park-stack.io/capacity"] == "spot", (
            "extra pool label lost"
        )

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_addons_are_ordered_around_the_node_groups(mocks):
    harness, handle = provision(mocks)

    def check(declared: DeclaredList):
        addons = {a.inputs["addonName"]: a for a in declared.of_type(ADDON)}
        assert set(addons) == {*adapter.ADDONS_BEFORE_NODES, *adapter.ADDONS_AFTER_NODES}, sorted(addons)
        groups = [g.name for g in declared.of_type(NODE_GROUP)]
        for g in declared.of_type(NODE_GROUP):
            missing = {f"park-aws-{a}" for a in adapter.ADDONS_BEFORE_NODES} - set(g.depends_on)
            assert not missing, f"node group {g.urn} may start before {missing}"
        for name in adapter.ADDONS_AFTER_NODES:
            assert set(groups) <= set(addons[name].depends_on), (
                f"add-on {addons[name].urn} may start before nodes"
            )
        ebs = addons["aws-ebs-csi-driver"].inputs["podIdentityAssociations"]
        assert [a["serviceAccount"] for a in ebs] == ["ebs-csi-controller-sa"], (
            "EBS CSI driver has no identity"
        )
        ebs_role = next(r for r in declared.of_type(ROLE) if r.state["arn"] == ebs[0]["roleArn"])
        condition = policy(ebs_role, "assumeRolePolicy")["Statement"][0]["Condition"]["StringEquals"]
        assert condition["aws:RequestTag/kubernetes-namespace"] == ["kube-system"], ebs_role.urn

    return pulumi.Output.all(harness.settled(), pulumi.Output.all(*[r.urn for r in handle.depends_on])).apply(
        lambda v: (check(v[0]), _check_handle_waits_for(v[0], v[1]))
    )


def _check_handle_waits_for(declared: DeclaredList, urns: list[str]) -> None:
    waited = {u.split("::")[-1] for u in urns}
    expected = {g.name for g in declared.of_type(NODE_GROUP)} | {
        "park-aws-coredns",
        "park-aws-aws-ebs-csi-driver",
    }
    assert expected <= waited, f"the handle does not make add-ons wait for {expected - waited}"


@pulumi.runtime.test
def test_bucket_is_private_encrypted_versioned_and_expires_scratch(mocks):
    harness, _ = provision(mocks)

    def check(declared: DeclaredList):
        bucket = declared.one(BUCKET)
        assert bucket.inputs["bucket"] == "park-aws-park-data", f"{bucket.urn} is not spec.bucket_name"
        block = declared.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
            assert block.inputs[flag] is True, f"{block.urn}: {flag} is off"
        sse = declared.one(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )
        algorithm = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
        assert algorithm in ("aws:kms", "AES256"), f"{sse.urn}: encryption {algorithm}"
        versioning = declared.one("aws:s3/bucketVersioning:BucketVersioning")
        assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled", f"{versioning.urn} is off"
        rules = {
            r["id"]: r
            for r in declared.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs[
                "rules"
            ]
        }
        days = SHIPPED.storage.retention_days
        assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == days
        assert rules["expire-scratch"]["filter"]["prefix"] == "scratch/"
        assert rules["expire-scratch"]["expiration"]["days"] == days
        deny = policy(declared.one("aws:s3/bucketPolicy:BucketPolicy"), "policy")["Statement"][0]
        assert deny["Effect"] == "Deny" and deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"
        owners = declared.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
        assert owners.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced", (
            f"{owners.urn}: ACLs still work"
        )

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_ray_role_is_usable_only_by_the_ray_service_accounts_and_only_on_the_bucket(mocks):
    harness, _ = provision(mocks)

    def check(declared: DeclaredList):
        role = next(r for r in declared.of_type(ROLE) if r.name == "park-aws-ray")
        trust = policy(role, "assumeRolePolicy")
        cluster = declared.one(CLUSTER)
        allowed = set()
        for statement in trust["Statement"]:
            assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}, (
                f"role {role.urn} trusts more"
            )
            condition = statement["Condition"]["StringEquals"]
            assert condition["aws:RequestTag/eks-cluster-arn"] == cluster.state["arn"], role.urn
            allowed |= {
                (ns, sa)
                for ns in condition["aws:RequestTag/kubernetes-namespace"]
                for sa in condition["aws:RequestTag/kubernetes-service-account"]
            }
        assert allowed == {("research", "park-ray"), ("serving", "park-ray")}, (
            f"role {role.urn} trusts {allowed}"
        )
        associations = {
            (a.inputs["namespace"], a.inputs["serviceAccount"])
            for a in declared.of_type(POD_IDENTITY)
            if a.inputs["roleArn"] == role.state["arn"]
        }
        assert associations == allowed, f"Pod Identity associations for {role.urn}: {associations}"
        [ray_policy] = [p for p in declared.of_type(ROLE_POLICY) if p.inputs["role"] == role.state["name"]]
        resources = {r for s in policy(ray_policy, "policy")["Statement"] for r in [s["Resource"]]}
        assert resources == {"arn:aws:s3:::park-aws-park-data", "arn:aws:s3:::park-aws-park-data/*"}, (
            f"{ray_policy.urn} reaches beyond the bucket: {resources}"
        )

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_cluster_autoscaler_gets_a_pod_identity_role_scoped_to_this_cluster(mocks):
    harness, handle = provision(mocks)

    def check(declared: DeclaredList, role_arn: str):
        role = next(r for r in declared.of_type(ROLE) if r.name == "park-aws-cluster-autoscaler")
        assert role_arn == role.state["arn"], "handle.outputs does not expose the autoscaler role"
        association = next(a for a in declared.of_type(POD_IDENTITY) if a.inputs["roleArn"] == role_arn)
        assert (
            association.inputs["namespace"],
            association.inputs["serviceAccount"],
        ) == adapter.CLUSTER_AUTOSCALER_SERVICE_ACCOUNT, association.urn
        [inline] = [p for p in declared.of_type(ROLE_POLICY) if p.inputs["role"] == role.state["name"]]
        resize = next(s for s in policy(inline, "policy")["Statement"] if s["Sid"] == "ResizeOwnGroups")
        assert resize["Condition"]["StringEquals"] == {
            "aws:ResourceTag/k8s.io/cluster-autoscaler/park-aws": "owned"
        }, f"{inline.urn} may resize other groups"

    return pulumi.Output.all(harness.settled(), handle.outputs["clusterAutoscalerRoleArn"]).apply(
        lambda v: check(*v)
    )


@pulumi.runtime.test
def test_handle_carries_kubeconfig_provider_storage_and_identity(mocks):
    harness, handle = provision(mocks)

    def check(declared: DeclaredList, kubeconfig: str, storage_uri: str, annotations: dict, name: str):
        config = json.loads(kubeconfig)
        cluster = declared.one(CLUSTER)
        assert config["clusters"][0]["cluster"]["server"] == cluster.state["endpoint"]
        assert (
            config["clusters"][0]["cluster"]["certificate-authority-data"]
            == cluster.state["certificateAuthority"]["data"]
        )
        assert config["users"][0]["user"]["exec"]["args"][3] == "park-aws"
        provider = declared.one(K8S_PROVIDER)
        assert provider.inputs["enableServerSideApply"] == "true", f"{provider.urn} without server-side apply"
        assert json.loads(provider.inputs["kubeconfig"]) == config, f"{provider.urn} uses another kubeconfig"
        assert storage_uri == "s3://park-aws-park-data"
        assert annotations == {}, "EKS Pod Identity needs no service account annotation"
        assert name == "park-aws"
        assert handle.shared_filesystem is None

    return pulumi.Output.all(
        harness.settled(),
        handle.kubeconfig,
        handle.storage_uri,
        handle.ray_service_account_annotations,
        handle.cluster_name,
    ).apply(lambda v: check(*v))


@pulumi.runtime.test
def test_kubeconfig_is_secret_in_the_handle_and_the_provider(mocks):
    harness, handle = provision(mocks)

    def check(declared: DeclaredList, secret: bool):
        assert secret, "handle.kubeconfig is not a secret Output"
        provider = declared.one(K8S_PROVIDER)
        assert "kubeconfig" in provider.secret_inputs, f"{provider.urn} receives the kubeconfig in plain text"

    return pulumi.Output.all(
        harness.settled(), pulumi.Output.from_input(handle.kubeconfig.is_secret())
    ).apply(lambda v: check(*v))


@pulumi.runtime.test
def test_shared_filesystem_is_fsx_lustre_with_its_csi_driver(mocks):
    spec = variant(storage={"sharedFilesystem": {"capacityGib": 2400, "mountPath": "/mnt/lustre"}})
    harness, handle = provision(mocks, spec)

    def check(declared: DeclaredList, shared: dict):
        lustre = declared.one("aws:fsx/lustreFileSystem:LustreFileSystem")
        assert lustre.inputs["storageCapacity"] == 2400, (
            f"{lustre.urn} capacity {lustre.inputs['storageCapacity']}"
        )
        assert lustre.inputs["deploymentType"] == "PERSISTENT_2", lustre.urn
        assert lustre.inputs["subnetIds"].startswith("park-aws-private-"), f"{lustre.urn} is not private"
        group = declared.one("aws:ec2/securityGroup:SecurityGroup")
        ports = {(r["fromPort"], r["toPort"]) for r in group.inputs["ingress"]}
        assert ports == {(988, 988), (1018, 1023)}, f"{group.urn} opens {ports}"
        assert all(r["cidrBlocks"] == [adapter.VPC_CIDR] for r in group.inputs["ingress"]), group.urn
        assert any(a.inputs["addonName"] == "aws-fsx-csi-driver" for a in declared.of_type(ADDON)), (
            "no FSx CSI driver to mount the file system"
        )
        assert shared == {
            "kind": "fsx-lustre",
            "fileSystemId": lustre.id,
            "dnsName": lustre.state["dnsName"],
            "mountName": lustre.state["mountName"],
            "mountPath": "/mnt/lustre",
        }

    return pulumi.Output.all(harness.settled(), handle.shared_filesystem).apply(lambda v: check(*v))


@pulumi.runtime.test
def test_an_fsx_size_fsx_cannot_make_is_a_config_error_naming_the_property():
    with pytest.raises(specs.SpecError, match=r"storage\.sharedFilesystem\.capacityGib: 1024 GiB .* nearest: 1200"):
        variant(storage={"sharedFilesystem": {"capacityGib": 1024}})


def test_missing_sdk_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "park.components.clouds.aws")
    monkeypatch.setitem(sys.modules, "pulumi_aws", None)  # what an environment without the extra looks like
    with pytest.raises(ModuleNotFoundError, match=r"install park-stack\[aws\] to use the aws cloud"):
        load_adapter("aws")
