"""What a stack costs, per hour and per month, idle and at full scale, from the catalog's list prices.

Pure functions of a :class:`~park.components.spec.StackSpec`: no Pulumi, no cloud calls. What is counted:

- every node pool: nodes x the node price, idle at ``minNodes`` and at full scale at ``maxNodes``. A spot pool
  pays the spot price (indicative: spot prices move); its on-demand price is shown as the alternative;
- the fixed fees the cloud adapters create: on aws the EKS control plane, the one NAT gateway
  ``components/clouds/aws.py`` declares (in the first zone, not one per zone) and its Elastic IP; on gcp the
  GKE management fee (the cluster is regional, so the free tier does not apply) and Cloud NAT (priced per
  VM behind it, plus its external IP).

Not counted (usage-dependent, or not priced in the catalog): node root disks, data through NAT, egress,
bucket storage, control-plane logs, shared filesystems, load balancers. A pool whose instance type has no
price is shown as unknown and every total becomes a lower bound ("at least"). kind costs nothing: it runs
on this machine.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from park.components import catalog
from park.components.catalog import HOURS_PER_MONTH, Fee, NodePrice, PriceSource
from park.components.spec import INVALID_CONFIG_EXIT, NodePool, StackSpec, load_stack_for_command

NAT_GATEWAYS = {"aws": 1}
"""NAT gateways the aws adapter declares: one, in the first zone (``AwsAdapter.network``)."""
NAT_ADDRESSES = {"aws": 1, "gcp": 1}
"""Public IPv4 addresses the NAT holds: the aws Elastic IP; on gcp Cloud NAT allocates (AUTO_ONLY) at least
one, more only when the nodes run out of ports."""
NOT_COUNTED = ("node root disks (EBS / persistent disk)", "data through NAT ($0.045 per GB)", "egress",
               "bucket storage", "control-plane logs", "shared filesystems", "load balancers")


@dataclass(frozen=True)
class PoolCost:
    """One node pool: its node price, and its cost idle (``minNodes``) and at full scale (``maxNodes``)."""

    name: str
    instance_type: str
    spot: bool
    min_nodes: int
    max_nodes: int
    price: NodePrice | None
    """None: the catalog has no price for the instance type (or kind, where ``free``)."""
    free: bool = False
    notes: tuple[str, ...] = ()

    @property
    def capacity(self) -> str:
        return "spot" if self.spot else "on-demand"

    @property
    def node_usd_per_hour(self) -> float | None:
        """What one node of this pool is billed: the spot price for a spot pool, else on-demand."""
        if self.free:
            return 0.0
        if self.price is None:
            return None
        if self.spot:
            return self.price.spot.usd_per_hour if self.price.spot else None
        return self.price.on_demand.usd_per_hour

    @property
    def on_demand_node_usd_per_hour(self) -> float | None:
        if self.free:
            return 0.0
        return None if self.price is None else self.price.on_demand.usd_per_hour

    @property
    def known(self) -> bool:
        return self.node_usd_per_hour is not None

    def _times(self, per_node: float | None, nodes: int) -> float | None:
        return None if per_node is None else per_node * nodes

    @property
    def idle_usd_per_hour(self) -> float | None:
        return self._times(self.node_usd_per_hour, self.min_nodes)

    @property
    def full_usd_per_hour(self) -> float | None:
        return self._times(self.node_usd_per_hour, self.max_nodes)

    @property
    def idle_on_demand_usd_per_hour(self) -> float | None:
        return self._times(self.on_demand_node_usd_per_hour, self.min_nodes)

    @property
    def full_on_demand_usd_per_hour(self) -> float | None:
        return self._times(self.on_demand_node_usd_per_hour, self.max_nodes)

    @property
    def sources(self) -> list[PriceSource]:
        if self.price is None:
            return []
        quotes = [self.price.spot if self.spot else self.price.on_demand]
        if self.spot:
            quotes.append(self.price.on_demand)
        return [q.source for q in quotes if q is not None]


@dataclass(frozen=True)
class FeeCost:
    """A fixed fee line; Cloud NAT's gateway price follows the node count, so idle and full may differ."""

    name: str
    quantity: str
    idle_usd_per_hour: float
    full_usd_per_hour: float
    source: PriceSource
    note: str = ""


@dataclass(frozen=True)
class StackCost:
    cluster_name: str
    cloud: str
    region: str | None
    pools: tuple[PoolCost, ...]
    fees: tuple[FeeCost, ...]
    hours_per_month: int = HOURS_PER_MONTH
    notes: tuple[str, ...] = field(default=())

    @property
    def unknown_pools(self) -> list[str]:
        return [p.name for p in self.pools if not p.known]

    @property
    def complete(self) -> bool:
        """False when some pool has no price: every total is then a lower bound."""
        return not self.unknown_pools

    def _sum(self, pool_attr: str, fee_attr: str) -> float:
        pools = sum(getattr(p, pool_attr) or 0.0 for p in self.pools)
        return pools + sum(getattr(f, fee_attr) for f in self.fees)

    @property
    def idle_usd_per_hour(self) -> float:
        return self._sum("idle_usd_per_hour", "idle_usd_per_hour")

    @property
    def full_usd_per_hour(self) -> float:
        return self._sum("full_usd_per_hour", "full_usd_per_hour")

    @property
    def idle_on_demand_usd_per_hour(self) -> float:
        """Idle, were every spot pool on-demand instead."""
        return self._sum("idle_on_demand_usd_per_hour", "idle_usd_per_hour")

    @property
    def full_on_demand_usd_per_hour(self) -> float:
        return self._sum("full_on_demand_usd_per_hour", "full_usd_per_hour")

    def monthly(self, usd_per_hour: float) -> float:
        return usd_per_hour * self.hours_per_month

    @property
    def sources(self) -> list[PriceSource]:
        """Every source behind a number shown, in order of first use."""
        found: list[PriceSource] = []
        for source in [s for p in self.pools for s in p.sources] + [f.source for f in self.fees]:
            if source not in found:
                found.append(source)
        return found

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable form ``park cost --json`` prints."""
        sources = self.sources
        ref = lambda s: sources.index(s)
        money = lambda h: None if h is None else {"usd_per_hour": h, "usd_per_month": self.monthly(h)}

        def pool(p: PoolCost) -> dict[str, Any]:
            price = p.price
            return {
                "name": p.name, "instanceType": p.instance_type, "capacity": p.capacity,
                "minNodes": p.min_nodes, "maxNodes": p.max_nodes, "free": p.free,
                "priceRegion": price.region if price else None,
                "nodeUsdPerHour": p.node_usd_per_hour,
                "onDemandNodeUsdPerHour": p.on_demand_node_usd_per_hour,
                "idle": money(p.idle_usd_per_hour), "full": money(p.full_usd_per_hour),
                "idleOnDemand": money(p.idle_on_demand_usd_per_hour),
                "fullOnDemand": money(p.full_on_demand_usd_per_hour),
                "sources": [ref(s) for s in p.sources], "notes": list(p.notes),
            }

        return {
            "clusterName": self.cluster_name, "cloud": self.cloud, "region": self.region,
            "hoursPerMonth": self.hours_per_month, "complete": self.complete,
            "unknownPools": self.unknown_pools,
            "pools": [pool(p) for p in self.pools],
            "fees": [{"name": f.name, "quantity": f.quantity, "idle": money(f.idle_usd_per_hour),
                      "full": money(f.full_usd_per_hour), "source": ref(f.source), "note": f.note}
                     for f in self.fees],
            "total": {"idle": money(self.idle_usd_per_hour), "full": money(self.full_usd_per_hour),
                      "idleOnDemand": money(self.idle_on_demand_usd_per_hour),
                      "fullOnDemand": money(self.full_on_demand_usd_per_hour)},
            "notCounted": list(NOT_COUNTED), "notes": list(self.notes),
            "sources": [{"title": s.title, "url": s.url, "checked": s.checked, "published": s.published,
                         "sourced": s.sourced, "note": s.note} for s in sources],
        }


# --- computing ---------------------------------------------------------------------------------------


def pool_cost(spec: StackSpec, pool: NodePool) -> PoolCost:
    itype = spec.instance_type(pool)
    if spec.cloud == "kind":
        return PoolCost(pool.name, itype, pool.spot, pool.min_nodes, pool.max_nodes, None, free=True)
    price = catalog.node_price(spec.cloud, itype, spec.region)
    notes = []
    if price is None:
        notes.append(f"no price for {itype} in the catalog")
    elif price.region != spec.region:
        notes.append(f"price for {price.region}; the catalog has none for {spec.region}")
    if spec.cloud == "gcp" and spec.zones and pool.min_nodes:
        zones = len(set(spec.zones))
        created = math.ceil(pool.min_nodes / zones) * zones
        if created > pool.min_nodes:
            notes.append(f"GKE creates {created} nodes (whole nodes per zone) until the autoscaler scales "
                         f"down to {pool.min_nodes}")
    return PoolCost(pool.name, itype, pool.spot, pool.min_nodes, pool.max_nodes, price, notes=tuple(notes))


def _fee(fee: Fee, count: int, unit: str | None = None) -> FeeCost:
    hourly = fee.usd_per_hour * count
    return FeeCost(fee.name, f"{count} {unit or fee.per}", hourly, hourly, fee.source, fee.note)


def _cloud_nat(idle_nodes: int, full_nodes: int) -> FeeCost:
    fee = catalog.FEES["cloud-nat-vm"]
    price = lambda n: min(fee.usd_per_hour * n, catalog.CLOUD_NAT_MAX_USD_PER_HOUR)
    return FeeCost(fee.name, f"{idle_nodes}-{full_nodes} VMs", price(idle_nodes), price(full_nodes),
                   fee.source, fee.note)


def fixed_fees(spec: StackSpec) -> list[FeeCost]:
    """The fees the cloud adapter's resources incur whatever the workloads do."""
    fees = catalog.FEES
    if spec.cloud == "aws":
        return [_fee(fees["eks-cluster"], 1), _fee(fees["aws-nat-gateway"], NAT_GATEWAYS["aws"]),
                _fee(fees["aws-public-ipv4"], NAT_ADDRESSES["aws"])]
    if spec.cloud == "gcp":
        idle = sum(p.min_nodes for p in spec.node_pools)
        full = sum(p.max_nodes for p in spec.node_pools)
        return [_fee(fees["gke-cluster"], 1), _cloud_nat(idle, full),
                _fee(fees["cloud-nat-ip"], NAT_ADDRESSES["gcp"])]
    return []


def stack_cost(spec: StackSpec) -> StackCost:
    notes = ["kind runs on this machine: no cloud bill"] if spec.cloud == "kind" else []
    return StackCost(spec.cluster_name, spec.cloud, spec.region,
                     tuple(pool_cost(spec, p) for p in spec.node_pools), tuple(fixed_fees(spec)),
                     notes=tuple(notes))


@dataclass(frozen=True)
class ScaleUpLine:
    pool: str
    instance_type: str
    capacity: str
    nodes: int
    node_usd_per_hour: float | None
    price_region: str | None


@dataclass(frozen=True)
class ScaleUp:
    """What adding nodes to some pools costs per hour (the node prices only; fees do not change, except
    Cloud NAT's $0.0014 per added VM on gcp, left out)."""

    lines: tuple[ScaleUpLine, ...]
    hours_per_month: int = HOURS_PER_MONTH

    @property
    def usd_per_hour(self) -> float:
        """The known part; a lower bound when ``complete`` is False."""
        return sum((line.node_usd_per_hour or 0.0) * line.nodes for line in self.lines)

    @property
    def complete(self) -> bool:
        return all(line.node_usd_per_hour is not None for line in self.lines)

    def summary(self) -> str:
        """One line per pool and a total, for a warning printed before the scale-up happens."""
        if not self.lines:
            return "no pool scales up: no added node cost"
        out = []
        for line in self.lines:
            price = line.node_usd_per_hour
            each = "unknown price" if price is None else f"${price:,.2f}/h each"
            out.append(f"{line.pool}: +{line.nodes} x {line.instance_type} ({line.capacity}, {each})")
        bound = "" if self.complete else "at least "
        out.append(f"total: {bound}${self.usd_per_hour:,.2f}/h "
                   f"({bound}${self.usd_per_hour * self.hours_per_month:,.0f}/month if left running)")
        return "\n".join(out)


def scale_up_cost(spec: StackSpec, pools: Mapping[str, int] | Iterable[str]) -> ScaleUp:
    """$/h of adding nodes to ``pools``: a mapping pool name -> nodes added, or names (one node each).
    Spot pools at their spot price. Raises ValueError for a pool the spec does not have."""
    added = dict(pools) if isinstance(pools, Mapping) else {name: 1 for name in pools}
    known = {p.name: p for p in spec.node_pools}
    missing = [name for name in added if name not in known]
    if missing:
        raise ValueError(f"no pool {', '.join(map(repr, missing))} in the stack; pools: {', '.join(known)}")
    lines = []
    for name, nodes in added.items():
        cost = pool_cost(spec, known[name])
        lines.append(ScaleUpLine(name, cost.instance_type, cost.capacity, nodes, cost.node_usd_per_hour,
                                 cost.price.region if cost.price else None))
    return ScaleUp(tuple(lines))


# --- `park cost` ---------------------------------------------------------------------------------------


def _usd(value: float | None, decimals: int = 2) -> str:
    return "unknown" if value is None else f"{value:,.{decimals}f}"


def _hour_month(cost: StackCost, usd_per_hour: float | None) -> tuple[str, str]:
    monthly = None if usd_per_hour is None else cost.monthly(usd_per_hour)
    return _usd(usd_per_hour, 4), _usd(monthly, 0)


def render_text(cost: StackCost, out: TextIO, terminal: bool = False) -> None:
    """The table ``park cost`` prints: rich on a terminal; plain ASCII without trailing blanks elsewhere, so
    tests and the README can compare it."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=out if terminal else buffer, force_terminal=terminal, no_color=not terminal,
                      highlight=False, width=None if terminal else 400)
    plain = box.Box("    \n    \n -- \n    \n    \n -- \n    \n    \n")
    sources = cost.sources
    mark = lambda s: "U" if not s.sourced else str(sources.index(s) + 1)
    where = f"{cost.cloud}, {cost.region}" if cost.region else cost.cloud

    table = Table(title=f"{cost.cluster_name} ({where}): list prices in USD", title_justify="left",
                  box=box.SIMPLE_HEAD if terminal else plain, pad_edge=False)
    for header, justify in (("Pool / fee", "left"), ("Instance", "left"), ("Capacity", "left"),
                            ("Count", "right"), ("$/node-h", "right"), ("On-demand $/node-h", "right"),
                            ("Idle $/h", "right"), ("Idle $/month", "right"), ("Full $/h", "right"),
                            ("Full $/month", "right"), ("Source", "left")):
        table.add_column(header, justify=justify, no_wrap=True)
    for p in cost.pools:
        node = "free" if p.free else _usd(p.node_usd_per_hour, 4)
        alternative = _usd(p.on_demand_node_usd_per_hour, 4) if p.spot and p.price is not None else ""
        src = ",".join(dict.fromkeys(mark(s) for s in p.sources)) or "-"
        table.add_row(p.name, p.instance_type, "local" if p.free else p.capacity,
                      f"{p.min_nodes}-{p.max_nodes} nodes", node, alternative,
                      *_hour_month(cost, p.idle_usd_per_hour), *_hour_month(cost, p.full_usd_per_hour), src)
    for f in cost.fees:
        table.add_row(f.name, "", "fixed", f.quantity, "", "", *_hour_month(cost, f.idle_usd_per_hour),
                      *_hour_month(cost, f.full_usd_per_hour), mark(f.source))
    table.add_section()
    table.add_row("Total" if cost.complete else "Total, at least", "", "", "", "", "",
                  *_hour_month(cost, cost.idle_usd_per_hour), *_hour_month(cost, cost.full_usd_per_hour), "")
    if any(p.spot for p in cost.pools):
        table.add_row("Total, spot pools on-demand", "", "", "", "", "",
                      *_hour_month(cost, cost.idle_on_demand_usd_per_hour),
                      *_hour_month(cost, cost.full_on_demand_usd_per_hour), "")
    if terminal:  # a terminal narrower than the table gets it whole (its lines wrap), never truncated
        natural = console.measure(table, options=console.options.update_width(1000)).maximum
        console.width = max(console.width, natural)
    console.print(table)

    lines = [f"Idle = minNodes of every pool, full = maxNodes; a month is {cost.hours_per_month} h."]
    lines += list(cost.notes)
    if not cost.complete:
        lines.append(f"Unknown price for pool(s) {', '.join(cost.unknown_pools)}: totals are lower bounds.")
    lines += [f"{p.name}: {note}" for p in cost.pools for note in p.notes]
    if any(p.spot for p in cost.pools):
        lines.append("Spot prices are indicative: AWS moves them hourly, GCP up to monthly; "
                     "check before budgeting.")
    if cost.cloud != "kind":
        lines.append(f"Not counted: {', '.join(NOT_COUNTED)}.")
        lines += [f"{f.name}: {f.note}" for f in cost.fees if f.note]
    if sources:
        lines.append("Sources:")
        for s in sources:
            first, *rest = s.describe().splitlines()
            lines.append(f"  [{mark(s)}] {first}")
            lines += [f"      {line}" for line in rest + ([s.note] if s.note else [])]
    for line in lines:
        console.print(line, soft_wrap=True)
    if not terminal:
        out.write("\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip("\n") + "\n")


def cost_command(stack: str, as_json: bool = False, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> int:
    """Run ``park cost``; returns the exit code (2 for invalid config, one ``path: reason`` line each)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    spec = load_stack_for_command(stack, stderr)
    if spec is None:
        return INVALID_CONFIG_EXIT
    cost = stack_cost(spec)
    if as_json:
        stdout.write(json.dumps(cost.to_dict(), indent=2) + "\n")
    else:
        render_text(cost, stdout, terminal=stdout.isatty())
    return 0
