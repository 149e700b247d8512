"""The gcp adapter under Pulumi's mock engine, built from the shipped stacks/Pulumi.gcp.yaml.

Pure builders (taints, capacity checks, kubeconfig, Workload Identity members) are tested directly;
the rest asserts on what the adapter declares. Every mock test returns the Output its assertions run in.
"""

from __future__ import annotations

import functools

import json
import sys

import pulumi
import pytest
from park.components import spec as specs
from park.components.clouds import gcp as adapter
from park.components.clouds import gcp_ray_service_account_email, load_adapter
from schemas import TEST_ALLOWED_CIDR, TEST_PROJECT, provisionable_variant
from pulumi_mocks import DeclaredList, Harness, install

STACK_FILE = specs.resolve_stack_file("gcp")
SHIPPED = provisionable_variant("gcp")
"""The shipped gcp stack as a team has it before `pulumi up` (its own project id and bucket name)."""

NETWORK = "gcp:compute/network:Network"
SUBNETWORK = "gcp:compute/subnetwork:Subnetwork"
ROUTER_NAT = "gcp:compute/routerNat:RouterNat"
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
ACCOUNT = "gcp:serviceaccount/account:Account"
ACCOUNT_IAM = "gcp:serviceaccount/iAMMember:IAMMember"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
SERVICE = "gcp:projects/service:Service"
FILESTORE = "gcp:filestore/instance:Instance"
GCP_PROVIDER = "pulumi:providers:gcp"
K8S_PROVIDER = "pulumi:providers:kubernetes"

# The shipped profile, pool by pool (an independent reading of Pulumi.gcp.yaml + the catalog).
EXPECTED_NODE_POOLS = {
    #  pool:       (machine type,    accelerator,          GPUs, spot,  min, max, disk)
    "system": ("e2-standard-8", None, 0, False, 1, 3, 100),
    "a100-spot": ("a2-highgpu-8g", "nvidia-tesla-a100", 8, True, 0, 2, 500),
    "l4": ("g2-standard-8", "nvidia-l4", 1, False, 0, 4, 100),
}


variant = functools.partial(provisionable_variant, "gcp")
"""The shipped gcp spec with some park:* keys replaced (and what a team sets before `pulumi up`)."""


@pytest.fixture
def mocks():
    return install(stack="gcp")


def provision(mocks, spec: specs.StackSpec = SHIPPED):
    harness = Harness(mocks)
    handle = adapter.ADAPTER.provision("park-gcp", spec, harness.parent)
    return harness, handle


# --- pure builders -------------------------------------------------------------------------------


def test_gke_taints_leave_the_gpu_taint_to_gke_and_keep_the_others():
    spec = variant(
        nodePools=[
            {"name": "system", "role": "system", "minNodes": 1, "maxNodes": 1},
            {
                "name": "l4",
                "accelerator": "nvidia-l4",
                "taints": [{"key": "team", "value": "ml", "effect": "NoExecute"}],
            },
            {"name": "cpu", "taints": [{"key": "batch", "effect": "PreferNoSchedule"}]},
        ],
        teams=[{"name": "research"}],
    )
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in spec.node_taints(
        spec.pool("l4")
    )
    assert adapter.gke_taints(spec, spec.pool("l4")) == [
        {"key": "team", "value": "ml", "effect": "NO_EXECUTE"}
    ]
    assert adapter.gke_taints(spec, spec.pool("cpu")) == [
        {"key": "batch", "value": "", "effect": "PREFER_NO_SCHEDULE"}
    ]
    assert adapter.gke_taints(spec, spec.pool("system")) == []


@pytest.mark.parametrize(
    "capacity, ok",
    [
        (1024, True),
        (1280, True),
        (9984, True),
        (10240, True),
        (12800, True),
        (1200, False),
        (10000, False),
        (11000, False),
        (512, False),
    ],
)
def test_filestore_capacity_follows_zonal_tier_steps(capacity, ok):
    problem = adapter.filestore_capacity_problem(capacity)
    assert (problem is None) == ok, f"{capacity} GiB: {problem}"
    if not ok:
        nearest = int(problem.rsplit("nearest: ", 1)[1])
        assert adapter.filestore_capacity_problem(nearest) is None, f"suggested {nearest} is not valid either"


def test_gke_kubeconfig_gets_tokens_from_the_gke_auth_plugin():
    config = adapter.gke_kubeconfig("c1", "10.0.0.2", "Q0E=")
    assert config["clusters"][0]["cluster"] == {
        "server": "https://10.0.0.2",
        "certificate-authority-data": "Q0E=",
    }
    exec_ = config["users"][0]["user"]["exec"]
    assert exec_["command"] == "gke-gcloud-auth-plugin" and exec_["provideClusterInfo"] is True


def test_workload_identity_members_are_the_ray_service_accounts_of_each_team():
    assert adapter.workload_identity_members(SHIPPED) == [
        f"serviceAccount:{TEST_PROJECT}.svc.id.goog[research/park-ray]",
        f"serviceAccount:{TEST_PROJECT}.svc.id.goog[serving/park-ray]",
    ]


def test_service_account_ids_never_end_in_a_hyphen():
    long_name = "a" * 25 + "-bcdefgh"  # 33 chars: a cut at 30 would end in the hyphen of "-ray"
    assert len(adapter.account_id(long_name, "ray")) <= 30
    assert not adapter.account_id(long_name, "ray").endswith("-")
    assert not gcp_ray_service_account_email(variant(clusterName="a" * 25 + "-x")).split("@")[0].endswith("-")


# --- the shipped profile under mocks ---------------------------------------------------------------


@pulumi.runtime.test
def test_every_resource_is_a_child_of_the_parent_and_uses_the_project_provider(mocks):
    harness, _ = provision(mocks)

    def check(declared: DeclaredList):
        provider = declared.one(GCP_PROVIDER)
        assert (provider.inputs["project"], provider.inputs["region"]) == (
            TEST_PROJECT,
            "us-central1",
        ), f"{provider.urn} is not for the spec's project and region"
        for d in declared:
            types = [urn.split("::")[2].rsplit("$", 1)[-1] for urn in declared.ancestors(d)]
            assert types[-1] == "test:index:Harness", f"{d.urn} is not under the parent component"
            assert all(t.startswith("park:gcp:") for t in types[:-1]), (
                f"{d.urn} sits under {types}: only the adapter's components may stand between"
            )
            assert d.name.startswith("park-gcp-"), f"{d.urn} is not named after the component"
            if d.type.startswith("gcp:"):
                assert d.provider.startswith(provider.urn), f"{d.urn} does not use the explicit gcp provider"
        assert not any(t.startswith("aws:") for t in declared.types), "the gcp adapter declared aws resources"
        apis = {s.inputs["service"] for s in declared.of_type(SERVICE)}
        assert set(adapter.REQUIRED_APIS) <= apis, f"APIs not enabled: {set(adapter.REQUIRED_APIS) - apis}"
        assert all(s.inputs["disableOnDestroy"] is False for s in declared.of_type(SERVICE)), (
            "destroying the stack would disable project APIs"
        )

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_network_is_custom_mode_with_secondary_ranges_and_cloud_nat(mocks):
    harness, _ = provision(mocks)

    def check(declared: DeclaredList):
        network = declared.one(NETWORK)
        assert network.inputs["autoCreateSubnetworks"] is False, (
            f"{network.urn} creates subnets in every region"
        )
        subnet = declared.one(SUBNETWORK)
        assert subnet.inputs["network"] == network.id and subnet.inputs["region"] == "us-central1", subnet.urn
        ranges = {r["rangeName"]: r["ipCidrRange"] for r in subnet.inputs["secondaryIpRanges"]}
        assert ranges == dict([adapter.PODS_RANGE, adapter.SERVICES_RANGE]), f"{subnet.urn} ranges {ranges}"
        assert subnet.inputs["privateIpGoogleAccess"] is True, (
            f"{subnet.urn}: private nodes cannot reach Google APIs"
        )
        nat = declared.one(ROUTER_NAT)
        assert nat.inputs["sourceSubnetworkIpRangesToNat"] == "ALL_SUBNETWORKS_ALL_IP_RANGES", nat.urn

    return harness.settled().apply(check)


@pytest.mark.parametrize("private", [True, False], ids=["private-endpoint", "public-endpoint"])
@pulumi.runtime.test
def test_cluster_is_private_vpc_native_with_workload_identity(mocks, private):
    spec = (
        SHIPPED
        if private
        else variant(security={"privateEndpoint": False, "allowedCidrs": [TEST_ALLOWED_CIDR]})
    )
    harness, _ = provision(mocks, spec)

    def check(declared: DeclaredList):
        cluster = declared.one(CLUSTER)
        i = cluster.inputs
        assert i["name"] == "park-gcp" and i["location"] == "us-central1", cluster.urn
        assert i["nodeLocations"] == ["us-central1-a", "us-central1-c"], (
            f"{cluster.urn} zones {i['nodeLocations']}"
        )
        assert i["removeDefaultNodePool"] is True, f"{cluster.urn} keeps the default node pool"
        assert i["privateClusterConfig"]["enablePrivateNodes"] is True, f"{cluster.urn} nodes have public IPs"
        assert i["privateClusterConfig"]["enablePrivateEndpoint"] is private, (
            f"{cluster.urn}: endpoint switch ignored"
        )
        blocks = [b["cidrBlock"] for b in i["masterAuthorizedNetworksConfig"].get("cidrBlocks", [])]
        assert blocks == ([] if private else [TEST_ALLOWED_CIDR]), (
            f"{cluster.urn} authorized networks {blocks}"
        )
        assert i["workloadIdentityConfig"]["workloadPool"] == f"{TEST_PROJECT}.svc.id.goog", cluster.urn
        assert i["releaseChannel"]["channel"] == "REGULAR" and i["minMasterVersion"] == "1.33", cluster.urn
        assert i["ipAllocationPolicy"] == {
            "clusterSecondaryRangeName": "pods",
            "servicesSecondaryRangeName": "services",
        }, cluster.urn
        assert i["networkingMode"] == "VPC_NATIVE", cluster.urn

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_node_pools_follow_the_pools(mocks):
    harness, _ = provision(mocks)

    def check(declared: DeclaredList):
        pools = {p.name.removeprefix("park-gcp-"): p for p in declared.of_type(NODE_POOL)}
        assert set(pools) == set(EXPECTED_NODE_POOLS), f"node pools {sorted(pools)}"
        node_sa = next(a for a in declared.of_type(ACCOUNT) if a.name == "park-gcp-nodes")
        for pool, (machine, accelerator, gpus, spot, lo, hi, disk) in EXPECTED_NODE_POOLS.items():
            p, config = pools[pool], pools[pool].inputs["nodeConfig"]
            assert config["machineType"] == machine, f"node pool {p.urn} machine {config['machineType']}"
            assert config["spot"] is spot, f"node pool {p.urn} spot={config['spot']}"
            assert config["diskSizeGb"] == disk, f"node pool {p.urn} disk {config['diskSizeGb']}"
            scaling = p.inputs["autoscaling"]
            assert (scaling["totalMinNodeCount"], scaling["totalMaxNodeCount"]) == (lo, hi), (
                f"node pool {p.urn} scales {scaling}"
            )
            accelerators = config.get("guestAccelerators", [])
            if accelerator is None:
                assert not accelerators, f"CPU node pool {p.urn} has accelerators"
            else:
                [acc] = accelerators
                assert (acc["type"], acc["count"]) == (accelerator, gpus), f"node pool {p.urn} has {acc}"
                assert acc["gpuDriverInstallationConfig"]["gpuDriverVersion"] in ("LATEST", "DEFAULT"), (
                    f"node pool {p.urn} installs no GPU driver"
                )
            assert config["labels"]["park-stack.io/pool"] == pool, f"node pool {p.urn} lacks the pool label"
            assert not any(t["key"] == "nvidia.com/gpu" for t in config.get("taints", [])), (
                f"node pool {p.urn} declares the GPU taint GKE adds by itself"
            )
            assert config["workloadMetadataConfig"]["mode"] == "GKE_METADATA", (
                f"{p.urn} exposes node metadata"
            )
            assert config["serviceAccount"] == node_sa.state["email"], (
                f"{p.urn} runs as the default compute SA"
            )
            assert p.inputs["cluster"] == "park-gcp", p.urn
        roles = {
            m.inputs["role"]
            for m in declared.of_type(PROJECT_IAM)
            if m.inputs["member"] == f"serviceAccount:{node_sa.state['email']}"
        }
        assert roles == set(adapter.NODE_ROLES), f"node service account roles {roles}"

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_gpu_sharing_uses_gke_time_sharing(mocks):
    spec = variant(
        nodePools=[
            {"name": "system", "role": "system", "minNodes": 1, "maxNodes": 1},
            {"name": "l4", "accelerator": "nvidia-l4", "maxNodes": 2, "gpuSharing": {"replicas": 4}},
        ],
        teams=[{"name": "research", "quotas": [{"pool": "l4", "gpus": 8}]}],
        # a replica on a 4-way time-sliced GPU gets at most a quarter of it
        models=[{"name": "m", "source": "org/m", "gpuFraction": 0.25}],
    )
    harness, _ = provision(mocks, spec)

    def check(declared: DeclaredList):
        pool = next(p for p in declared.of_type(NODE_POOL) if p.name == "park-gcp-l4")
        [acc] = pool.inputs["nodeConfig"]["guestAccelerators"]
        assert acc["gpuSharingConfig"] == {
            "gpuSharingStrategy": "TIME_SHARING",
            "maxSharedClientsPerGpu": 4,
        }, f"node pool {pool.urn} shares GPUs as {acc.get('gpuSharingConfig')}"

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_bucket_is_private_versioned_and_expires_scratch(mocks):
    harness, _ = provision(mocks)

    def check(declared: DeclaredList):
        bucket = declared.one(BUCKET)
        i = bucket.inputs
        assert i["name"] == "park-gcp-park-data" and i["location"] == "US-CENTRAL1", bucket.urn
        assert i["uniformBucketLevelAccess"] is True, f"{bucket.urn} allows object ACLs"
        assert i["publicAccessPrevention"] == "enforced", f"{bucket.urn} may be made public"
        assert i["versioning"]["enabled"] is True, f"{bucket.urn} is not versioned"
        days = SHIPPED.storage.retention_days
        deletes = [r["condition"] for r in i["lifecycleRules"] if r["action"]["type"] == "Delete"]
        assert {"daysSinceNoncurrentTime": days, "withState": "ARCHIVED"} in deletes, (
            f"{bucket.urn}: {deletes}"
        )
        assert any(c.get("matchesPrefixes") == ["scratch/"] and c.get("age") == days for c in deletes), (
            f"{bucket.urn} does not expire scratch/"
        )

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_ray_identity_is_bound_only_to_the_ray_service_accounts_and_the_bucket(mocks):
    harness, handle = provision(mocks)

    def check(declared: DeclaredList, annotations: dict):
        ray = next(a for a in declared.of_type(ACCOUNT) if a.name == "park-gcp-ray")
        email = gcp_ray_service_account_email(SHIPPED)
        assert ray.state["email"] == email, f"{ray.urn} is {ray.state['email']}, the annotation names {email}"
        assert annotations == {"iam.gke.io/gcp-service-account": email}
        [grant] = [g for g in declared.of_type(BUCKET_IAM) if g.inputs["member"] == f"serviceAccount:{email}"]
        assert (grant.inputs["bucket"], grant.inputs["role"]) == (
            "park-gcp-park-data",
            "roles/storage.objectUser",
        ), f"{grant.urn} grants {grant.inputs['role']} on {grant.inputs['bucket']}"
        bindings = [
            b for b in declared.of_type(ACCOUNT_IAM) if b.inputs["serviceAccountId"] == ray.state["name"]
        ]
        assert {b.inputs["role"] for b in bindings} == {"roles/iam.workloadIdentityUser"}, bindings
        assert sorted(b.inputs["member"] for b in bindings) == [
            f"serviceAccount:{TEST_PROJECT}.svc.id.goog[research/park-ray]",
            f"serviceAccount:{TEST_PROJECT}.svc.id.goog[serving/park-ray]",
        ], f"{ray.urn} can be impersonated by {[b.inputs['member'] for b in bindings]}"
        cluster = declared.one(CLUSTER)
        assert all(cluster.name in b.depends_on for b in bindings), (
            "a Workload Identity binding may be created before its identity pool exists"
        )

    return pulumi.Output.all(harness.settled(), handle.ray_service_account_annotations).apply(
        lambda v: check(*v)
    )


@pulumi.runtime.test
def test_handle_carries_secret_kubeconfig_provider_and_storage(mocks):
    harness, handle = provision(mocks)

    def check(declared: DeclaredList, kubeconfig: str, secret: bool, storage_uri: str, waited: list[str]):
        cluster = declared.one(CLUSTER)
        config = json.loads(kubeconfig)
        assert config["clusters"][0]["cluster"]["server"] == f"https://{cluster.state['endpoint']}"
        assert (
            config["clusters"][0]["cluster"]["certificate-authority-data"]
            == cluster.state["masterAuth"]["clusterCaCertificate"]
        )
        assert secret, "handle.kubeconfig is not a secret Output"
        provider = declared.one(K8S_PROVIDER)
        assert provider.inputs["enableServerSideApply"] == "true", f"{provider.urn} without server-side apply"
        assert "kubeconfig" in provider.secret_inputs, f"{provider.urn} receives the kubeconfig in plain text"
        assert json.loads(provider.inputs["kubeconfig"]) == config, f"{provider.urn} uses another kubeconfig"
        assert storage_uri == "gs://park-gcp-park-data"
        assert {u.split("::")[-1] for u in waited} == {p.name for p in declared.of_type(NODE_POOL)}, (
            "the handle does not make add-ons wait for the node pools"
        )
        assert handle.shared_filesystem is None

    return pulumi.Output.all(
        harness.settled(),
        handle.kubeconfig,
        pulumi.Output.from_input(handle.kubeconfig.is_secret()),
        handle.storage_uri,
        pulumi.Output.all(*[r.urn for r in handle.depends_on]),
    ).apply(lambda v: check(*v))


@pulumi.runtime.test
def test_shared_filesystem_is_a_zonal_filestore_in_the_vpc(mocks):
    spec = variant(storage={"sharedFilesystem": {"capacityGib": 2560, "mountPath": "/mnt/nfs"}})
    harness, handle = provision(mocks, spec)

    def check(declared: DeclaredList, shared: dict):
        instance = declared.one(FILESTORE)
        assert instance.inputs["tier"] == "ZONAL" and instance.inputs["location"] == "us-central1-a", (
            instance.urn
        )
        assert instance.inputs["fileShares"]["capacityGb"] == 2560, instance.urn
        assert instance.inputs["networks"][0]["network"] == declared.one(NETWORK).state["name"], (
            f"{instance.urn} is not on the stack's VPC"
        )
        assert "file.googleapis.com" in {s.inputs["service"] for s in declared.of_type(SERVICE)}, (
            "Filestore API off"
        )
        assert shared == {
            "kind": "filestore",
            "server": instance.state["networks"][0]["ipAddresses"][0],
            "share": "/park",
            "mountPath": "/mnt/nfs",
        }

    return pulumi.Output.all(harness.settled(), handle.shared_filesystem).apply(lambda v: check(*v))


@pulumi.runtime.test
def test_filestore_problems_are_reported_together_with_property_paths():
    with pytest.raises(specs.SpecError) as raised:
        variant(zones=[], storage={"sharedFilesystem": {"capacityGib": 1200}})
    message = str(raised.value)
    assert "zones: required with storage.sharedFilesystem" in message, message
    assert "storage.sharedFilesystem.capacityGib: 1200 GiB is not a Filestore zonal size" in message, message


def test_missing_sdk_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "park.components.clouds.gcp")
    monkeypatch.setitem(sys.modules, "pulumi_gcp", None)  # what an environment without the extra looks like
    with pytest.raises(ModuleNotFoundError, match=r"install park-stack\[gcp\] to use the gcp cloud"):
        load_adapter("gcp")


def test_unknown_cloud_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown cloud 'azure'; known: aws, gcp, kind"):
        load_adapter("azure")


@pulumi.runtime.test
def test_a_cluster_name_too_short_for_a_service_account_is_a_config_error():
    with pytest.raises(specs.SpecError, match=r"clusterName: 'a' is too short to name the Google service account"):
        variant(clusterName="a")


@pytest.mark.parametrize(
    "zones, min_nodes, per_zone",
    [(["us-central1-a", "us-central1-c"], 5, 3), ([], 5, 2), (["us-central1-a"], 0, 0)],
)
def test_first_nodes_per_zone_reach_the_pool_minimum(zones, min_nodes, per_zone):
    spec = variant(
        zones=zones,
        nodePools=[
            {"name": "system", "role": "system", "minNodes": min_nodes or 1, "maxNodes": 8},
            {"name": "cpu", "minNodes": min_nodes, "maxNodes": 8},
        ],
        teams=[{"name": "research"}],
        models=[],
    )
    assert adapter.initial_nodes_per_zone(spec, spec.pool("cpu")) == per_zone
