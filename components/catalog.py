"""Accelerator catalog: which GPU each cloud offers on which instance / machine type, and what nodes cost.

This is the only place that knows that ``p5.48xlarge`` carries eight H100s or that GKE labels an L4
node ``cloud.google.com/gke-accelerator=nvidia-l4``. Everything else asks the catalog; nothing
guesses GPU capability from an instance-type string.

Prices (:data:`NODE_PRICES`, :data:`FEES`) are list prices in USD per hour, each with its region and a
:class:`PriceSource` saying where it was read and when, or that it is unsourced (written from memory).
They are for comparing pools and sizing a bill, not for billing: spot prices move hourly (AWS) or up to
monthly (GCP), so a spot price here is indicative. ``park cost STACK`` prints them with their sources.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

ACCELERATORS = (
    "nvidia-h100",
    "nvidia-h200",
    "nvidia-a100-80gb",
    "nvidia-a100-40gb",
    "nvidia-l4",
    "nvidia-a10g",
    "nvidia-t4",
)

# Label keys the clouds set on nodes. EKS sets the well-known instance-type label; GKE sets its own
# accelerator label on every node that carries a GPU.
AWS_NODE_LABEL = "node.kubernetes.io/instance-type"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"


@dataclass(frozen=True)
class Offering:
    """One way to get an accelerator on one cloud: a node shape with a fixed number of GPUs."""

    accelerator: str
    cloud: str
    instance_type: str
    """EC2 instance type on AWS, Compute Engine machine type on GCP."""
    gpus_per_node: int
    vcpus: int
    memory_gib: int
    node_label: tuple[str, str]
    """(key, value) of the label the cloud sets on such nodes; usable as a Kueue flavor nodeLabel."""
    gpu_memory_gib: int
    guest_accelerator_type: str | None = None
    """GCP only: the ``guest_accelerator`` type attached to the machine."""

    @property
    def price(self) -> NodePrice:
        """The node price in the cloud's reference region (every offering has one; see NODE_PRICES)."""
        found = node_price(self.cloud, self.instance_type, REFERENCE_REGION[self.cloud])
        assert found is not None, f"no price for {self.cloud} {self.instance_type}"
        return found

    @property
    def on_demand_usd_per_hour(self) -> float:
        return self.price.on_demand.usd_per_hour

    @property
    def spot_usd_per_hour(self) -> float:
        spot = self.price.spot
        assert spot is not None, f"no spot price for {self.cloud} {self.instance_type}"
        return spot.usd_per_hour


def _aws(acc: str, itype: str, gpus: int, vcpus: int, mem: int, gmem: int) -> Offering:
    return Offering(acc, "aws", itype, gpus, vcpus, mem, (AWS_NODE_LABEL, itype), gmem)


def _gcp(acc: str, mtype: str, gtype: str, gpus: int, vcpus: int, mem: int, gmem: int) -> Offering:
    return Offering(acc, "gcp", mtype, gpus, vcpus, mem, (GKE_ACCELERATOR_LABEL, gtype), gmem, gtype)


OFFERINGS: tuple[Offering, ...] = (
    # --- AWS (EKS managed node groups) ---
    _aws("nvidia-h100", "p5.48xlarge", 8, 192, 2048, 80),
    _aws("nvidia-h200", "p5en.48xlarge", 8, 192, 2048, 141),
    _aws("nvidia-a100-80gb", "p4de.24xlarge", 8, 96, 1152, 80),
    _aws("nvidia-a100-40gb", "p4d.24xlarge", 8, 96, 1152, 40),
    _aws("nvidia-l4", "g6.xlarge", 1, 4, 16, 24),
    _aws("nvidia-l4", "g6.12xlarge", 4, 48, 192, 24),
    _aws("nvidia-l4", "g6.48xlarge", 8, 192, 768, 24),
    _aws("nvidia-a10g", "g5.xlarge", 1, 4, 16, 24),
    _aws("nvidia-a10g", "g5.12xlarge", 4, 48, 192, 24),
    _aws("nvidia-a10g", "g5.48xlarge", 8, 192, 768, 24),
    _aws("nvidia-t4", "g4dn.xlarge", 1, 4, 16, 16),
    _aws("nvidia-t4", "g4dn.12xlarge", 4, 48, 192, 16),
    # --- GCP (GKE node pools with guest accelerators) ---
    _gcp("nvidia-h100", "a3-highgpu-8g", "nvidia-h100-80gb", 8, 208, 1872, 80),
    _gcp("nvidia-h200", "a3-ultragpu-8g", "nvidia-h200-141gb", 8, 224, 2952, 141),
    _gcp("nvidia-a100-80gb", "a2-ultragpu-1g", "nvidia-a100-80gb", 1, 12, 170, 80),
    _gcp("nvidia-a100-80gb", "a2-ultragpu-8g", "nvidia-a100-80gb", 8, 96, 1360, 80),
    _gcp("nvidia-a100-40gb", "a2-highgpu-1g", "nvidia-tesla-a100", 1, 12, 85, 40),
    _gcp("nvidia-a100-40gb", "a2-highgpu-8g", "nvidia-tesla-a100", 8, 96, 680, 40),
    _gcp("nvidia-l4", "g2-standard-8", "nvidia-l4", 1, 8, 32, 24),
    _gcp("nvidia-l4", "g2-standard-24", "nvidia-l4", 2, 24, 96, 24),
    _gcp("nvidia-l4", "g2-standard-48", "nvidia-l4", 4, 48, 192, 24),
    _gcp("nvidia-t4", "n1-standard-8", "nvidia-tesla-t4", 1, 8, 30, 16),
)

# CPU node shapes used for system pools and CPU worker pools when the config names none.
DEFAULT_CPU_INSTANCE = {"aws": "m6i.2xlarge", "gcp": "e2-standard-8", "kind": "kind-node"}


@dataclass(frozen=True)
class CpuShape:
    """A node shape without GPUs: what a CPU pool's ``instanceType`` may name, and what its quotas are checked
    against. Only x86_64 shapes: the aws adapter runs the AL2023 x86_64 AMI and GKE's default image is x86_64."""

    cloud: str
    instance_type: str
    vcpus: int
    memory_gib: int


_AWS_SIZES = {"large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32, "12xlarge": 48, "16xlarge": 64}


def _aws_family(family: str, gib_per_vcpu: int, sizes: tuple[str, ...] = tuple(_AWS_SIZES)) -> list[CpuShape]:
    """EC2 families share one size ladder (``large`` = 2 vCPUs, each step doubles) and a fixed memory ratio:
    m (general purpose) 4 GiB per vCPU, c (compute) 2, r (memory) 8."""
    return [CpuShape("aws", f"{family}.{size}", _AWS_SIZES[size], _AWS_SIZES[size] * gib_per_vcpu)
            for size in sizes]


def _gcp_family(family: str, gib_per_vcpu: float, vcpus: tuple[int, ...]) -> list[CpuShape]:
    """Compute Engine predefined types are ``<family>-<vCPUs>`` with a fixed memory ratio per family."""
    return [CpuShape("gcp", f"{family}-{n}", n, int(n * gib_per_vcpu)) for n in vcpus]


CPU_SHAPE_CATALOG: tuple[CpuShape, ...] = (
    *_aws_family("m5", 4), *_aws_family("m6i", 4), *_aws_family("m6a", 4), *_aws_family("m7i", 4),
    *_aws_family("c6i", 2), *_aws_family("c7i", 2), *_aws_family("r6i", 8), *_aws_family("r7i", 8),
    *_aws_family("t3", 4, ("large", "xlarge", "2xlarge")),
    *_gcp_family("e2-standard", 4, (2, 4, 8, 16, 32)), *_gcp_family("e2-highmem", 8, (2, 4, 8, 16)),
    *_gcp_family("e2-highcpu", 1, (2, 4, 8, 16, 32)),
    *_gcp_family("n2-standard", 4, (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)),
    *_gcp_family("n2-highmem", 8, (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)),
    *_gcp_family("n2-highcpu", 1, (2, 4, 8, 16, 32, 48, 64, 80, 96)),
    *_gcp_family("n2d-standard", 4, (2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224)),
    *_gcp_family("n1-standard", 3.75, (4, 8, 16, 32, 64, 96)),
    *_gcp_family("c3-standard", 4, (4, 8, 22, 44, 88, 176)),
    CpuShape("kind", "kind-node", 2, 8),  # kind nodes share the host, sized for a laptop
)
CPU_SHAPES: dict[str, tuple[int, int]] = {s.instance_type: (s.vcpus, s.memory_gib) for s in CPU_SHAPE_CATALOG}
"""instance type -> (vCPUs, memory GiB), every cloud together."""


class CatalogError(ValueError):
    """Asked for an accelerator or shape the catalog does not know."""


def offerings(accelerator: str, cloud: str) -> list[Offering]:
    """All node shapes carrying ``accelerator`` on ``cloud``, fewest GPUs first."""
    found = [o for o in OFFERINGS if o.accelerator == accelerator and o.cloud == cloud]
    return sorted(found, key=lambda o: o.gpus_per_node)


def clouds_offering(accelerator: str) -> list[str]:
    return sorted({o.cloud for o in OFFERINGS if o.accelerator == accelerator})


def find_offering(accelerator: str, cloud: str, gpus_per_node: int | None = None,
                  instance_type: str | None = None) -> Offering:
    """The offering for a pool: by instance type if given, else by GPU count, else the smallest."""
    if accelerator not in ACCELERATORS:
        raise CatalogError(f"unknown accelerator {accelerator!r}; known: {', '.join(ACCELERATORS)}")
    candidates = offerings(accelerator, cloud)
    if not candidates:
        where = ", ".join(clouds_offering(accelerator)) or "no cloud"
        raise CatalogError(f"{accelerator} is not offered on {cloud} (offered on: {where})")
    if instance_type is not None:
        match = [o for o in candidates if o.instance_type == instance_type]
        if not match:
            known = ", ".join(o.instance_type for o in candidates)
            raise CatalogError(f"{instance_type!r} does not carry {accelerator} on {cloud}; choose one of: {known}")
        candidates = match
    if gpus_per_node is not None:
        match = [o for o in candidates if o.gpus_per_node == gpus_per_node]
        if not match:
            counts = ", ".join(str(o.gpus_per_node) for o in candidates)
            raise CatalogError(f"{accelerator} on {cloud} comes with {counts} GPUs per node, not {gpus_per_node}")
        candidates = match
    return candidates[0]


def cpu_shape(instance_type: str) -> tuple[int, int] | None:
    """(vCPUs, memory GiB) of a CPU node shape, or None when the catalog does not know it."""
    return CPU_SHAPES.get(instance_type)


def cpu_instance_types(cloud: str) -> list[str]:
    """The CPU node shapes the catalog knows on ``cloud``, in catalog order."""
    return [s.instance_type for s in CPU_SHAPE_CATALOG if s.cloud == cloud]


def cpu_instance_problem(cloud: str, instance_type: str) -> str | None:
    """Why ``instance_type`` cannot be a CPU pool's shape on ``cloud`` (None when it can). The catalog must
    know its vCPUs and memory, or the quota check against the pool's supply could not run."""
    if instance_type in cpu_instance_types(cloud):
        return None
    gpu = next((o for o in OFFERINGS if o.cloud == cloud and o.instance_type == instance_type), None)
    if gpu is not None:
        return f"{instance_type!r} carries {gpu.accelerator}: set accelerator: {gpu.accelerator} for a GPU pool"
    elsewhere = next((s.cloud for s in CPU_SHAPE_CATALOG if s.instance_type == instance_type), None)
    if elsewhere is not None:
        return f"{instance_type!r} is a node shape of {elsewhere}, not of {cloud}"
    known = cpu_instance_types(cloud)
    hint = difflib.get_close_matches(instance_type, known, n=1)
    choices = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(known)}"
    return (f"unknown CPU instance type {instance_type!r} on {cloud}; {choices} (another shape: add it with its "
            f"vCPUs and memory to CPU_SHAPE_CATALOG in components/catalog.py)")


# --- prices ----------------------------------------------------------------------------------------

HOURS_PER_MONTH = 730
"""Hours in the average month (8,760 / 12), the convention AWS and Google use in their calculators."""

REFERENCE_REGION = {"aws": "us-east-1", "gcp": "us-central1"}
"""Every priced node has a price here; a stack in another region gets it (flagged) when its own is missing."""


@dataclass(frozen=True)
class PriceSource:
    """Where a price was read and when; ``url`` None: unsourced (written from memory, never looked up)."""

    title: str
    url: str | None
    checked: str
    """ISO date the price was read from ``url`` (or, unsourced, the date it was written down)."""
    published: str | None = None
    """ISO date the source itself gives for its data, when it gives one."""
    note: str = ""

    @property
    def sourced(self) -> bool:
        return self.url is not None

    def describe(self) -> str:
        if not self.sourced:
            return f"{self.title} ({self.checked})"
        data = f", data of {self.published}" if self.published else ""
        return f"{self.title}\n{self.url} (read {self.checked}{data})"


@dataclass(frozen=True)
class Quote:
    usd_per_hour: float
    source: PriceSource


@dataclass(frozen=True)
class NodePrice:
    """List price of one node of an instance / machine type in one region, on-demand and spot."""

    cloud: str
    instance_type: str
    region: str
    on_demand: Quote
    spot: Quote | None


UNSOURCED = PriceSource(
    "unsourced: written from memory when the catalog was started, not looked up", None, "2026-11-22")

SKYPILOT_AWS = PriceSource(
    "SkyPilot's AWS catalog, catalogs/v8/aws/vms.csv at commit e385a0d",
    "https://github.com/skypilot-org/skypilot-catalog/blob/e385a0d348eda9cefd9806423e7725944dc249e4/"
    "catalogs/v8/aws/vms.csv",
    "2026-11-30",
    note="on-demand from the AWS price list; spot: the lowest zone of the region in that snapshot",
)
DATA_RECEIPTS_AWS = PriceSource(
    "data-receipts 109-gpu-pricing/hyperscalers.json (AWS on-demand, us-east-1)",
    "https://raw.githubusercontent.com/datareceipts/data-receipts/main/109-gpu-pricing/hyperscalers.json",
    "2026-11-30", published="2026-11-09",
)
FACTUALMINDS_EC2 = PriceSource(
    "FactualMinds, Amazon EC2 On-Demand Pricing (2026): g5.xlarge $1.006/h in us-east-1",
    "https://www.factualminds.com/blog/amazon-ec2-on-demand-pricing-instance-families-2026/",
    "2026-11-30", published="2026-06-17",
)
CYCLENERD_GCP = PriceSource(
    "google-cloud-pricing-cost-calculator pricing.yml at commit 0166a59 (from the Cloud Billing Catalog)",
    "https://github.com/Cyclenerd/google-cloud-pricing-cost-calculator/blob/"
    "0166a59ebba7c36f2cc8c931d9f258dcebc44776/pricing.yml",
    "2026-11-30", published="2025-03-06",
    note="a March 2025 snapshot (its spot prices differ from the November 2024 snapshot of the same file); "
         "re-check before budgeting",
)


def _price(cloud: str, itype: str, region: str, od: float, od_src: PriceSource,
           spot: float | None = None, spot_src: PriceSource | None = None) -> NodePrice:
    spot_quote = None if spot is None else Quote(spot, spot_src or od_src)
    return NodePrice(cloud, itype, region, Quote(od, od_src), spot_quote)


NODE_PRICES: tuple[NodePrice, ...] = (
    # --- AWS, read from SkyPilot's catalog (on-demand: AWS price list; spot: lowest zone in the snapshot)
    _price("aws", "m6i.2xlarge", "us-east-1", 0.384, SKYPILOT_AWS, 0.125),
    _price("aws", "m6i.2xlarge", "us-west-2", 0.384, SKYPILOT_AWS, 0.1499),
    _price("aws", "m6i.4xlarge", "us-east-1", 0.768, SKYPILOT_AWS, 0.2376),
    _price("aws", "m6i.4xlarge", "us-west-2", 0.768, SKYPILOT_AWS, 0.307),
    _price("aws", "g6.xlarge", "us-east-1", 0.8048, SKYPILOT_AWS, 0.4007),
    _price("aws", "g6.xlarge", "us-west-2", 0.8048, SKYPILOT_AWS, 0.4347),
    _price("aws", "g5.48xlarge", "us-east-1", 16.288, SKYPILOT_AWS, 4.3302),
    _price("aws", "g5.48xlarge", "us-west-2", 16.288, SKYPILOT_AWS, 6.4989),
    _price("aws", "p5.48xlarge", "us-east-1", 55.04, SKYPILOT_AWS, 14.246),
    _price("aws", "p5.48xlarge", "us-west-2", 55.04, SKYPILOT_AWS, 21.6229),
    _price("aws", "p5en.48xlarge", "us-east-1", 63.296, SKYPILOT_AWS, 19.1652),
    _price("aws", "p5en.48xlarge", "us-west-2", 63.296, SKYPILOT_AWS, 24.6657),
    # --- AWS, on-demand from a public data set; spot from memory
    _price("aws", "p4de.24xlarge", "us-east-1", 27.44705, DATA_RECEIPTS_AWS, 16.47, UNSOURCED),
    _price("aws", "p4d.24xlarge", "us-east-1", 21.957642, DATA_RECEIPTS_AWS, 13.18, UNSOURCED),
    _price("aws", "g5.xlarge", "us-east-1", 1.006, FACTUALMINDS_EC2, 0.40, UNSOURCED),
    # --- AWS, from memory (us-east-1)
    _price("aws", "g6.12xlarge", "us-east-1", 4.60, UNSOURCED, 1.84),
    _price("aws", "g6.48xlarge", "us-east-1", 13.35, UNSOURCED, 5.34),
    _price("aws", "g5.12xlarge", "us-east-1", 5.67, UNSOURCED, 2.27),
    _price("aws", "g4dn.xlarge", "us-east-1", 0.526, UNSOURCED, 0.21),
    _price("aws", "g4dn.12xlarge", "us-east-1", 3.912, UNSOURCED, 1.56),
    # --- GCP us-central1, from the Cloud Billing Catalog snapshot (GPU machine types include their GPUs)
    _price("gcp", "e2-standard-4", "us-central1", 0.13402284, CYCLENERD_GCP, 0.053584),
    _price("gcp", "e2-standard-8", "us-central1", 0.26804568, CYCLENERD_GCP, 0.107168),
    _price("gcp", "a2-highgpu-1g", "us-central1", 3.673385, CYCLENERD_GCP, 1.293355),
    _price("gcp", "a2-highgpu-8g", "us-central1", 29.38708, CYCLENERD_GCP, 10.34684),
    _price("gcp", "g2-standard-8", "us-central1", 0.853624271, CYCLENERD_GCP, 0.336764),
    _price("gcp", "g2-standard-48", "us-central1", 4.001665148, CYCLENERD_GCP, 1.574384),
    # --- GCP us-central1, from memory
    _price("gcp", "a3-highgpu-8g", "us-central1", 88.25, UNSOURCED, 26.48),
    _price("gcp", "a3-ultragpu-8g", "us-central1", 84.81, UNSOURCED, 29.68),
    _price("gcp", "a2-ultragpu-1g", "us-central1", 5.07, UNSOURCED, 1.52),
    _price("gcp", "a2-ultragpu-8g", "us-central1", 40.55, UNSOURCED, 12.17),
    _price("gcp", "g2-standard-24", "us-central1", 2.00, UNSOURCED, 0.80),
    _price("gcp", "n1-standard-8", "us-central1", 0.73, UNSOURCED, 0.25),
    # not priced (shown as unknown by `park cost`): m6i.xlarge, m7i.2xlarge, n2-standard-8, n2-standard-16
)


def node_price(cloud: str, instance_type: str, region: str | None) -> NodePrice | None:
    """The price of one node in ``region``; else in the cloud's reference region (check ``.region``);
    None when the catalog has no price for the type at all."""
    candidates = [p for p in NODE_PRICES if p.cloud == cloud and p.instance_type == instance_type]
    for wanted in (region, REFERENCE_REGION.get(cloud)):
        match = next((p for p in candidates if p.region == wanted), None)
        if match is not None:
            return match
    return candidates[0] if candidates else None


# --- fixed fees ------------------------------------------------------------------------------------

EKS_PRICING = PriceSource(
    "AWS Containers blog, Amazon EKS extended support for Kubernetes versions pricing: "
    "$0.10 per cluster-hour in standard support",
    "https://aws.amazon.com/blogs/containers/amazon-eks-extended-support-for-kubernetes-versions-pricing/",
    "2026-11-30",
    note="read from a mirror copy of the post; $0.60 per cluster-hour in extended support from the April 2024 "
         "billing cycle; cloudburn.io's 2026 EKS pricing guide gives the same $0.10 ($73/month)",
)
AWS_NAT_PRICING = PriceSource(
    "cloudburn.io, AWS NAT Gateway Pricing: $0.045 per gateway-hour, public IPv4 $0.005 per address-hour",
    "https://cloudburn.io/blog/aws-nat-gateway-pricing",
    "2026-11-30", published="2026-02-24",
    note="US East figures; cloudpipelines' 2026 guide lists US West (Oregon) at the same ~$0.045/h; "
         "$0.045 per GB processed",
)
GKE_PRICING = PriceSource(
    "Google Kubernetes Engine pricing: $0.10 per cluster-hour",
    "https://cloud.google.com/kubernetes-engine/pricing",
    "2026-11-30",
    note="read from a proxy copy and a translated copy of the page; the free tier ($74.40/month per billing "
         "account) is only applied to zonal and Autopilot clusters",
)
CLOUD_NAT_PRICING = PriceSource(
    "Cloud NAT pricing: $0.0014 per VM-hour up to 32 VMs, $0.044 above, $0.005 per external IP-hour",
    "https://cloud.google.com/nat/pricing",
    "2026-11-30",
    note="$0.045 per GiB processed",
)


@dataclass(frozen=True)
class Fee:
    """A charge the stack pays whatever its nodes do (or, for Cloud NAT, per node behind the gateway)."""

    cloud: str
    name: str
    usd_per_hour: float
    per: str
    source: PriceSource
    note: str = ""


FEES: dict[str, Fee] = {
    "eks-cluster": Fee("aws", "EKS control plane", 0.10, "cluster", EKS_PRICING,
                       "standard support; $0.60/h while the Kubernetes version is in extended support"),
    "aws-nat-gateway": Fee("aws", "NAT gateway", 0.045, "gateway", AWS_NAT_PRICING,
                           "plus $0.045 per GB processed (not counted here)"),
    "aws-public-ipv4": Fee("aws", "public IPv4 (NAT's Elastic IP)", 0.005, "address", AWS_NAT_PRICING),
    "gke-cluster": Fee("gcp", "GKE cluster management", 0.10, "cluster", GKE_PRICING,
                       "regional cluster: the free tier credit does not apply"),
    "cloud-nat-vm": Fee("gcp", "Cloud NAT gateway", 0.0014, "VM using the gateway", CLOUD_NAT_PRICING,
                        "capped at $0.044/h from 33 VMs; plus $0.045 per GiB processed (not counted here)"),
    "cloud-nat-ip": Fee("gcp", "Cloud NAT external IP", 0.005, "address", CLOUD_NAT_PRICING),
}
CLOUD_NAT_MAX_USD_PER_HOUR = 0.044
"""Cloud NAT's hourly gateway price stops growing above 32 VMs."""
