"""`park cost`: the arithmetic against hand-computed totals, the provenance of every catalog price, the fees
the cloud adapters really create, and the CLI (table, --json, exit codes)."""

from __future__ import annotations

import datetime
import json

import pulumi
import pytest
from park.components import catalog, cost
from park.components.spec import config_from_stack_file, load_stack_file, parse_spec, resolve_stack_file
from pulumi_mocks import DeclaredList, Harness, install
from schemas import provisionable
from typer.testing import CliRunner

from park.cli import app

SPECS = {name: load_stack_file(resolve_stack_file(name)) for name in ("aws", "gcp", "kind")}
RUNNER = CliRunner()
TEST_ALLOWED_CIDR = "198.18.0.1/32"  # RFC 2544 benchmarking range: not a documentation range


def provisionable_variant(stack: str):
    """The shipped stack with what a team sets before `pulumi up` (allowedCidrs, bucket, project)."""
    return parse_spec(provisionable(config_from_stack_file(resolve_stack_file(stack))))


def spec_of(cloud: str, pools: list[dict], region: str = "us-west-2", **extra):
    base = {
        "cloud": cloud, "clusterName": "small", "region": region,
        "zones": [f"{region}a", f"{region}b"] if cloud == "aws" else [f"{region}-a", f"{region}-c"],
        "security": {"allowedCidrs": [TEST_ALLOWED_CIDR]},
        "nodePools": pools, "teams": [{"name": "research"}],
    }
    if cloud == "gcp":
        base["project"] = "demo-project"
    return parse_spec({**base, **extra})


SMALL_AWS = spec_of("aws", [
    {"name": "system", "role": "system", "instanceType": "m6i.2xlarge", "minNodes": 1, "maxNodes": 2},
    {"name": "l4", "accelerator": "nvidia-l4", "gpusPerNode": 1, "spot": True, "minNodes": 0, "maxNodes": 3},
])


# --- arithmetic -----------------------------------------------------------------------------------


def test_small_aws_stack_adds_up_to_the_hand_computed_totals():
    """us-west-2: m6i.2xlarge $0.384, g6.xlarge $0.8048 on-demand / $0.4347 spot; EKS $0.10, one NAT gateway
    $0.045, its Elastic IP $0.005 (0.15 of fees)."""
    c = cost.stack_cost(SMALL_AWS)
    system, l4 = c.pools
    assert (system.idle_usd_per_hour, system.full_usd_per_hour) == pytest.approx((0.384, 0.768))
    assert (l4.idle_usd_per_hour, l4.full_usd_per_hour) == pytest.approx((0.0, 3 * 0.4347)), "spot pool not at spot"
    assert l4.full_on_demand_usd_per_hour == pytest.approx(3 * 0.8048), "on-demand alternative wrong"
    assert [f.name for f in c.fees] == ["EKS control plane", "NAT gateway", "public IPv4 (NAT's Elastic IP)"]
    assert c.idle_usd_per_hour == pytest.approx(0.384 + 0.15)
    assert c.full_usd_per_hour == pytest.approx(0.768 + 1.3041 + 0.15)
    assert c.full_on_demand_usd_per_hour == pytest.approx(0.768 + 2.4144 + 0.15)
    assert c.monthly(c.idle_usd_per_hour) == pytest.approx(0.534 * 730)
    assert c.complete


def test_cloud_nat_is_priced_per_vm_and_capped_at_32():
    """Cloud NAT pricing (cloud.google.com/nat/pricing): $0.0014 per VM-hour up to 32 VMs, $0.044 above."""
    spec = spec_of("gcp", [{"name": "system", "role": "system", "instanceType": "e2-standard-8",
                            "minNodes": 2, "maxNodes": 40}], region="us-central1")
    c = cost.stack_cost(spec)
    nat = next(f for f in c.fees if f.name == "Cloud NAT gateway")
    assert nat.idle_usd_per_hour == pytest.approx(2 * 0.0014)
    assert nat.full_usd_per_hour == pytest.approx(0.044), "not capped above 32 VMs"
    assert c.idle_usd_per_hour == pytest.approx(2 * 0.26804568 + 0.10 + 2 * 0.0014 + 0.005)
    assert c.full_usd_per_hour == pytest.approx(40 * 0.26804568 + 0.10 + 0.044 + 0.005)


def test_gke_regional_pool_notes_the_nodes_created_per_zone():
    """The gcp adapter sizes a regional pool per zone at creation (ceil(min / zones) each)."""
    spec = spec_of("gcp", [{"name": "system", "role": "system", "instanceType": "e2-standard-8",
                            "minNodes": 1, "maxNodes": 3}], region="us-central1")
    assert any("GKE creates 2 nodes" in n for n in cost.stack_cost(spec).pools[0].notes)


def test_a_pool_without_a_price_is_unknown_and_totals_are_lower_bounds(tmp_path):
    spec = spec_of("aws", [{"name": "system", "role": "system", "instanceType": "m7i.2xlarge", "minNodes": 1}])
    c = cost.stack_cost(spec)
    assert c.pools[0].price is None and c.pools[0].idle_usd_per_hour is None
    assert not c.complete and c.unknown_pools == ["system"]
    assert c.idle_usd_per_hour == pytest.approx(0.15), "an unknown pool must add nothing, not fail"
    path = tmp_path / "Pulumi.unpriced.yaml"
    path.write_text(spec_file_text(spec_dict(instance="m7i.2xlarge")))
    result = RUNNER.invoke(app, ["cost", str(path)])
    assert result.exit_code == 0, result.output
    assert "Total, at least" in result.stdout and "unknown" in result.stdout
    assert "totals are lower bounds" in result.stdout


def test_a_region_without_its_own_price_falls_back_to_the_reference_region_and_says_so():
    spec = spec_of("aws", [{"name": "system", "role": "system", "instanceType": "m6i.2xlarge", "minNodes": 1}],
                   region="eu-west-1")
    pool = cost.stack_cost(spec).pools[0]
    assert pool.price.region == "us-east-1"
    assert "price for us-east-1; the catalog has none for eu-west-1" in pool.notes


def test_kind_costs_nothing_and_says_why():
    c = cost.stack_cost(SPECS["kind"])
    assert c.fees == () and c.idle_usd_per_hour == 0 == c.full_usd_per_hour and c.complete
    assert "kind runs on this machine: no cloud bill" in c.notes


def test_shipped_aws_stack_idles_near_the_issues_1_7_dollars_an_hour():
    """Issue 11 measured "roughly $1.7/h" idle: 2 x m6i.2xlarge (0.768) + 1 x g6.xlarge (0.8048) + EKS (0.10)
    + one NAT gateway (0.045) = 1.7178. `park cost` also counts the NAT's Elastic IP ($0.005/h, AWS charges
    every public IPv4 address), hence 1.7228; the H100 spot pool idles at zero nodes."""
    c = cost.stack_cost(SPECS["aws"])
    assert c.idle_usd_per_hour == pytest.approx(1.7228)
    assert abs(c.idle_usd_per_hour - 1.7) < 0.05
    assert c.full_usd_per_hour == pytest.approx(3 * 0.384 + 2 * 21.6229 + 4 * 0.8048 + 0.15)


# --- provenance --------------------------------------------------------------------------------------


def _is_date(text: str) -> bool:
    datetime.date.fromisoformat(text)
    return True


ALL_SOURCES = (
    [(f"{p.cloud} {p.instance_type} {p.region} on-demand", p.on_demand.source) for p in catalog.NODE_PRICES]
    + [(f"{p.cloud} {p.instance_type} {p.region} spot", p.spot.source) for p in catalog.NODE_PRICES if p.spot]
    + [(f"fee {key}", fee.source) for key, fee in catalog.FEES.items()]
)


@pytest.mark.parametrize("what,source", ALL_SOURCES, ids=[w for w, _ in ALL_SOURCES])
def test_every_price_has_a_source_or_says_it_is_unsourced_and_a_date(what, source):
    assert _is_date(source.checked), f"{what}: {source.checked!r} is not a date"
    if source.sourced:
        assert source.url.startswith("https://"), f"{what}: {source.url!r}"
        assert source.published is None or _is_date(source.published)
    else:
        assert source.title.startswith("unsourced:"), f"{what}: no url and no 'unsourced' marker"


def test_every_offering_and_default_cpu_shape_is_priced_in_its_reference_region():
    for offering in catalog.OFFERINGS:
        assert offering.price.region == catalog.REFERENCE_REGION[offering.cloud], offering
    for cloud in ("aws", "gcp"):
        assert catalog.node_price(cloud, catalog.DEFAULT_CPU_INSTANCE[cloud], None) is not None, cloud


def test_cost_output_names_every_source_with_its_date_and_marks_unsourced_prices():
    spec = spec_of("aws", [{"name": "system", "role": "system", "instanceType": "m6i.2xlarge", "minNodes": 1},
                           {"name": "t4", "accelerator": "nvidia-t4", "gpusPerNode": 1}])
    c = cost.stack_cost(spec)
    text = _render(c)
    for source in c.sources:
        assert source.checked in text and (source.url or "unsourced:") in text, source.title
    assert catalog.UNSOURCED in c.sources, "g4dn.xlarge is priced from memory; the output must say so"
    assert "[U] unsourced: written from memory" in text


# --- what the cost model assumes about the adapters --------------------------------------------------------


@pulumi.runtime.test
def test_aws_adapter_creates_the_nat_gateways_and_addresses_the_cost_counts():
    from park.components.clouds import aws as adapter

    harness = Harness(install(stack="aws"))
    adapter.ADAPTER.provision("park-aws", provisionable_variant("aws"), harness.parent)

    def check(declared: DeclaredList):
        assert len(declared.of_type("aws:ec2/natGateway:NatGateway")) == cost.NAT_GATEWAYS["aws"]
        assert len(declared.of_type("aws:ec2/eip:Eip")) == cost.NAT_ADDRESSES["aws"]
        assert len(declared.of_type("aws:eks/cluster:Cluster")) == 1

    return harness.settled().apply(check)


@pulumi.runtime.test
def test_gcp_adapter_creates_one_regional_cluster_and_one_cloud_nat():
    """Regional, so the GKE free tier (zonal and Autopilot clusters only) does not cover the fee."""
    from park.components.clouds import gcp as adapter

    spec = provisionable_variant("gcp")
    harness = Harness(install(stack="gcp"))
    adapter.ADAPTER.provision("park-gcp", spec, harness.parent)

    def check(declared: DeclaredList):
        assert len(declared.of_type("gcp:compute/routerNat:RouterNat")) == 1
        assert declared.one("gcp:container/cluster:Cluster").inputs["location"] == spec.region

    return harness.settled().apply(check)


# --- scale-up cost for conformance -------------------------------------------------------------------------


def test_scale_up_cost_prices_added_nodes_at_what_the_pool_pays():
    spec = SPECS["aws"]
    one = cost.scale_up_cost(spec, ["h100-spot"])
    assert one.usd_per_hour == pytest.approx(21.6229), "a spot pool adds nodes at the spot price"
    both = cost.scale_up_cost(spec, {"h100-spot": 1, "l4-shared": 2})
    assert both.usd_per_hour == pytest.approx(21.6229 + 2 * 0.8048) and both.complete
    assert "h100-spot: +1 x p5.48xlarge (spot, $21.62/h each)" in both.summary()
    assert "total: $23.23/h" in both.summary()
    assert cost.scale_up_cost(spec, []).summary() == "no pool scales up: no added node cost"
    with pytest.raises(ValueError, match="no pool 'gpu'"):
        cost.scale_up_cost(spec, ["gpu"])


# --- the CLI ------------------------------------------------------------------------------------------------


def spec_dict(instance: str = "m6i.2xlarge") -> dict:
    return {"config": {
        "park:cloud": "aws", "park:clusterName": "small", "park:region": "us-west-2",
        "park:zones": ["us-west-2a", "us-west-2b"], "park:security": {"allowedCidrs": [TEST_ALLOWED_CIDR]},
        "park:nodePools": [{"name": "system", "role": "system", "instanceType": instance, "minNodes": 1}],
        "park:teams": [{"name": "research"}],
    }}


def spec_file_text(document: dict) -> str:
    return json.dumps(document)  # JSON is YAML


def _render(c: cost.StackCost) -> str:
    import io

    out = io.StringIO()
    cost.render_text(c, out)
    return out.getvalue()


def test_cli_prints_the_table_with_totals_and_sources():
    result = RUNNER.invoke(app, ["cost", "aws"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "park-aws (aws, us-west-2): list prices in USD"
    total = next(line for line in lines if line.strip().startswith("Total "))
    assert total.split()[1:] == ["1.7228", "1,258", "47.7670", "34,870"]
    assert "Sources:" in lines and all(line == line.rstrip() for line in lines), "trailing blanks in plain output"


def test_cli_json_round_trips_to_the_same_figures():
    result = RUNNER.invoke(app, ["cost", "aws", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads(json.dumps(cost.stack_cost(SPECS["aws"]).to_dict()))
    assert data["total"]["idle"]["usd_per_hour"] == pytest.approx(1.7228)
    assert data["total"]["idle"]["usd_per_month"] == pytest.approx(1.7228 * 730)
    h100 = next(p for p in data["pools"] if p["name"] == "h100-spot")
    assert h100["capacity"] == "spot" and h100["onDemandNodeUsdPerHour"] == 55.04
    assert {data["sources"][i]["url"] for i in h100["sources"]} == {catalog.SKYPILOT_AWS.url}


def test_cli_bad_stack_exits_2_with_one_line_per_problem(tmp_path):
    document = spec_dict()
    document["config"]["park:nodePools"][0]["minNodes"] = 0
    document["config"]["park:teams"] = [{"name": "default"}]
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(spec_file_text(document))
    result = RUNNER.invoke(app, ["cost", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    problems = result.stderr.splitlines()
    assert len(problems) == 2, problems
    assert "a system pool needs at least one node" in problems[0] and "minNodes" in problems[0]
    assert "reserved for the platform" in problems[1]
    rendered = RUNNER.invoke(app, ["render", str(path)])
    assert (rendered.exit_code, rendered.stderr) == (2, result.stderr), "park cost must report as park render does"


def test_cli_unknown_stack_exits_2_and_says_where_it_looked():
    result = RUNNER.invoke(app, ["cost", "no-such-stack"])
    assert result.exit_code == 2, result.output
    assert "no stack 'no-such-stack'" in result.stderr and "Traceback" not in result.output


def test_readme_shows_what_park_cost_aws_prints():
    """The README's Cost section is the command's real output; a price or format change must update it."""
    readme = (resolve_stack_file("aws").parent.parent / "README.md").read_text()
    start = readme.index("$ .venv/bin/park cost aws\n") + len("$ .venv/bin/park cost aws\n")
    shown = readme[start:readme.index("\n```", start)] + "\n"
    result = RUNNER.invoke(app, ["cost", "aws"])
    assert result.exit_code == 0, result.output
    assert shown == result.stdout, "README's `park cost aws` output is stale; paste the command's output"


def test_terminal_output_is_never_truncated_on_a_narrow_terminal():
    """Rich clips no_wrap cells to the terminal width ('m6…'); `park cost` widens to the table instead."""
    import io

    out = io.StringIO()
    cost.render_text(cost.stack_cost(SPECS["aws"]), out, terminal=True)  # StringIO: rich assumes 80 columns
    text = out.getvalue()
    assert "…" not in text and "p5.48xlarge" in text and "114.6012" in text
