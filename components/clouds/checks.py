"""What ``pulumi up`` needs that ``park render`` does not, checked by each adapter before it declares anything.

Each cloud's limits of a stack spec live with its capabilities in ``park.components.cloud_rules`` (the spec
checks them); the adapters import them from here too, where they always have.
"""

from __future__ import annotations

import pulumi
from park.components.cloud_rules import MAX_ZONES as MAX_ZONES
from park.components.cloud_rules import account_id as account_id
from park.components.cloud_rules import aws_problems as aws_problems
from park.components.cloud_rules import cloud_problems as cloud_problems
from park.components.cloud_rules import filestore_capacity_problem as filestore_capacity_problem
from park.components.cloud_rules import fsx_capacity_problem as fsx_capacity_problem
from park.components.cloud_rules import gcp_problems as gcp_problems
from park.components.cloud_rules import kind_problems as kind_problems
from park.components.spec import Problem, StackSpec

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
        lines = "\n".join(str(p) for p in problems)
        raise pulumi.RunError(f"stack config not ready for `pulumi up`:\n{lines}")
