"""The Kubernetes AI Conformance requirements this suite gathers evidence for, and how a requirement's
status follows from the statuses of the checks that support it.

Ids and levels follow the CNCF checklist (github.com/cncf/k8s-ai-conformance, ``docs/AIConformance-*``).
A requirement is *passed* when at least one supporting check passed and none failed (skipped ones are
listed beside it); a single failure makes it *failed*; when every supporting check was not applicable it
is *not applicable*; when none ran it is *not run*. A requirement no check of this suite covers says so
(*not covered*) instead of claiming anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from park.conformance.model import CheckResult, Status


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    title: str
    what: str


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "accelerator_metrics",
        "MUST",
        "Accelerator metrics",
        "an accelerator metrics solution exposes per-accelerator utilization and memory metrics",
    ),
    Requirement(
        "ai_service_metrics",
        "MUST",
        "AI service metrics",
        "a monitoring system discovers and collects Prometheus-format metrics from AI workloads",
    ),
    Requirement(
        "gang_scheduling",
        "MUST",
        "Gang scheduling",
        "a gang scheduler admits a distributed workload all-or-nothing",
    ),
    Requirement(
        "cluster_autoscaling",
        "MUST",
        "Cluster autoscaling",
        "node groups of an accelerator type scale up for pending pods that request it",
    ),
    Requirement(
        "pod_autoscaling",
        "MUST",
        "Pod autoscaling",
        "workloads on accelerators scale their pods on AI-relevant metrics",
    ),
    Requirement(
        "robust_controller",
        "MUST",
        "Robust controller",
        "a complex AI operator with CRDs runs, and its custom resources are reconciled",
    ),
    Requirement(
        "secure_accelerator_access",
        "MUST",
        "Secure accelerator access",
        "accelerators are reachable only through the device plugin, isolated between pods",
    ),
    Requirement(
        "ai_inference",
        "MUST",
        "AI inference",
        "an inference service answers an OpenAI-protocol request through the platform",
    ),
)

REQUIREMENT_IDS = tuple(r.id for r in REQUIREMENTS)

NOT_COVERED = "not_covered"
NOT_RUN = "not_run"


LOCAL_NOTE = (
    "the local target runs no Kubernetes platform, so its results are not AI-conformance evidence; "
    "run --target kubernetes against the cluster to certify"
)


def requirement_status(
    requirement: Requirement, results: list[CheckResult], platform_under_test: bool = True
) -> tuple[str, list[CheckResult]]:
    """(status, supporting results) of one requirement: passed / failed / not_applicable / not_run /
    not_covered. Without a platform under test (the local target) every requirement is not applicable:
    a workload answering on a laptop says nothing about a cluster."""
    supporting = [r for r in results if requirement.id in r.check.requirements]
    if not supporting:
        return NOT_COVERED, supporting
    if not platform_under_test:
        return Status.NOT_APPLICABLE.value, supporting
    statuses = {r.status for r in supporting}
    if Status.FAILED in statuses:
        return Status.FAILED.value, supporting
    if Status.PASSED in statuses:
        return Status.PASSED.value, supporting
    if statuses == {Status.NOT_APPLICABLE}:
        return Status.NOT_APPLICABLE.value, supporting
    return NOT_RUN, supporting
