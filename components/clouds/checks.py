"""Per-cloud limits of a stack spec, checked with the spec itself (``parse_spec``) so that ``park render``,
``park kind-config`` and ``pulumi up`` all report them, each with its property path.

Pure: no cloud SDK is imported here, so a stack can be validated without the cloud's extra installed.
"""

from __future__ import annotations

import ipaddress
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


S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(cloud: str, name: str) -> str | None:
    """Why ``name`` cannot be the stack's bucket on ``cloud`` (None when it can), beyond the 3-63 lower-case
    letters, digits, dots and hyphens that ``storage.bucket``'s pattern already demands. S3: "General purpose
    bucket naming rules" (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html); GCS: "Bucket
    names" (cloud.google.com/storage/docs/buckets#naming)."""
    if ".." in name:
        return f"{name!r} has two adjacent periods"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return f"{name!r} is formatted as an IP address"
    if cloud == "aws":
        reserved = next((x for x in S3_RESERVED_PREFIXES if name.startswith(x)), None)
        if reserved:
            return f"{name!r} starts with {reserved!r}, a prefix S3 reserves"
        reserved = next((x for x in S3_RESERVED_SUFFIXES if name.endswith(x)), None)
        if reserved:
            return f"{name!r} ends with {reserved!r}, a suffix S3 reserves"
    if cloud == "gcp":
        if name.startswith("goog"):
            return f"{name!r} starts with 'goog', which Cloud Storage does not allow"
        if "google" in name or "g00gle" in name:
            return f"{name!r} contains 'google' (or a look-alike), which Cloud Storage does not allow"
    return None


def _bucket_problems(spec: StackSpec) -> list[Problem]:
    reason = bucket_name_problem(spec.cloud, spec.bucket_name)
    if reason is None:
        return []
    if spec.storage.bucket is None:
        reason = f"the default bucket name (<clusterName>-park-data): {reason}; set storage.bucket"
    return [Problem("storage.bucket", reason)]


def aws_problems(spec: StackSpec) -> list[Problem]:
    """Problems only the aws adapter can see (the spec's own checks have passed already)."""
    problems = _bucket_problems(spec)
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
    problems = _bucket_problems(spec)
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


EXAMPLE_GCP_PROJECT = "park-stack-demo"
"""The project id the shipped gcp stack carries so that ``park render gcp`` works: nobody's project."""

BUCKET_EXAMPLES = {
    "aws": 'park-aws-"$(aws sts get-caller-identity --query Account --output text)"',
    "gcp": '"$(gcloud config get-value project)"-park-gcp',
}
"""A bucket name of one's own: an account id or project id is unique to its owner and stays in the name."""


def unique_name_problems(spec: StackSpec) -> list[Problem]:
    """Names that must be the adopter's own before ``pulumi up``, checked at provisioning like the endpoint:
    ``park render`` of a shipped stack works with the stand-ins, ``pulumi up`` does not create them.

    Bucket names are global (S3 within a partition, GCS everywhere), so the shipped stacks' default
    ``<clusterName>-park-data`` belongs to whoever deployed first: ``storage.bucket`` must be set. The account id
    (aws) is only known to the deployer's credentials and the project id (gcp) is global too, so either makes the
    name unique; the suggested commands put it in. The gcp stack's ``park-stack-demo`` project is a stand-in."""
    if spec.cloud == "kind":
        return []
    problems = []
    if spec.cloud == "gcp" and spec.project == EXAMPLE_GCP_PROJECT:
        problems.append(Problem("project", (
            f"{EXAMPLE_GCP_PROJECT!r} is the shipped example's stand-in, not your project: set your project id, "
            "`pulumi config set park:project MY_PROJECT` and `pulumi config set gcp:project MY_PROJECT`")))
    if spec.storage.bucket is None:
        store = {"aws": "S3", "gcp": "Cloud Storage"}[spec.cloud]
        problems.append(Problem("storage.bucket", (
            f"required before `pulumi up`: {store} bucket names are global, and the default {spec.bucket_name!r} "
            "is the same for everyone who deploys this stack; name one of your own, e.g. "
            f"`pulumi config set --path park:storage.bucket {BUCKET_EXAMPLES[spec.cloud]}` (and keep "
            "models[].source in that bucket)")))
    return problems


def provisioning_problems(spec: StackSpec) -> list[Problem]:
    """Everything ``pulumi up`` needs that ``park render`` does not: endpoint access and names of one's own."""
    return endpoint_access_problems(spec) + unique_name_problems(spec)


def require_provisionable(spec: StackSpec) -> None:
    """Stop ``pulumi up`` before the adapter declares anything when :func:`provisioning_problems` finds one."""
    problems = provisioning_problems(spec)
    if problems:
        import pulumi

        lines = "\n".join(str(p) for p in problems)
        raise pulumi.RunError(f"stack config not ready for `pulumi up`:\n{lines}")
