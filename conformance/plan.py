"""What a kubernetes conformance run would submit, which pools that makes the autoscaler grow, and what the
added nodes cost per hour: printed before a run starts, and alone by ``park conformance --dry-run``.

The objects come from the cluster checks' own builders (``creates=`` of each check in
:mod:`park.conformance.layers`, through :meth:`~park.conformance.targets.KubernetesTarget.planned_objects`),
so the plan shows exactly what a run would create. The node count is an estimate from the stack, not from
the cluster: each pool is taken to run its ``minNodes`` when the run starts, with a node's allocatable room as
the workload builders size pods (:func:`~park.workloads.cluster.node_allocatable`, GPUs x time-slices), and
the checks' pods are packed one check at a time, first fit by decreasing size, since every check deletes
what it made when it ends. A pool whose busiest check needs more nodes than ``minNodes`` scales up by the
difference (at most to ``maxNodes``); :func:`park.components.cost.scale_up_cost` prices that. Ray heads
share the system pool with the add-ons, whose room is not known here; a full system pool adds a node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from kubernetes.utils.quantity import parse_quantity
from park.components import cost
from park.components.spec import (
    GPU_RESOURCE,
    POOL_LABEL,
    NodePool,
    SpecError,
    StackSpec,
    load_stack_file,
    project_root,
    resolve_stack_file,
)
from park.conformance.checks import CHECKS, Selection
from park.conformance.context import OverrideError, RunContext, check_overrides
from park.conformance.model import Check, NotApplicable
from park.conformance.targets import LOCAL_CHECKS, KubernetesTarget
from park.workloads.cluster import node_allocatable

RUN, SKIPPED, NOT_APPLICABLE, DESELECTED = "run", "skipped", "not applicable", "deselected"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
KUBERAY_SUBMITTER = {"cpu": "500m", "memory": "200Mi"}
"""KubeRay v1.7.0 ``common/job.go`` ``GetDefaultSubmitterContainer`` requests: a RayJob without a
``submitterPodTemplate`` gets this pod, with no nodeSelector."""
KUBERAY_AUTOSCALER = {"cpu": "500m", "memory": "512Mi"}
"""The autoscaler sidecar KubeRay v1.7.0 adds to the head of an autoscaling cluster (its default requests)."""


@dataclass(frozen=True)
class PodGroup:
    """``count`` identical pods of one object: what each requests and the pool its nodeSelector names."""

    role: str
    count: int
    pool: str | None
    """None: no nodeSelector; Kueue or the scheduler picks the nodes."""
    cpu: Decimal
    memory: Decimal
    """Bytes."""
    gpus: int

    @property
    def shape(self) -> str:
        cpu = f"{_plain(self.cpu)} CPU" if self.cpu >= 1 else f"{_plain(self.cpu * 1000)}m CPU"
        memory = (
            f"{_plain(self.memory / 2**30)}Gi"
            if self.memory % 2**30 == 0
            else f"{_plain(self.memory / 2**20)}Mi"
        )
        return ", ".join([cpu, memory] + ([f"{self.gpus} {GPU_RESOURCE}"] if self.gpus else []))


def _plain(value: Decimal) -> str:
    """1, 1.5, 200: no exponent, no trailing zeros."""
    text = f"{value.normalize():f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class PlannedObject:
    check: str
    kind: str
    name: str
    namespace: str
    queue: str | None
    priority: str | None
    pods: tuple[PodGroup, ...]
    note: str = ""
    """Why it runs no pod, when it does not."""

    @property
    def runs_pods(self) -> bool:
        return not self.note


@dataclass(frozen=True)
class PlannedCheck:
    name: str
    status: str
    reason: str = ""
    objects: tuple[PlannedObject, ...] = ()


@dataclass(frozen=True)
class PoolLoad:
    pool: str
    instance_type: str
    capacity: str
    min_nodes: int
    max_nodes: int
    peak_nodes: int
    """Nodes the busiest check needs on this pool (0: nothing of the run lands here)."""
    busiest: str | None
    too_big: tuple[str, ...] = ()
    """Pods no node of the pool can hold: they stay Pending and the autoscaler adds nothing for them."""

    @property
    def added(self) -> int:
        return max(0, min(self.peak_nodes, self.max_nodes) - self.min_nodes)


@dataclass(frozen=True)
class Plan:
    stack: str
    stack_path: str
    spec: StackSpec
    destructive: bool
    checks: tuple[PlannedCheck, ...]
    pools: tuple[PoolLoad, ...]
    scale_up: cost.ScaleUp
    proving_pool: NodePool
    with_destructive: Plan | None = field(default=None, repr=False)
    """The same run with ``--destructive``, when it was not given and a destructive check is selected."""

    @property
    def added(self) -> dict[str, int]:
        """Pool -> nodes the run adds above ``minNodes``."""
        return {p.pool: p.added for p in self.pools if p.added}

    @property
    def objects(self) -> list[PlannedObject]:
        return [o for c in self.checks if c.status == RUN for o in c.objects]

    def destructive_checks(self) -> list[str]:
        return [c.name for c in self.checks if c.status == SKIPPED and _check(c.name).destructive]

    # -- text --

    def sizing_line(self) -> str:
        pool = self.proving_pool
        if not pool.has_gpus:
            return (
                f"Train and batch run at the conformance size on CPU pool {pool.name} (the stack has no GPU "
                f"workers pool): two CPUs in all."
            )
        sharing = f", time-sliced x{pool.gpu_sharing.replicas}" if pool.gpu_sharing else ""
        capacity = "spot" if pool.spot else "on-demand"
        return (
            f"Train and batch run at the conformance size: one worker pod with one {GPU_RESOURCE}, two CPUs, "
            f"on {pool.name} ({self.spec.instance_type(pool)}, {self.spec.gpus_per_node(pool)} x "
            f"{pool.accelerator} per node{sharing}, {capacity}): the GPU pool with the fewest GPUs per node, "
            f"on-demand before spot (a reclaimed spot node would fail a check for a reason that is not the "
            f"platform's), then the cheaper node. The serving RayService runs as rendered, on its serving "
            f"pool at its models' minimum replicas."
        )

    def cost_lines(self) -> list[str]:
        """The nodes the run adds and their $/h (components/cost.py), and what ``--destructive`` would add."""
        indent = lambda summary: [f"  {line}" for line in summary.splitlines()]
        lines = [
            "Nodes this run adds above minNodes, at list prices (park cost):",
            *indent(self.scale_up.summary()),
        ]
        extra = self.with_destructive
        if extra is not None:
            names = ", ".join(self.destructive_checks())
            grows = any(n > self.added.get(p, 0) for p, n in extra.added.items())
            if grows:
                lines += [
                    f"--destructive adds {names}; the run then adds:",
                    *indent(extra.scale_up.summary()),
                ]
            else:
                lines.append(f"--destructive adds {names}; no further node")
        return lines

    def lines(self) -> list[str]:
        """The whole plan, as ``--dry-run`` prints it."""
        title = (
            f"Conformance plan for --target kubernetes --stack {self.stack} ({self.stack_path}); nothing "
            f"was contacted or created."
        )
        out = [title, "", "Checks, in run order:"]
        width = max(len(c.status) for c in self.checks)
        for check in self.checks:
            if check.status == DESELECTED:
                continue
            reason = f": {check.reason}" if check.reason else ""
            out.append(f"  {check.status:<{width}}  {check.name}{reason}")
        out += [
            "",
            "What the checks submit (requests per pod; each check deletes what it made when it ends):",
        ]
        for obj in self.objects:
            where = f"namespace {obj.namespace}"
            if obj.queue:
                where += f", queue {obj.queue}"
            if obj.priority:
                where += f", priority {obj.priority}"
            out.append(f"  {obj.check}: {obj.kind} {obj.name} ({where})")
            if obj.note:
                out.append(f"      {obj.note}")
                continue
            for group in obj.pods:
                pool = group.pool or "no pool named (Kueue picks the flavor)"
                out.append(f"      {group.role:<10} {group.count} x {group.shape:<34} on {pool}")
        out += [
            "",
            self.sizing_line(),
            "",
            "Nodes per pool (each pool running its minNodes when the run starts; one check's pods at a time):",
        ]
        rows = [("pool", "instance", "capacity", "min", "max", "peak", "added", "first check at peak")]
        rows += [
            (
                p.pool,
                p.instance_type,
                p.capacity,
                str(p.min_nodes),
                str(p.max_nodes),
                str(p.peak_nodes),
                f"+{p.added}",
                p.busiest or "-",
            )
            for p in self.pools
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out += ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
        if self.spec.cloud == "kind":
            out.append(
                "  kind: no autoscaler and no bill; kind nodes share this machine, so the counts (from the "
                "catalog's kind-node size) are only indicative"
            )
        for pool in self.pools:
            out += [
                f"  {pool.pool}: {what} is bigger than a node: it stays Pending, no node is added for it"
                for what in pool.too_big
            ]
            if pool.peak_nodes > pool.max_nodes and self.spec.cloud != "kind":
                out.append(
                    f"  {pool.pool}: the busiest check needs {pool.peak_nodes} nodes, maxNodes is "
                    f"{pool.max_nodes}: some pods wait for others to finish"
                )
        out += ["", *self.cost_lines()]
        return out

    def announcement(self) -> list[str]:
        """The lines printed before a run starts."""
        gpus = "one GPU" if self.proving_pool.has_gpus else "CPUs only"
        return [
            f"Train and batch run with {gpus} on pool {self.proving_pool.name}.",
            *self.cost_lines(),
            f"Full plan: park conformance --target kubernetes --stack {self.stack} --dry-run",
        ]

    def facts(self) -> dict:
        """For results.json: what the run was expected to add and cost."""
        return {
            "planned_scale_up": dict(self.added),
            "planned_scale_up_usd_per_hour": self.scale_up.usd_per_hour,
            "planned_scale_up_priced": self.scale_up.complete,
        }


def _check(name: str) -> Check:
    return next(c for c in CHECKS if c.name == name)


# --- pods of an object ------------------------------------------------------------------------------


def _requests(pod: dict) -> tuple[Decimal, Decimal, int]:
    cpu = memory = Decimal(0)
    gpus = 0
    for container in pod.get("containers", []):
        resources = container.get("resources", {})
        merged = {**resources.get("limits", {}), **resources.get("requests", {})}
        cpu += parse_quantity(merged.get("cpu", 0))
        memory += parse_quantity(merged.get("memory", 0))
        gpus += int(parse_quantity(merged.get(GPU_RESOURCE, 0)))
    return cpu, memory, gpus


def _group(role: str, count: int, pod: dict) -> PodGroup:
    cpu, memory, gpus = _requests(pod)
    return PodGroup(role, count, pod.get("nodeSelector", {}).get(POOL_LABEL), cpu, memory, gpus)


def _ray_cluster(cluster: dict) -> list[PodGroup]:
    head = cluster["headGroupSpec"]["template"]["spec"]
    if cluster.get("enableInTreeAutoscaling"):
        head = {
            **head,
            "containers": [
                *head["containers"],
                {"name": "autoscaler", "resources": {"requests": KUBERAY_AUTOSCALER}},
            ],
        }
    groups = [_group("head", 1, head)]
    for group in cluster.get("workerGroupSpecs", []):
        count = group.get("replicas", 1) * max(1, group.get("numOfHosts", 1))
        groups.append(_group("workers", count, group["template"]["spec"]))
    return groups


def pod_groups(obj: dict) -> list[PodGroup]:
    """The pods ``obj`` makes at its initial size (an autoscaling RayService at its starting replicas)."""
    kind, spec = obj["kind"], obj["spec"]
    if kind == "Pod":
        return [_group("pod", 1, spec)]
    if kind == "Job":
        return [_group("pod", spec.get("parallelism", 1), spec["template"]["spec"])]
    if kind == "RayService":
        return _ray_cluster(spec["rayClusterConfig"])
    if kind == "RayJob":
        template = (spec.get("submitterPodTemplate") or {}).get("spec") or {
            "containers": [{"name": "ray-job-submitter", "resources": {"requests": KUBERAY_SUBMITTER}}]
        }
        return [*_ray_cluster(spec["rayClusterSpec"]), _group("submitter", 1, template)]
    raise ValueError(f"no pod model for kind {kind}")


def planned_object(check: str, obj: dict, note: str = "") -> PlannedObject:
    labels = obj["metadata"].get("labels", {})
    return PlannedObject(
        check,
        obj["kind"],
        obj["metadata"]["name"],
        obj["metadata"].get("namespace", "-"),
        labels.get(QUEUE_LABEL),
        labels.get(PRIORITY_LABEL),
        tuple(pod_groups(obj)),
        note,
    )


# --- nodes ----------------------------------------------------------------------------------------------


def nodes_needed(spec: StackSpec, pool: NodePool, pods: list[tuple[str, PodGroup]]) -> tuple[int, list[str]]:
    """Nodes of ``pool`` that hold ``pods`` (first fit by decreasing size), and the pods no node can hold."""
    cpus, mem_gib = node_allocatable(spec, pool)
    room = (Decimal(str(cpus)), Decimal(str(mem_gib)) * 2**30, spec.gpu_slots_per_node(pool))
    singles = [(what, g) for what, g in pods for _ in range(g.count)]
    singles.sort(key=lambda item: (item[1].gpus, item[1].cpu, item[1].memory), reverse=True)
    nodes: list[list] = []
    too_big = []
    for what, pod in singles:
        need = (pod.cpu, pod.memory, pod.gpus)
        if any(n > r for n, r in zip(need, room)):
            too_big.append(f"{what} ({pod.shape})")
            continue
        node = next((n for n in nodes if all(want <= free for want, free in zip(need, n))), None)
        if node is None:
            node = list(room)
            nodes.append(node)
        for i, want in enumerate(need):
            node[i] -= want
    return len(nodes), sorted(set(too_big))


def pool_loads(spec: StackSpec, checks: list[PlannedCheck]) -> list[PoolLoad]:
    loads = []
    for pool in spec.node_pools:
        peak, busiest, too_big = 0, None, set()
        for check in checks:
            if check.status != RUN:
                continue
            pods = [
                (f"{o.check} {o.kind} {g.role}", g)
                for o in check.objects
                if o.runs_pods
                for g in o.pods
                if g.pool == pool.name
            ]
            needed, big = nodes_needed(spec, pool, pods)
            too_big |= set(big)
            if needed > peak:
                peak, busiest = needed, check.name
        priced = cost.pool_cost(spec, pool)
        loads.append(
            PoolLoad(
                pool.name,
                priced.instance_type,
                "local" if priced.free else priced.capacity,
                pool.min_nodes,
                pool.max_nodes,
                peak,
                busiest,
                tuple(sorted(too_big)),
            )
        )
    return loads


# --- the plan ---------------------------------------------------------------------------------------------


def _planned_check(target, check: Check, selection: Selection, destructive: bool) -> PlannedCheck:
    """Mirrors :meth:`park.conformance.runner.Runner._precondition`, then asks the target what it builds."""
    if check.name in selection.deselected:
        return PlannedCheck(check.name, DESELECTED)
    if target.implementation(check) is None:
        return PlannedCheck(check.name, NOT_APPLICABLE, target.not_applicable_reason(check))
    if check.gpu and target.ctx.options.gpu == "off":
        return PlannedCheck(check.name, NOT_APPLICABLE, "needs a GPU and the run was started with --gpu off")
    if check.gpu and not target.spec.has_gpus:
        return PlannedCheck(check.name, NOT_APPLICABLE, "the stack has no GPU pool")
    if check.destructive and not destructive:
        return PlannedCheck(check.name, SKIPPED, "destructive; --destructive runs it")
    try:
        built = target.planned_objects(check.name)
    except NotApplicable as err:
        return PlannedCheck(check.name, NOT_APPLICABLE, str(err))
    return PlannedCheck(
        check.name, RUN, "", tuple(planned_object(check.name, obj, note) for obj, note in built)
    )


def build_plan(target, selection: Selection, *, destructive: bool | None = None) -> Plan:
    """The plan of a run of ``selection`` on the kubernetes ``target`` (live or
    :meth:`~park.conformance.targets.KubernetesTarget.offline`); ``destructive`` defaults to the run's option."""
    options = target.ctx.options
    destructive = options.destructive if destructive is None else destructive
    checks = [_planned_check(target, check, selection, destructive) for check in CHECKS]
    loads = pool_loads(target.spec, checks)
    added = {p.pool: p.added for p in loads if p.added}
    stack = options.stack or target.spec.cluster_name
    plan = Plan(
        stack,
        target.stack_path,
        target.spec,
        destructive,
        tuple(checks),
        tuple(loads),
        cost.scale_up_cost(target.spec, added),
        target.proving_pool(),
    )
    if not destructive and plan.destructive_checks():
        full = build_plan(target, selection, destructive=True)
        plan = Plan(
            plan.stack,
            plan.stack_path,
            plan.spec,
            False,
            plan.checks,
            plan.pools,
            plan.scale_up,
            plan.proving_pool,
            with_destructive=full,
        )
    return plan


def _shown(path) -> str:
    """A shipped stack as ``stacks/Pulumi.<name>.yaml``, the same on every clone; other files as given."""
    try:
        return str(Path(path).resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def dry_run(options, selection: Selection) -> tuple[int, list[str]]:
    """``park conformance --dry-run``: (exit code, lines to print). Loads the stack and builds the objects;
    contacts no cluster."""
    if options.target != "kubernetes":
        names = ", ".join(c.name for c in selection.checks if c.name in LOCAL_CHECKS)
        return 0, [
            (
                f"--target local runs {names} with a Ray head on this machine; it creates no cluster "
                f"objects and adds no nodes: no cloud cost."
            )
        ]
    if not options.stack:
        return 2, [
            (
                "error: --target kubernetes needs --stack (the pools, queues, storage and models the "
                "cluster is checked against), e.g. --stack aws"
            )
        ]
    try:
        path = resolve_stack_file(options.stack)
        spec = load_stack_file(path)
        check_overrides(options, spec)
    except SpecError as err:
        return 2, [f"error: --stack {options.stack}: {problem}" for problem in err.problems]
    except OverrideError as err:
        return 2, [f"error: {err} (stack {options.stack})"]
    ctx = RunContext(options)
    try:
        return 0, build_plan(KubernetesTarget.offline(ctx, spec, _shown(path)), selection).lines()
    finally:
        ctx.close()
