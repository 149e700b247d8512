"""What one conformance run knows: its options, its run id, its scratch folder, its log and its cleanup.

Everything a run creates carries the run id in its name (a ``park-conf-<id>`` namespace on clusters, a
``pc-<id>-*`` temp folder holding the Ray session locally) and is registered with
:meth:`RunContext.on_cleanup`,
so :meth:`RunContext.close` removes it at the end — on success, failure, Ctrl-C or SIGTERM — unless
``--keep`` was given. Two runs never share a name, a folder or a port.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

GpuMode = Literal["auto", "require", "off"]
TargetName = Literal["local", "kubernetes"]

LOGGER_NAME = "park.conformance"


@dataclass(frozen=True)
class Injections:
    """Test-only faults, to prove the suite notices broken workloads (see docs/conformance.md).

    Set through hidden CLI options or the environment variables named in :mod:`park.conformance.cli`.
    """

    train_min_accuracy: float | None = None
    """Raise the training accuracy bar (e.g. 1.01) so the run cannot reach it."""
    batch_drop_rows: int | None = None
    """Make the batch workload silently drop this many rows (its ``--drop-rows-for-testing``)."""

    @property
    def active(self) -> list[str]:
        out = []
        if self.train_min_accuracy is not None:
            out.append(f"train min accuracy {self.train_min_accuracy}")
        if self.batch_drop_rows is not None:
            out.append(f"batch drops {self.batch_drop_rows} rows")
        return out


@dataclass(frozen=True)
class RunOptions:
    target: TargetName = "local"
    stack: str | None = None
    """Stack name under stacks/ or a path to a Pulumi.<stack>.yaml. Local default: the kind stack."""
    kubeconfig: str | None = None
    context: str | None = None
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    out_dir: Path | None = None
    """Default: ./conformance-<run id>/ in the working folder."""
    model: str | None = None
    """Serve this model (a local folder) instead of a freshly built tiny Llama."""
    gpu: GpuMode = "auto"
    timeout_s: float = 1800.0
    """Budget of the whole run; each check also has its own limit."""
    keep: bool = False
    destructive: bool = False
    injections: Injections = Injections()
    team: str | None = None
    """Send every workload and probe to this team's LocalQueue and namespace. Default: each reference workload
    goes where its builder puts it (serving to the serving team, training and batch to a research team)."""
    priority: str | None = None
    """WorkloadPriorityClass of every workload. Default: the team's ``defaultPriority``."""


class OverrideError(ValueError):
    """``--team`` / ``--priority`` name something the stack does not define."""


def check_overrides(options: RunOptions, spec: Any) -> None:
    """Refuse a ``--team`` / ``--priority`` the stack does not define, naming the ones it does; called as
    soon as the stack is loaded, before any cluster is contacted or Ray started."""
    problems = []
    teams = [team.name for team in spec.teams]
    if options.team is not None and options.team not in teams:
        problems.append(f"--team {options.team!r} is not a team of the stack; known: {', '.join(teams)}")
    priorities = list(spec.priority_class_names)
    if options.priority is not None and options.priority not in priorities:
        problems.append(
            f"--priority {options.priority!r} is not a priority class of the stack; known: "
            f"{', '.join(priorities)}"
        )
    if problems:
        raise OverrideError("; ".join(problems))


def workdir_prefix(run_id: str) -> str:
    """``pc-<run id without its date>-``: a run's scratch folder and every process started in it carry this.
    Short, because Ray puts socket paths (107 bytes at most) under the folder."""
    return f"pc-{run_id.split('-', 1)[1]}-"


def new_run_id() -> str:
    """Sortable and unique across concurrent runs: ``20261122-193802-3fa1c2d4``; a valid DNS label part.
    32 random bits: 50 runs started in one second collide with odds of 3e-7 (16 bits made that 2%)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


@dataclass
class RunContext:
    options: RunOptions
    run_id: str = field(default_factory=new_run_id)
    started_at: float = field(default_factory=time.time)
    facts: dict[str, Any] = field(default_factory=dict)
    """What the run learned and later checks and the report use: GPU count, CPU fallback, versions."""
    _workdir: Path | None = None
    _cleanups: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _closed: bool = False

    def __post_init__(self) -> None:
        self.log = logging.getLogger(f"{LOGGER_NAME}.run.{self.run_id}")
        self.log.setLevel(logging.DEBUG)
        self.log.propagate = False

    @property
    def name(self) -> str:
        """``park-conf-<run id>``: the prefix of every name this run gives to something it creates."""
        return f"park-conf-{self.run_id}"

    @property
    def deadline(self) -> float:
        return self.started_at + self.options.timeout_s

    def remaining_s(self) -> float:
        return self.deadline - time.time()

    @property
    def workdir(self) -> Path:
        """The run's scratch folder (Ray session, storage, models, summaries), created on first use."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix(self.run_id)))
            self.log.info("scratch folder %s", self._workdir)
            self.on_cleanup(
                f"remove scratch folder {self._workdir}",
                lambda path=self._workdir: shutil.rmtree(path, ignore_errors=True),
            )
        return self._workdir

    def on_cleanup(self, what: str, action: Callable[[], Any]) -> None:
        """Register an undo step; steps run newest first at :meth:`close`, each even if another fails."""

        def step() -> None:
            if self.options.keep:
                self.log.info("kept (--keep): %s", what)
                return
            self.log.info("cleanup: %s", what)
            try:
                action()
            except Exception as err:  # noqa: BLE001 - one failed undo must not stop the others
                self.log.warning("cleanup of %s failed: %s", what, err)

        self._cleanups.callback(step)

    def close(self) -> None:
        """Run every cleanup step once; safe to call again (from atexit after a finally)."""
        if self._closed:
            return
        self._closed = True
        self._cleanups.close()
