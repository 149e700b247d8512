"""The vocabulary of the conformance suite: checks, their outcomes, and how a check reports one.

A check is a named claim about the stack (``workloads.train``: "a distributed PyTorch training job runs
to completion and reaches its accuracy bar"). Each target (local, kubernetes) implements the checks that
make sense for it; a check a target does not implement is reported as *not applicable*, never as passed.

A check function returns a :class:`Passed` with one sentence of what it proved, or raises
:class:`CheckFailed`, :class:`NotApplicable` or :class:`Skipped`, each with a reason a person can act on.
Nothing in this module starts anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not_applicable"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @property
    def finished(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)


DESELECTED = "deselected by --only / --skip"
"""The reason of a check left out by the selection (reported as skipped so the evidence lists the suite)."""

LAYERS = (
    "infrastructure",
    "accelerators",
    "operators",
    "scheduling",
    "storage",
    "workloads",
    "observability",
)
"""Layers in the order they run: each one leans on the ones before it. Observability runs last so it can
look for the metrics the workloads produced."""


@dataclass(frozen=True)
class Check:
    """One named claim about the stack, independent of the target that proves it."""

    name: str
    """``<layer>.<what>``, e.g. ``workloads.train``; the id in every piece of evidence."""
    proves: str
    """One sentence: what a pass means."""
    requirements: tuple[str, ...] = ()
    """Kubernetes AI Conformance requirement ids this check is evidence for."""
    needs: tuple[str, ...] = ()
    """Checks that must pass first; selecting this check selects them too."""
    gpu: bool = False
    """Needs an NVIDIA GPU: not applicable without one, unless ``--gpu require``."""
    destructive: bool = False
    """Evicts or preempts workloads, or adds paid nodes: runs only with ``--destructive``."""
    timeout_s: float = 120.0
    """Longest this check may take (bounded further by the run's ``--timeout``)."""

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]


@dataclass(frozen=True)
class Passed:
    """What a check function returns when the claim holds."""

    summary: str
    """What was proven, with the measured figures (``accuracy 0.94 >= 0.80 after 2 epochs on CPU``)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Measurements kept in results.json."""


class CheckOutcome(Exception):
    """Base of the exceptions a check raises to end with something other than a pass."""

    status: Status

    def __init__(self, reason: str, details: dict[str, Any] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.details = details or {}


class CheckFailed(CheckOutcome):
    """The claim does not hold; ``reason`` says what was seen and, where possible, what to do."""

    status = Status.FAILED


class NotApplicable(CheckOutcome):
    """The claim does not apply to this target or stack (a cluster check on the local target, a GPU
    check on a CPU-only stack)."""

    status = Status.NOT_APPLICABLE


class Skipped(CheckOutcome):
    """The check could apply but was not run (deselected, destructive without opt-in, a needed check
    failed)."""

    status = Status.SKIPPED


@dataclass
class CheckResult:
    check: Check
    status: Status = Status.PENDING
    reason: str = ""
    """For a pass: what was proven. Otherwise: why not, and what to do."""
    details: dict[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    """Seconds since the epoch."""
    duration_s: float = 0.0
    selected_as_dependency: bool = False
    """Pulled in because a selected check needs it."""

    @property
    def name(self) -> str:
        return self.check.name

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.check.name,
            "layer": self.check.layer,
            "status": self.status.value,
            "reason": self.reason,
            "proves": self.check.proves,
            "requirements": list(self.check.requirements),
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "selected_as_dependency": self.selected_as_dependency,
            "details": self.details,
        }
