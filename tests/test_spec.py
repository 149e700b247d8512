"""StackSpec: the shipped stacks parse, and every kind of bad config is reported with its exact path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from park.components import catalog, spec as spec_module
from park.components.spec import SpecError, config_from_stack_file, load_stack_file, parse_spec

STACKS = Path(__file__).resolve().parents[1] / "stacks"
SHIPPED = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS.glob("Pulumi.*.yaml"))


def base(cloud: str = "kind") -> dict:
    return config_from_stack_file(STACKS / f"Pulumi.{cloud}.yaml")


def problems_of(config: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(config)
    found: dict[str, str] = {}
    for problem in caught.value.problems:
        found[problem.path] = " | ".join(filter(None, [found.get(problem.path), problem.reason]))
    return found


@pytest.mark.parametrize("stack", SHIPPED)
def test_shipped_stack_is_valid(stack):
    spec = load_stack_file(STACKS / f"Pulumi.{stack}.yaml")
    assert spec.cloud == stack
    assert any(p.role == "system" for p in spec.node_pools)


def test_shipped_stacks_cover_every_cloud():
    assert set(SHIPPED) >= {"aws", "gcp", "kind"}


def test_aws_stack_pools_match_the_catalog():
    spec = load_stack_file(STACKS / "Pulumi.aws.yaml")
    h100 = spec.pool("h100-spot")
    assert spec.instance_type(h100) == "p5.48xlarge"
    assert spec.gpus_per_node(h100) == 8 and h100.spot
    l4 = spec.pool("l4-shared")
    assert spec.gpu_slots_per_node(l4) == spec.gpus_per_node(l4) * l4.gpu_sharing.replicas
    assert spec.node_taints(l4) == [spec_module.GPU_TAINT]
    assert spec.node_taints(spec.pool("system")) == []


def test_derived_facts_of_the_kind_stack():
    spec = load_stack_file(STACKS / "Pulumi.kind.yaml")
    assert not spec.has_gpus
    assert spec.storage_uri == "file:///mnt/park-storage"
    assert spec.context_name == "kind-park-kind"
    assert all(spec.model_gpus(m) == 0 for m in spec.models)
    assert spec.node_labels(spec.pool("cpu"))[spec_module.POOL_LABEL] == "cpu"


def _set(config: dict, path: str, value) -> dict:
    """Copy of config with the value at a dotted path (`nodePools.1.spot`) replaced or deleted."""
    config = copy.deepcopy(config)
    *parents, last = path.split(".")
    node = config
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key = int(last) if last.isdigit() else last
    if value is _DELETE:
        del node[key]
    else:
        node[key] = value
    return config


class _Deleted:
    """Marks a key the case removes; its repr is stable, so test ids are the same in every process
    (pytest-xdist requires that)."""

    def __repr__(self) -> str:
        return "<deleted>"


_DELETE = _Deleted()

# (cloud of the base config, edit path, new value, expected problem path, words the reason must contain)
INVALID = [
    ("kind", "cloud", "azure", "cloud", "'aws', 'gcp' or 'kind'"),
    ("kind", "clusterName", "Park_Kind", "clusterName", "pattern"),
    ("kind", "nodePools.1.acelerator", "nvidia-l4", "nodePools[1].acelerator", "did you mean 'accelerator'"),
    ("kind", "nodePools.1.spot", True, "nodePools[1].spot", "no spot"),
    ("kind", "nodePools.1.accelerator", "nvidia-l4", "nodePools[1].accelerator", "no GPUs"),
    ("kind", "nodePools.1.gpuSharing", {"replicas": 4}, "nodePools[1].gpuSharing", "CPU pool"),
    ("kind", "nodePools.1.name", "system", "nodePools[1].name", "duplicate pool"),
    ("kind", "nodePools.1.minNodes", 5, "nodePools[1].minNodes", "above maxNodes"),
    ("kind", "nodePools.1.maxNodes", "two", "nodePools[1].maxNodes", "integer"),
    ("kind", "teams.1.name", "research", "teams[1].name", "duplicate team"),
    ("kind", "teams.1.namespace", "research", "teams[1].namespace", "used by another team"),
    ("kind", "teams.0.name", "kube-system", "teams[0].name", "reserved"),
    ("kind", "teams.0.quotas.0.pool", "gpu", "teams[0].quotas[0].pool", "unknown pool 'gpu'"),
    ("kind", "teams.0.quotas.0.memory", "lots", "teams[0].quotas[0].memory", "quantity"),
    ("kind", "teams.0.defaultPriority", "urgent", "teams[0].defaultPriority", "unknown priority class"),
    ("kind", "kubernetesVersion", "1.24", "kubernetesVersion", "outside"),
    ("kind", "kubernetesVersion", 1.33, "kubernetesVersion", "string"),
    ("kind", "models.0.gpuFraction", 0.5, "models[0].gpuFraction", "fits no pool"),
    ("kind", "models.0.minReplicas", 3, "models[0].minReplicas", "above maxReplicas"),
    ("kind", "observability", {"prometheus": False}, "observability.grafana", "needs observability.prometheus"),
    ("kind", "storage.sharedFilesystem", {"capacityGib": 1200}, "storage.sharedFilesystem", "not on kind"),
    ("aws", "nodePools.1.accelerator", "nvidia-h100x", "nodePools[1].accelerator", "did you mean 'nvidia-h100'"),
    ("aws", "nodePools.1.gpusPerNode", 3, "nodePools[1].gpusPerNode", "comes with 8 GPUs per node"),
    ("aws", "nodePools.2.instanceType", "p5.48xlarge", "nodePools[2].instanceType", "does not carry nvidia-l4"),
    ("aws", "teams.0.quotas.1.gpus", 64, "teams[0].quotas[1].gpus", "above what pool 'h100-spot' can supply"),
    ("aws", "teams.1.quotas.1.gpus", 12, "teams",
     "GPU quotas on pool 'l4-shared' add up to 20 (research 8, serving 12), above the 16 it can supply"),
    # issue 11: CPU and memory quotas are summed across teams too (each alone fits the system pool's 3 x 8 vCPUs)
    ("aws", "teams.1.quotas.0.cpu", 24, "teams",
     "CPU quotas on pool 'system' add up to 28 (research 4, serving 24), above the 24 it can supply (3 nodes x 8"),
    ("aws", "teams.1.quotas.0.memory", "96Gi", "teams",
     "memory quotas on pool 'system' add up to 112Gi (research 16Gi, serving 96Gi), above the 96Gi it can supply"),
    # issue 11: a CPU pool's instanceType is a catalog shape of the cloud, so its supply is always known
    ("aws", "nodePools.0.instanceType", "m6i.2xlarg", "nodePools[0].instanceType", "did you mean 'm6i.2xlarge'?"),
    ("gcp", "nodePools.0.instanceType", "m6i.2xlarge", "nodePools[0].instanceType", "a node shape of aws, not of gcp"),
    ("aws", "nodePools.0.instanceType", "g6.xlarge", "nodePools[0].instanceType",
     "carries nvidia-l4: set accelerator: nvidia-l4"),
    # issue 11: gpuFraction 0 is CPU serving, which needs a CPU workers pool (the aws stack has only GPU workers)
    ("aws", "models.0.gpuFraction", 0, "models[0].gpuFraction", "0 serves the model on CPU, but the stack has no CPU"),
    ("aws", "zones", ["us-west-2a"], "zones", "at least two"),
    ("aws", "zones.1", "eu-west-1b", "zones[1]", "not a zone of region"),
    ("aws", "region", _DELETE, "region", "required on aws"),
    ("aws", "security", {"allowedCidrs": ["203.0.113.0/33"]}, "security.allowedCidrs[0]", "not a CIDR"),
    ("aws", "security", {"allowedCidrs": ["203.0.113.0/24"]}, "security.allowedCidrs[0]", "reserved for documentation"),
    ("gcp", "security", {"privateEndpoint": False, "allowedCidrs": ["10.0.0.0/8", "192.0.2.7/32"]},
     "security.allowedCidrs[1]", "reserved for documentation"),
    ("aws", "nodePools.0.accelerator", "nvidia-l4", "nodePools[0].accelerator", "system pool"),
    ("aws", "models.0.gpuFraction", 1.5, "models[0].gpuFraction", "whole GPUs"),
    ("aws", "models.0.gpuFraction", 0.5, "models[0].gpuFraction",
     "0.5 GPU per replica oversubscribes time-sliced pool 'l4-shared': nodePools[2].gpuSharing.replicas is 4"),
    ("aws", "models.0.gpuFraction", _DELETE, "models[0].gpuFraction", "1 GPU per replica (the default) oversub"),
    ("aws", "nodePools.2.gpuSharing.replicas", 8, "models[0].gpuFraction",
     "lower nodePools[2].gpuSharing.replicas to 4"),
    ("gcp", "nodePools.2.accelerator", "nvidia-a10g", "nodePools[2].accelerator", "not offered on gcp"),
    ("gcp", "project", _DELETE, "project", "required on gcp"),
    ("gcp", "priorityClasses", [{"name": "high", "value": 1}, {"name": "high", "value": 2}],
     "priorityClasses[1].name", "duplicate priority class"),
]


@pytest.mark.parametrize(("cloud", "edit", "value", "path", "words"), INVALID,
                         ids=[f"{c}:{e}={v!r}"[:60] for c, e, v, *_ in INVALID])
def test_invalid_config_names_the_property_path(cloud, edit, value, path, words):
    problems = problems_of(_set(base(cloud), edit, value))
    assert path in problems, f"expected a problem at {path!r}, got {problems}"
    assert words in problems[path], f"{path}: {problems[path]!r} does not mention {words!r}"


def test_model_larger_than_every_node_fits_no_pool():
    config = _set(base("gcp"), "nodePools.1.gpusPerNode", 1)
    config = _set(config, "models.0.gpuFraction", 2)
    assert "the largest has 1 per node" in problems_of(config)["models[0].gpuFraction"]


def test_whole_gpu_model_on_a_time_sliced_pool_is_told_to_drop_the_sharing():
    config = _set(base("gcp"), "nodePools.2.gpuSharing", {"replicas": 2})
    reason = problems_of(config)["models[0].gpuFraction"]
    assert reason.endswith("set gpuFraction to 0.5 or less, or remove nodePools[2].gpuSharing"), reason


def test_a_fraction_that_fits_one_slice_is_valid():
    spec = parse_spec(_set(base("aws"), "models.0.gpuFraction", 0.125))
    assert spec.models[0].gpu_fraction == 0.125


def test_every_problem_is_reported_at_once():
    config = _set(base("kind"), "nodePools.1.spot", True)
    config = _set(config, "teams.0.quotas.0.pool", "nope")
    config = _set(config, "kubernetesVersion", "1.99")
    assert {"nodePools[1].spot", "teams[0].quotas[0].pool", "kubernetesVersion"} <= set(problems_of(config))


def test_structural_problems_are_all_reported_at_once():
    config = _set(base("kind"), "cloud", "mars")
    config = _set(config, "nodePools.0.diskGib", 1)
    config = _set(config, "teams.0.quotas.0.gpus", -1)
    assert {"cloud", "nodePools[0].diskGib", "teams[0].quotas[0].gpus"} <= set(problems_of(config))


def test_error_text_is_one_path_reason_line_per_problem():
    """Issue 11: a list position alone (`nodePools[1]`) made the reader count; each line names the items too,
    after the exact path `pulumi config set --path` takes."""
    config = _set(_set(base("kind"), "nodePools.1.spot", True), "teams.0.defaultPriority", "x")
    with pytest.raises(SpecError) as caught:
        parse_spec(config)
    assert str(caught.value).splitlines() == [
        "nodePools[1].spot (pool cpu): kind has no spot capacity",
        "teams[0].defaultPriority (team research): unknown priority class 'x'; known: high, normal, low",
    ]
    assert [p.path for p in caught.value.problems] == ["nodePools[1].spot", "teams[0].defaultPriority"]


def test_a_nested_path_names_every_item_it_passes_and_not_the_name_it_is_about():
    quota = problems_named(_set(base("aws"), "teams.0.quotas.1.cpu", 4000))
    assert quota["teams[0].quotas[1].cpu"] == "team research, pool h100-spot"
    duplicate = problems_named(_set(base("kind"), "teams.1.name", "research"))
    assert duplicate["teams[1].name"] == ""  # the reason names it: "duplicate team name 'research'"
    unknown_pool = problems_named(_set(base("kind"), "teams.0.quotas.0.pool", "gpu"))
    assert unknown_pool["teams[0].quotas[0].pool"] == "team research"
    structural = problems_named(_set(base("aws"), "nodePools.1.maxNodes", "two"))
    assert structural["nodePools[1].maxNodes"] == "pool h100-spot"  # names come from the config as given


def problems_named(config: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(config)
    return {p.path: p.names for p in caught.value.problems}


def test_a_typod_cpu_instance_type_no_longer_hides_a_quota_no_pool_can_supply():
    """Issue 11: an unknown CPU shape skipped the CPU/memory supply check, so a 4,000-CPU quota passed."""
    config = _set(_set(base("aws"), "nodePools.0.instanceType", "m6i.2xlarg"), "teams.0.quotas.0.cpu", 4000)
    assert "did you mean 'm6i.2xlarge'?" in problems_of(config)["nodePools[0].instanceType"]
    fixed = _set(config, "nodePools.0.instanceType", "m6i.2xlarge")
    assert problems_of(fixed)["teams[0].quotas[0].cpu"].startswith("4000 CPUs is above what pool 'system'")


def test_every_default_cpu_shape_is_a_catalog_cpu_shape_of_its_cloud():
    for cloud in ("aws", "gcp"):
        assert catalog.cpu_instance_problem(cloud, catalog.DEFAULT_CPU_INSTANCE[cloud]) is None
        assert catalog.cpu_instance_types(cloud)
    # N1 machines take a T4 as a guest accelerator, or none: only they are CPU and GPU shapes at once
    gpu_shapes = {o.instance_type for o in catalog.OFFERINGS if not o.instance_type.startswith("n1-")}
    assert not gpu_shapes & set(catalog.CPU_SHAPES), "a GPU shape listed as a CPU shape"


def test_gpu_fraction_zero_serves_on_a_cpu_workers_pool():
    """0 is CPU serving: valid where a CPU workers pool exists (kind; an aws stack given one), and the serving
    plan then puts the server there, not on a GPU node."""
    from park.workloads.serve.manifest import serving_pool

    kind = parse_spec(_set(base("kind"), "models.0.gpuFraction", 0))
    assert serving_pool(kind).name == "cpu"
    config = _set(base("aws"), "models.0.gpuFraction", 0)
    config["nodePools"].append({"name": "cpu-workers", "instanceType": "m6i.4xlarge", "maxNodes": 2})
    spec = parse_spec(config)
    assert serving_pool(spec).name == "cpu-workers" and not serving_pool(spec).has_gpus


@pytest.mark.parametrize(("cloud", "bucket", "words"), [
    ("aws", "xn--park-data", "starts with 'xn--', a prefix S3 reserves"),
    ("aws", "park-data-s3alias", "ends with '-s3alias', a suffix S3 reserves"),
    ("aws", "park..data", "two adjacent periods"),
    ("gcp", "192.168.5.4", "formatted as an IP address"),
    ("gcp", "goog-park-data", "starts with 'goog'"),
    ("gcp", "park-google-data", "contains 'google'"),
])
def test_bucket_names_follow_the_clouds_rules(cloud, bucket, words):
    """S3 "General purpose bucket naming rules" and GCS "Bucket names" (cited in clouds/checks.py); each rule is
    one the `storage.bucket` pattern alone lets through."""
    config = {**base(cloud), "storage": {"bucket": bucket}, "models": []}
    assert words in problems_of(config)["storage.bucket"]
    assert parse_spec({**config, "storage": {"bucket": "my-org-park-data"}}).bucket_name == "my-org-park-data"


def test_catalog_never_guesses():
    with pytest.raises(catalog.CatalogError, match="unknown accelerator"):
        catalog.find_offering("nvidia-b200", "aws")
    with pytest.raises(catalog.CatalogError, match="not offered on kind"):
        catalog.find_offering("nvidia-l4", "kind")
    assert catalog.find_offering("nvidia-l4", "gcp").node_label == ("cloud.google.com/gke-accelerator", "nvidia-l4")
    for accelerator in catalog.ACCELERATORS:
        assert catalog.clouds_offering(accelerator), f"{accelerator} is offered nowhere"
    for offering in catalog.OFFERINGS:
        assert 0 < offering.spot_usd_per_hour < offering.on_demand_usd_per_hour, offering


# --- property-based: any config yields a valid spec or a clean SpecError ------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True),
                     st.text(max_size=12), st.sampled_from(["aws", "gcp", "kind", "1.33", "nvidia-l4", "cpu",
                                                             "system", "us-west-2", "64Gi", "research"]))
_values = st.recursive(_scalars, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(st.text(max_size=10), children, max_size=3)), max_leaves=8)


@st.composite
def mutated_configs(draw):
    """Shipped configs with random keys replaced, removed or added at random depths."""
    config = copy.deepcopy(base(draw(st.sampled_from(["aws", "gcp", "kind"]))))
    for _ in range(draw(st.integers(1, 4))):
        node = config
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, (dict, list)) and child and draw(st.booleans()):
                node = child
                continue
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                node[key] = draw(_values)
            elif action == "delete":
                del node[key]
            elif isinstance(node, dict):
                node[draw(st.text(max_size=8))] = draw(_values)
            else:
                node.append(draw(_values))
            break
    return config


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_random_config_gives_a_spec_or_a_clean_error(config):
    try:
        spec = parse_spec(config)
    except SpecError as err:
        assert err.problems, "a SpecError must carry at least one problem"
        for problem in err.problems:
            assert problem.reason and "Traceback" not in problem.reason
    else:
        # a config that passes is usable by everything downstream
        for pool in spec.node_pools:
            spec.instance_type(pool), spec.gpu_slots_per_node(pool), spec.node_taints(pool)
        assert spec.storage_uri


@settings(max_examples=200, deadline=None)
@given(_values)
def test_arbitrary_yaml_value_never_crashes(value):
    try:
        parse_spec(value)
    except SpecError as err:
        assert err.problems


def test_stack_file_that_is_not_yaml_is_a_clean_error(tmp_path):
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: [unclosed\n")
    with pytest.raises(SpecError, match="cannot read"):
        load_stack_file(bad)
    bad.write_text(yaml.safe_dump({"config": {"park:cloud": "kind"}}))
    with pytest.raises(SpecError) as caught:
        load_stack_file(bad)
    assert {"clusterName", "nodePools", "teams"} <= {p.path for p in caught.value.problems}


def test_stack_config_reference_is_up_to_date():
    from park.components.reference import config_reference

    documented = (STACKS.parent / "docs" / "stack-config.md").read_text()
    assert documented == config_reference(), (
        "docs/stack-config.md is stale: run `python -m park.components.reference > docs/stack-config.md`")
