"""Accelerator catalog: which GPU each cloud offers on which instance / machine type.

This is the only place that knows that ``p5.48xlarge`` carries eight H100s or that GKE labels an L4
node ``cloud.google.com/gke-accelerator=nvidia-l4``. Everything else asks the catalog; nothing
guesses GPU capability from an instance-type string.

Prices are approximate on-demand and spot list prices in USD per node-hour (us-east-1 /
us-central1), recorded on ``PRICES_AS_OF`` for comparing pools — not for billing. Spot prices move
hourly; check the cloud's price page before budgeting.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-11-22"

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
    on_demand_usd_per_hour: float
    spot_usd_per_hour: float
    gpu_memory_gib: int
    guest_accelerator_type: str | None = None
    """GCP only: the ``guest_accelerator`` type attached to the machine."""


def _aws(acc: str, itype: str, gpus: int, vcpus: int, mem: int, gmem: int, od: float, spot: float) -> Offering:
    return Offering(acc, "aws", itype, gpus, vcpus, mem, (AWS_NODE_LABEL, itype), od, spot, gmem)


def _gcp(acc: str, mtype: str, gtype: str, gpus: int, vcpus: int, mem: int, gmem: int, od: float, spot: float) -> Offering:
    return Offering(acc, "gcp", mtype, gpus, vcpus, mem, (GKE_ACCELERATOR_LABEL, gtype), od, spot, gmem, gtype)


OFFERINGS: tuple[Offering, ...] = (
    # --- AWS (EKS managed node groups) ---
    _aws("nvidia-h100", "p5.48xlarge", 8, 192, 2048, 80, 55.04, 33.02),
    _aws("nvidia-h200", "p5en.48xlarge", 8, 192, 2048, 141, 63.30, 37.98),
    _aws("nvidia-a100-80gb", "p4de.24xlarge", 8, 96, 1152, 80, 27.45, 16.47),
    _aws("nvidia-a100-40gb", "p4d.24xlarge", 8, 96, 1152, 40, 21.96, 13.18),
    _aws("nvidia-l4", "g6.xlarge", 1, 4, 16, 24, 0.805, 0.32),
    _aws("nvidia-l4", "g6.12xlarge", 4, 48, 192, 24, 4.60, 1.84),
    _aws("nvidia-l4", "g6.48xlarge", 8, 192, 768, 24, 13.35, 5.34),
    _aws("nvidia-a10g", "g5.xlarge", 1, 4, 16, 24, 1.006, 0.40),
    _aws("nvidia-a10g", "g5.12xlarge", 4, 48, 192, 24, 5.67, 2.27),
    _aws("nvidia-a10g", "g5.48xlarge", 8, 192, 768, 24, 16.29, 6.52),
    _aws("nvidia-t4", "g4dn.xlarge", 1, 4, 16, 16, 0.526, 0.21),
    _aws("nvidia-t4", "g4dn.12xlarge", 4, 48, 192, 16, 3.912, 1.56),
    # --- GCP (GKE node pools with guest accelerators) ---
    _gcp("nvidia-h100", "a3-highgpu-8g", "nvidia-h100-80gb", 8, 208, 1872, 80, 88.25, 26.48),
    _gcp("nvidia-h200", "a3-ultragpu-8g", "nvidia-h200-141gb", 8, 224, 2952, 141, 84.81, 29.68),
    _gcp("nvidia-a100-80gb", "a2-ultragpu-1g", "nvidia-a100-80gb", 1, 12, 170, 80, 5.07, 1.52),
    _gcp("nvidia-a100-80gb", "a2-ultragpu-8g", "nvidia-a100-80gb", 8, 96, 1360, 80, 40.55, 12.17),
    _gcp("nvidia-a100-40gb", "a2-highgpu-1g", "nvidia-tesla-a100", 1, 12, 85, 40, 3.67, 1.10),
    _gcp("nvidia-a100-40gb", "a2-highgpu-8g", "nvidia-tesla-a100", 8, 96, 680, 40, 29.39, 8.82),
    _gcp("nvidia-l4", "g2-standard-8", "nvidia-l4", 1, 8, 32, 24, 0.85, 0.34),
    _gcp("nvidia-l4", "g2-standard-24", "nvidia-l4", 2, 24, 96, 24, 2.00, 0.80),
    _gcp("nvidia-l4", "g2-standard-48", "nvidia-l4", 4, 48, 192, 24, 4.00, 1.60),
    _gcp("nvidia-t4", "n1-standard-8", "nvidia-tesla-t4", 1, 8, 30, 16, 0.73, 0.25),
)

# CPU node shapes used for system pools and CPU worker pools when the config names none.
DEFAULT_CPU_INSTANCE = {"aws": "m6i.2xlarge", "gcp": "e2-standard-8", "kind": "kind-node"}
CPU_SHAPES: dict[str, tuple[int, int]] = {
    # instance type -> (vCPUs, memory GiB); kind nodes share the host, sized for a laptop.
    "m6i.xlarge": (4, 16),
    "m6i.2xlarge": (8, 32),
    "m6i.4xlarge": (16, 64),
    "m7i.2xlarge": (8, 32),
    "e2-standard-4": (4, 16),
    "e2-standard-8": (8, 32),
    "n2-standard-8": (8, 32),
    "n2-standard-16": (16, 64),
    "kind-node": (2, 8),
}


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
