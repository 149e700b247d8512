"""Per-cloud limits of a stack spec, checked with the spec itself (``parse_spec``) so that ``park render``,
``park kind-config`` and ``pulumi up`` all report them, each with its property path.

Pure: no cloud SDK is imported here, so a stack can be validated without the cloud's extra installed.
"""

from __future__ import annotations

import math

from park.components import versions
from park.components.spec import Problem, StackSpec

MAX_ZONES = 6
"""aws: the subnet plan carves one private /19 and one public /22 per zone out of the VPC."""


def account_id(cluster_name: str, suffix: str) -> str:
    """A Google service account id (6-30 characters, no trailing hyphen) named after the cluster."""
    return f"{cluster_name}-{suffix}"[:30].rstrip("-")


def fsx_capacity_problem(capacity_gib: int) -> str | None:
    """FSx for Lustre PERSISTENT_2 SSD takes 1200 GiB, 2400 GiB or a multiple of 2400 GiB."""
    if capacity_gib == 1200 or capacity_gib % 2400 == 0:
        return None
    lower = max(1200, capacity_gib // 2400 * 2400)
    upper = (capacity_gib // 2400 + 1) * 2400
    return (
        f"{capacity_gib} GiB is not an FSx for Lustre size (1200, 2400 or a multiple of 2400); "
        f"nearest: {lower} or {upper}"
    )


def aws_problems(spec: StackSpec) -> list[Problem]:
    """Problems only the aws adapter can see (the spec's own checks have passed already)."""
    problems = []
    if len(set(spec.zones)) > MAX_ZONES:
        problems.append(Problem("zones", f"at most {MAX_ZONES} zones on aws (one subnet pair each)"))
    shared = spec.storage.shared_filesystem
    if shared is not None and (reason := fsx_capacity_problem(shared.capacity_gib)):
        problems.append(Problem("storage.sharedFilesystem.capacityGib", reason))
    return problems


def filestore_capacity_problem(capacity_gib: int) -> str | None:
    """Filestore zonal: 1024-9984 GiB in steps of 256 GiB, or 10240-102400 GiB in steps of 2560 GiB."""
    if 1024 <= capacity_gib <= 9984 and capacity_gib % 256 == 0:
        return None
    if 10240 <= capacity_gib <= 102400 and capacity_gib % 2560 == 0:
        return None
    if capacity_gib < 10240:
        nearest = min(max(1024, math.ceil(capacity_gib / 256) * 256), 9984)
    else:
        nearest = min(math.ceil(capacity_gib / 2560) * 2560, 102400)
    return (
        f"{capacity_gib} GiB is not a Filestore zonal size (1024-9984 GiB in steps of 256, "
        f"10240-102400 GiB in steps of 2560); nearest: {nearest}"
    )


def gcp_problems(spec: StackSpec) -> list[Problem]:
    """Problems only the gcp adapter can see (the spec's own checks have passed already)."""
    problems = []
    for suffix in ("ray", "nodes"):
        if len(account_id(spec.cluster_name, suffix)) < 6:
            problems.append(
                Problem(
                    "clusterName",
                    f"{spec.cluster_name!r} is too short to name the Google "
                    f"service account {account_id(spec.cluster_name, suffix)!r} "
                    "(6-30 characters); use at least 2 characters",
                )
            )
            break
    shared = spec.storage.shared_filesystem
    if shared is not None:
        if not spec.zones:
            problems.append(
                Problem(
                    "zones",
                    "required with storage.sharedFilesystem on gcp: a zonal Filestore "
                    "instance lives in the first zone",
                )
            )
        if reason := filestore_capacity_problem(shared.capacity_gib):
            problems.append(Problem("storage.sharedFilesystem.capacityGib", reason))
    return problems


def kind_problems(spec: StackSpec) -> list[Problem]:
    """Problems only the kind adapter can see (the spec's own checks have passed already)."""
    problems = []
    if versions.kind_node_image(spec.kubernetes_version) is None:
        known = ", ".join(sorted(versions.KIND_NODE_IMAGES))
        problems.append(
            Problem(
                "kubernetesVersion",
                f"no kindest/node image pinned for {spec.kubernetes_version} "
                f"(pinned: {known}); set PARK_KIND_NODE_IMAGE to use another",
            )
        )
    for i, pool in enumerate(spec.node_pools):
        if pool.min_nodes < 1:
            problems.append(
                Problem(
                    f"nodePools[{i}].minNodes",
                    "kind has no autoscaler: a pool with minNodes 0 gets no node; set at least 1",
                )
            )
    return problems


def cloud_problems(spec: StackSpec) -> list[Problem]:
    """The limits of ``spec.cloud`` that the cloud-neutral checks do not know."""
    return {"aws": aws_problems, "gcp": gcp_problems, "kind": kind_problems}[spec.cloud](spec)


# --- what `pulumi up` needs that `park render` does not --------------------------------------------------

SET_ALLOWED_CIDR = "pulumi config set --path 'park:security.allowedCidrs[0]' <your-egress-ip>/32"


def endpoint_access_problems(spec: StackSpec) -> list[Problem]:
    """Who may reach the cluster's API endpoint: required before any cloud resource exists.

    Checked at provisioning, not in the spec: ``park render`` creates nothing, so a shipped stack renders out
    of the box, while ``pulumi up`` refuses to create an endpoint open to nobody (or, with a copied example
    range, to somebody else). A private endpoint (aws: EKS private access only; gcp: GKE private endpoint)
    needs no list: its own VPC reaches it, and ``allowedCidrs`` then only adds internal ranges.
    """
    if spec.cloud == "kind" or spec.security.private_endpoint or spec.security.allowed_cidrs:
        return []
    return [Problem("security.allowedCidrs", (
        "required before `pulumi up` when the API endpoint is public: list who may reach it, e.g. "
        f"`{SET_ALLOWED_CIDR}` (your egress address: `curl -s https://checkip.amazonaws.com`; 0.0.0.0/0 "
        "allows everyone), or set security.privateEndpoint: true and run `pulumi up` from inside the VPC"))]


def require_provisionable(spec: StackSpec) -> None:
    """Stop ``pulumi up`` before the adapter declares anything when :func:`endpoint_access_problems` finds one."""
    problems = endpoint_access_problems(spec)
    if problems:
        import pulumi

        lines = "\n".join(str(p) for p in problems)
        raise pulumi.RunError(f"stack config not ready for `pulumi up`:\n{lines}")
