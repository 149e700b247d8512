"""The kubernetes target: checks a live cluster layer by layer, then runs the reference workloads through
Kueue. Thin on purpose: reading and creating objects goes through :class:`~park.conformance.kube_api.KubeApi`
(the official client), commands inside pods through pytest-testinfra's ``kubectl`` backend, and every
judgement is a pure function in :mod:`park.conformance.judgements`, unit-tested against recorded responses.

Everything a run creates is named ``park-conf-<run id>-<what>``, labelled
``park-stack.io/conformance-run=<run id>`` and is deleted at the end unless ``--keep``. Each reference
workload goes to its own team's namespace (the builders' choice: serving on the serving team, training and
batch on a research team), or to ``--team``; probes and the scheduling checks use ``--team`` or the stack's
first team (the namespace its ClusterQueue admits, holding the Ray service account and the storage
ConfigMap). Nothing here runs without a reachable API server: :meth:`KubernetesTarget.connect` fails
first, with the address it tried.

What a check submits is built by one method per check (:meth:`KubernetesTarget.planned_objects`), so the plan
(:mod:`park.conformance.plan`, ``--dry-run``) sees exactly the objects a run would create. Sizes are the
smallest that prove the layer: train and batch with ``size="conformance"`` (one GPU on the cheapest GPU pool,
:func:`~park.workloads.cluster.proving_pool`), probes and the scheduling checks' pods pinned to a pool, and
each check deletes what it made when it ends (unless ``--keep``), so the next one starts on free nodes.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from park.components.spec import (
    GPU_RESOURCE,
    POOL_LABEL,
    NodePool,
    StackSpec,
    Team,
    load_stack_file,
    resolve_stack_file,
)
from park.conformance import judgements as judge
from park.conformance.checks import BY_NAME
from park.conformance.context import RunContext, check_overrides
from park.conformance.kube_api import KubeApi, KubeError
from park.conformance.model import Check, CheckFailed, NotApplicable, Passed

RUN_LABEL = "park-stack.io/conformance-run"
POLL_S = 3.0
POD_START_S = 300.0
KUBERAY_CRDS = {"rayclusters.ray.io": "v1", "rayjobs.ray.io": "v1", "rayservices.ray.io": "v1"}
KUEUE_CRDS = {
    f"{plural}.kueue.x-k8s.io": "v1beta2"
    for plural in ("clusterqueues", "localqueues", "resourceflavors", "workloads", "workloadpriorityclasses")
}
GPU_METRICS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED")


class TargetUnavailable(RuntimeError):
    """No cluster to check: no kubeconfig, or the API server does not answer."""


def wait_until(
    probe: Callable[[], tuple[bool, str]], timeout_s: float, what: str, poll_s: float | None = None
) -> str:
    """Call ``probe`` until it reports done (every ``poll_s``, default :data:`POLL_S`); its description is
    returned, or named in the failure."""
    poll_s = POLL_S if poll_s is None else poll_s
    deadline = time.monotonic() + timeout_s
    done, seen = probe()
    while not done and time.monotonic() < deadline:
        time.sleep(poll_s)
        done, seen = probe()
    if not done:
        raise CheckFailed(f"{what} not reached within {timeout_s:.0f} s; last seen: {seen}")
    return seen


KUBERNETES_CHECKS: dict[str, str] = {
    "infrastructure.nodes": "check_nodes",
    "infrastructure.node-labels-taints": "check_labels_taints",
    "infrastructure.gpus-allocatable": "check_gpus_allocatable",
    "infrastructure.cluster-autoscaling": "check_cluster_autoscaling",
    "accelerators.gpu-visible": "check_gpu_visible",
    "accelerators.gpu-isolation": "check_gpu_isolation",
    "accelerators.ray-shm": "check_ray_shm",
    "operators.kuberay": "check_kuberay",
    "operators.kueue": "check_kueue",
    "scheduling.queue-admission": "check_queue_admission",
    "scheduling.gang-admission": "check_gang_admission",
    "scheduling.preemption": "check_preemption",
    "storage.read-write": "check_storage",
    "workloads.train": "check_train",
    "workloads.batch": "check_batch",
    "workloads.serve": "check_serve",
    "observability.prometheus-targets": "check_prometheus_targets",
    "observability.gpu-metric": "check_gpu_metric",
}
"""Check name -> the method of the target that proves it; every other check is not applicable here."""


class KubernetesTarget:
    name = "kubernetes"
    platform_under_test = True

    def __init__(
        self,
        ctx: RunContext,
        api: KubeApi | None,
        spec: StackSpec,
        stack_path: str,
        server: dict,
        kubeconfig: str | None = None,
        context: str | None = None,
    ):
        from park.workloads.cluster import team_for

        self.ctx = ctx
        self.api = api
        self.spec = spec
        self.stack_path = stack_path
        self.server = server
        self.kubeconfig = kubeconfig
        self.context = context
        self.team = team_for(spec, ctx.options.team)
        """Where probes and the scheduling checks run: ``--team``, else the stack's first team."""
        self.namespace = self.team.namespace_name
        self._nodes: dict | None = None

    # -- construction --

    @classmethod
    def connect(cls, ctx: RunContext) -> KubernetesTarget:
        """Load the stack and the kubeconfig, and make sure the API server answers."""
        from kubernetes import config as kube_config
        from kubernetes.config.config_exception import ConfigException

        if not ctx.options.stack:
            raise TargetUnavailable(
                "--target kubernetes needs --stack (the pools, queues, storage and models the "
                "cluster is checked against), e.g. --stack aws"
            )
        path = resolve_stack_file(ctx.options.stack)
        spec = load_stack_file(path)
        check_overrides(ctx.options, spec)  # before any connection: a typo'd --team is a usage error
        context = ctx.options.context or (spec.context_name if spec.cloud == "kind" else None)
        try:
            api_client = kube_config.new_client_from_config(
                config_file=ctx.options.kubeconfig, context=context, persist_config=False
            )
        except (ConfigException, OSError, TypeError) as err:
            where = ctx.options.kubeconfig or "$KUBECONFIG or ~/.kube/config"
            raise TargetUnavailable(
                f"no usable kubeconfig at {where} (context {context or 'current'}): {err}; "
                f"pass --kubeconfig / --context"
            ) from None
        if context is None:  # name the context the kubeconfig selects, for messages and the evidence
            try:
                context = kube_config.list_kube_config_contexts(ctx.options.kubeconfig)[1]["name"]
            except (ConfigException, OSError, KeyError, TypeError):
                context = None
        api = KubeApi(api_client)
        try:
            server = api.version()
        except KubeError as err:
            raise TargetUnavailable(
                f"cannot reach the Kubernetes API at {api.host} (context {context or 'current'}): {err}"
            ) from None
        ctx.log.info("connected to %s: Kubernetes %s", api.host, server.get("gitVersion"))
        return cls(ctx, api, spec, str(path), server, ctx.options.kubeconfig, context)

    @classmethod
    def offline(cls, ctx: RunContext, spec: StackSpec, stack_path: str) -> KubernetesTarget:
        """A target that only builds objects (for the plan): no API client; each pool is taken to run its
        ``minNodes`` Ready nodes."""
        return cls(ctx, None, spec, stack_path, {})

    # -- Target protocol --

    def implementation(self, check: Check) -> Callable[[RunContext], Passed] | None:
        method = KUBERNETES_CHECKS.get(check.name)
        return getattr(self, method) if method else None

    def not_applicable_reason(self, check: Check) -> str:
        if check.name == "infrastructure.host":
            return "the kubernetes target checks the cluster's nodes instead (infrastructure.nodes)"
        if check.name == "operators.ray-head":
            return "on clusters KubeRay starts Ray heads (operators.kuberay)"
        if check.name == "observability.ray-metrics":
            return "on clusters Prometheus scrapes Ray (observability.prometheus-targets)"
        return "not implemented for the kubernetes target"

    def describe(self) -> dict[str, Any]:
        return {
            "api_server": self.api.host,
            "kubernetes_version": self.server.get("gitVersion"),
            "stack": self.stack_path,
            "context": self.context or "current",
            "namespace": self.namespace,
            "team": self.team.name,
            "priority": self.ctx.options.priority or "each team's defaultPriority",
            "accelerator": (
                f"GPU pools: {', '.join(p.name for p in self.spec.gpu_pools)}"
                if self.spec.has_gpus
                else "no GPU pools in the stack: workloads run on CPU"
            ),
            **self.ctx.facts,
        }

    # -- helpers --

    def object_name(self, what: str) -> str:
        return f"{self.ctx.name}-{what}"[:63].rstrip("-")

    def labelled(self, obj: dict) -> dict:
        obj["metadata"].setdefault("labels", {})[RUN_LABEL] = self.ctx.run_id
        return obj

    def create(self, obj: dict) -> dict:
        """Create ``obj`` (labelled with the run id) and register its deletion."""
        self.labelled(obj)
        created = self.api.create(obj)
        kind, name = obj["kind"], obj["metadata"]["name"]
        self.ctx.log.info("created %s %s/%s", kind, obj["metadata"].get("namespace", "-"), name)
        self.ctx.on_cleanup(
            f"delete {kind} {obj['metadata'].get('namespace', '-')}/{name}", lambda: self.api.delete(obj)
        )
        return created

    def nodes(self, fresh: bool = False) -> dict:
        if self._nodes is None or fresh:
            self._nodes = self.api.list("v1", "Node")
        return self._nodes

    def ready_nodes(self, pool: NodePool) -> int:
        """Ready nodes of ``pool`` now; offline, its ``minNodes``."""
        if self.api is None:
            return pool.min_nodes
        return judge.count_ready_nodes(self.nodes(fresh=True), pool.name)

    def gpu_pools_cheapest_first(self) -> list[NodePool]:
        from park.workloads.cluster import gpu_pools_by_cost

        ordered = gpu_pools_by_cost(self.spec)
        return ordered + [p for p in self.spec.gpu_pools if p not in ordered]

    def gpu_pool(self) -> NodePool:
        """Where the GPU probes run: the cheapest GPU pool (fewest GPUs per node, on-demand before spot) that
        has a Ready node, else the cheapest, so a probe never wakes a bigger pool. Not applicable on a stack
        without GPU pools."""
        if not self.spec.gpu_pools:
            raise NotApplicable(f"the stack {self.stack_path} has no GPU pool; the workloads run on CPU")
        ordered = self.gpu_pools_cheapest_first()
        if self.api is None:
            ready = {p.name for p in ordered if p.min_nodes > 0}
        else:
            pools = judge.nodes_by_pool(self.nodes())
            ready = {n for n, nodes in pools.items() if any(judge.condition_true(x, "Ready") for x in nodes)}
        return next((p for p in ordered if p.name in ready), ordered[0])

    def proving_pool(self) -> NodePool:
        """Where the scheduling checks' Ray workers and the conformance train / batch workers run."""
        from park.workloads.cluster import proving_pool

        return proving_pool(self.spec)

    def release(self, *objects: dict) -> None:
        """Delete what a check made as soon as it is done with it (best effort; the end-of-run cleanup stays
        as the safety net), so the next check finds the nodes free; ``--keep`` keeps it."""
        if self.ctx.options.keep or self.api is None:
            return
        for obj in objects:
            try:
                self.api.delete(obj)
            except KubeError as err:
                self.ctx.log.warning("could not delete %s %s: %s", obj["kind"], obj["metadata"]["name"], err)

    def probe_pod(
        self,
        what: str,
        pool: NodePool,
        image: str,
        gpus: int = 0,
        volumes: list | None = None,
        mounts: list | None = None,
    ) -> dict:
        from park.components.manifests.common import tolerations_for
        from park.workloads.cluster import CONTAINER_SECURITY_CONTEXT

        container: dict[str, Any] = {
            "name": "probe",
            "image": image,
            "command": ["sleep", "900"],
            "securityContext": CONTAINER_SECURITY_CONTEXT,
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "512Mi"},
            },
        }
        if gpus:
            container["resources"]["limits"][GPU_RESOURCE] = str(gpus)
        if mounts:
            container["volumeMounts"] = mounts
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.object_name(what), "namespace": self.namespace},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {POOL_LABEL: pool.name},
                "tolerations": tolerations_for(self.spec.node_taints(pool)),
                "containers": [container],
                "terminationGracePeriodSeconds": 5,
            },
        }
        if volumes:
            pod["spec"]["volumes"] = volumes
        return pod

    def run_pod(self, pod: dict, timeout_s: float = POD_START_S) -> Any:
        """Create the pod, wait until Running, and return a testinfra host that execs into it."""
        import testinfra

        self.create(pod)
        name = pod["metadata"]["name"]

        def running() -> tuple[bool, str]:
            live = self.api.get("v1", "Pod", name, self.namespace) or {}
            phase = live.get("status", {}).get("phase", "absent")
            if phase in ("Failed", "Succeeded"):
                raise CheckFailed(f"probe pod {self.namespace}/{name} ended {phase} before it could be used")
            waiting = [
                c.get("state", {}).get("waiting", {}).get("reason")
                for c in live.get("status", {}).get("containerStatuses", [])
                if c.get("state", {}).get("waiting")
            ]
            return phase == "Running", f"phase {phase} {', '.join(w for w in waiting if w)}"

        wait_until(running, timeout_s, f"probe pod {self.namespace}/{name} Running")
        kwargs = {"namespace": self.namespace, "container": "probe"}
        if self.kubeconfig:
            kwargs["kubeconfig"] = self.kubeconfig
        if self.context:
            kwargs["context"] = self.context
        return testinfra.get_host(f"kubectl://{name}", **kwargs)

    def planned_objects(self, check: str) -> list[tuple[dict, str]]:
        """What ``check`` would create, built by the same methods the check uses, each with a note (empty, or
        why it runs no pod); [] for checks that only read. May raise NotApplicable as the check would."""

        def autoscaling() -> list[dict]:
            pool = self.autoscaling_pool()
            return self.autoscaling_pods(pool, self.ready_nodes(pool))

        def gang() -> list[tuple[dict, str]]:
            oversized, fitting = self.gang_rayjobs()
            return [
                (oversized, "bigger than the cohort: Kueue admits none of it, no pod runs"),
                (fitting, ""),
            ]

        builders: dict[str, Callable[[], list]] = {
            "infrastructure.cluster-autoscaling": autoscaling,
            "accelerators.gpu-visible": lambda: [self.gpu_probe()],
            "accelerators.gpu-isolation": lambda: [self.isolation_probe()],
            "accelerators.ray-shm": lambda: [self.shm_probe()],
            "scheduling.queue-admission": lambda: [self.admission_job()],
            "scheduling.gang-admission": gang,
            "scheduling.preemption": lambda: list(self.preemption_jobs()[:2]),
            "storage.read-write": lambda: [self.storage_probe()],
            "workloads.train": lambda: [self.train_rayjob()],
            "workloads.batch": lambda: [self.batch_rayjob()],
            "workloads.serve": lambda: [self.serve_rayservice()],
        }
        if check not in builders:
            return []
        return [item if isinstance(item, tuple) else (item, "") for item in builders[check]()]

    def worker_template(self) -> dict:
        """The pod spec of a Ray worker as the conformance training RayJob renders it (pool, image, volumes,
        account)."""
        from park.workloads.train.manifest import build_rayjob

        rayjob = build_rayjob(self.spec, team=self.team, size="conformance")
        return rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]

    def remove_at_cleanup(self, uri: str) -> None:
        """Delete what the run wrote under ``uri`` in the stack's storage at the end (best effort: the runner
        may lack write access to the bucket; then the cleanup log says so)."""

        def remove() -> None:
            import pyarrow.fs as pafs
            from park.workloads import storage

            filesystem, path = storage.resolve(uri)
            info = filesystem.get_file_info(path)
            if info.type == pafs.FileType.Directory:
                filesystem.delete_dir(path)
            elif info.type == pafs.FileType.File:
                filesystem.delete_file(path)

        self.ctx.on_cleanup(f"remove {uri} from the stack's storage", remove)

    def workload_of(self, owner_kind: str, owner_name: str, namespace: str | None = None) -> dict | None:
        return judge.workload_for(
            self.api.list("kueue.x-k8s.io/v1beta2", "Workload", namespace or self.namespace),
            owner_kind,
            owner_name,
        )

    def workload_placement(self) -> dict[str, Any]:
        """``team`` / ``priority`` for the workload builders: the overrides, else None so each builder puts
        its workload where the stack expects it."""
        return {"team": self.ctx.options.team, "priority": self.ctx.options.priority}

    def team_of(self, rendered: dict) -> Team:
        """The team whose namespace a rendered workload lives in (its LocalQueue and quota)."""
        namespace = rendered["metadata"]["namespace"]
        return next(t for t in self.spec.teams if t.namespace_name == namespace)

    def _time_left(self, budget: float) -> float:
        return max(1.0, min(budget, self.ctx.remaining_s()))

    def _judged(self, judgement: judge.Judgement, summary: str) -> Passed:
        if not judgement.ok:
            raise CheckFailed("; ".join(judgement.problems), judgement.facts)
        return Passed(summary, judgement.facts)

    # -- infrastructure --

    def check_nodes(self, ctx: RunContext) -> Passed:
        result = judge.judge_nodes(self.spec, self.nodes(fresh=True))
        pools = ", ".join(
            f"{name} {fact['ready']}/{fact['min']}-{fact['max']}"
            for name, fact in result.facts.items()
            if isinstance(fact, dict)
        )
        return self._judged(result, f"Ready nodes per pool (ready/min-max): {pools}")

    def check_labels_taints(self, ctx: RunContext) -> Passed:
        result = judge.judge_labels_taints(self.spec, self.nodes())
        return self._judged(
            result, f"{result.facts['nodes_checked']} nodes carry their pool's labels and taints"
        )

    def check_gpus_allocatable(self, ctx: RunContext) -> Passed:
        self.gpu_pool()  # not applicable without GPU pools
        result = judge.judge_gpus_allocatable(self.spec, self.nodes())
        return self._judged(result, f"GPU nodes advertise the expected {GPU_RESOURCE}: {result.facts}")

    def autoscaling_pool(self) -> NodePool:
        """The cheapest GPU pool that can grow: one node more there proves the autoscaler."""
        pool = next((p for p in self.gpu_pools_cheapest_first() if p.min_nodes < p.max_nodes), None)
        if pool is None:
            raise NotApplicable("no GPU pool of the stack can grow (minNodes == maxNodes everywhere)")
        return pool

    def autoscaling_pods(self, pool: NodePool, before: int) -> list[dict]:
        """``before + 1`` pods, each taking every nvidia.com/gpu a node advertises (time-slices included), so
        the last one can only run on a new node."""
        gpus = self.spec.gpu_slots_per_node(pool)
        image = _image(self.spec, gpu=True)
        return [self.probe_pod(f"scale-{index}", pool, image, gpus=gpus) for index in range(before + 1)]

    def check_cluster_autoscaling(self, ctx: RunContext) -> Passed:
        pool = self.autoscaling_pool()
        before = self.ready_nodes(pool)
        if before >= pool.max_nodes:
            raise CheckFailed(
                f"pool {pool.name} already runs maxNodes={pool.max_nodes} nodes; nothing to scale up"
            )
        wanted = before + 1
        gpus = self.spec.gpu_slots_per_node(pool)
        pods = self.autoscaling_pods(pool, before)
        try:
            for pod in pods:
                self.create(pod)

            def grown() -> tuple[bool, str]:
                now = judge.count_ready_nodes(self.nodes(fresh=True), pool.name)
                return now >= wanted, f"{now} Ready node(s) in pool {pool.name} (was {before})"

            seen = wait_until(
                grown, self._time_left(1100), f"pool {pool.name} growing to {wanted} nodes", poll_s=10
            )
        finally:
            self.release(*pods)  # the autoscaler may now scale the pool back down
        return Passed(
            f"{wanted} pods of {gpus} GPU(s) each made pool {pool.name} scale up: {seen}",
            {"pool": pool.name, "before": before, "after": wanted},
        )

    # -- accelerators --

    def gpu_probe(self) -> dict:
        return self.probe_pod("gpu", self.gpu_pool(), _image(self.spec, gpu=True), gpus=1)

    def check_gpu_visible(self, ctx: RunContext) -> Passed:
        pool = self.gpu_pool()
        pod = self.gpu_probe()
        try:
            listing = self.run_pod(pod).run("nvidia-smi -L")
        finally:
            self.release(pod)
        gpus = judge.parse_nvidia_smi_list(listing.stdout)
        if listing.rc != 0 or len(gpus) != 1:
            raise CheckFailed(
                f"a pod granted 1 {GPU_RESOURCE} on pool {pool.name} sees {len(gpus)} GPU(s) "
                f"(nvidia-smi -L exit {listing.rc}: {(listing.stdout + listing.stderr)[:300]})",
                {"gpus": gpus},
            )
        return Passed(
            f"a pod granted one GPU on pool {pool.name} sees exactly one: {gpus[0]['name']} "
            f"({gpus[0]['uuid']})",
            {"gpus": gpus},
        )

    def isolation_probe(self) -> dict:
        """A pod on a GPU node that requests no GPU, with the NVIDIA_VISIBLE_DEVICES :func:`gpu_isolation`
        names."""
        pod = self.probe_pod("nogpu", self.gpu_pool(), _image(self.spec, gpu=True), gpus=0)
        pod["spec"]["containers"][0]["env"] = [
            {"name": VISIBLE_DEVICES, "value": gpu_isolation(self.spec).probe_visible_devices}
        ]
        return pod

    def check_gpu_isolation(self, ctx: RunContext) -> Passed:
        pool = self.gpu_pool()
        isolation = gpu_isolation(self.spec)
        pod = self.isolation_probe()
        try:
            host = self.run_pod(pod)
            devices = host.run("ls /dev/nvidia[0-9]* 2>/dev/null")
            listing = host.run("nvidia-smi -L")
        finally:
            self.release(pod)
        gpus = judge.parse_nvidia_smi_list(listing.stdout)
        asked = f"{VISIBLE_DEVICES}={isolation.probe_visible_devices}"
        facts = {
            "devices": devices.stdout.split(),
            "gpus": gpus,
            "nvidia_smi_exit": listing.rc,
            "probe_env": asked,
            "isolation_guaranteed": isolation.guaranteed,
            "device_list_strategy": isolation.device_list_strategy,
        }
        if devices.stdout.strip() or gpus:
            reached = f"{len(gpus)} GPU(s)" if gpus else " ".join(devices.stdout.split())
            raise CheckFailed(
                f"a pod on GPU pool {pool.name} that requested no GPU and set {asked} can reach "
                f"{reached}: {isolation.broken_if_reached}",
                facts,
            )
        if isolation.guaranteed:
            return Passed(
                f"a pod on GPU pool {pool.name} that requested no GPU sees none, even with {asked}",
                facts,
            )
        facts["not_guaranteed"] = isolation.not_guaranteed
        return Passed(
            f"a pod on GPU pool {pool.name} that requested no GPU ({asked}) sees none; "
            f"{isolation.not_guaranteed}",
            facts,
        )

    def shm_probe(self) -> dict:
        """A pod on the Ray workers' pool mounting their Memory emptyDir where they mount it."""
        template = self.worker_template()
        shm_volume = next(v for v in template["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory")
        mount = next(
            m
            for c in template["containers"]
            for m in c.get("volumeMounts", [])
            if m["name"] == shm_volume["name"]
        )
        pool = self.spec.pool(template["nodeSelector"][POOL_LABEL])
        return self.probe_pod(
            "shm", pool, template["containers"][0]["image"], volumes=[shm_volume], mounts=[mount]
        )

    def check_ray_shm(self, ctx: RunContext) -> Passed:
        from kubernetes.utils.quantity import parse_quantity

        pod = self.shm_probe()
        (shm_volume,) = pod["spec"]["volumes"]
        (mount,) = pod["spec"]["containers"][0]["volumeMounts"]
        expected = int(parse_quantity(shm_volume["emptyDir"]["sizeLimit"]))
        pool_name = pod["spec"]["nodeSelector"][POOL_LABEL]
        try:
            host = self.run_pod(pod)
            size = judge.shm_size_bytes(host.check_output(f"df -Pk {mount['mountPath']}"))
            filesystem = host.check_output(f"stat -f -c %T {mount['mountPath']}")
        finally:
            self.release(pod)
        if filesystem.strip() != "tmpfs" or size < expected * 0.99:
            raise CheckFailed(
                f"/dev/shm in a Ray worker pod is {filesystem.strip()} of {size / 2**30:.2f} GiB; the "
                f"RayJob asks for a Memory emptyDir of {expected / 2**30:.2f} GiB"
            )
        return Passed(
            f"/dev/shm in a Ray worker pod on pool {pool_name} is tmpfs of {size / 2**30:.2f} GiB, as the "
            f"RayJob asks",
            {"bytes": size},
        )

    # -- operators --

    def check_kuberay(self, ctx: RunContext) -> Passed:
        from park.components.manifests import kuberay

        result = judge.judge_crds(
            self.api.list("apiextensions.k8s.io/v1", "CustomResourceDefinition"), KUBERAY_CRDS
        )
        deployment = self.api.get("apps/v1", "Deployment", kuberay.RELEASE_NAME, kuberay.NAMESPACE)
        operator = judge.judge_deployment(deployment, "KubeRay operator")
        result.problems += operator.problems
        result.facts["operator"] = operator.facts
        return self._judged(
            result,
            f"KubeRay CRDs served at ray.io/v1; operator {kuberay.NAMESPACE}/"
            f"{kuberay.RELEASE_NAME} available",
        )

    def check_kueue(self, ctx: RunContext) -> Passed:
        from park.components.manifests import kueue

        result = judge.judge_crds(
            self.api.list("apiextensions.k8s.io/v1", "CustomResourceDefinition"), KUEUE_CRDS
        )
        deployment = self.api.get("apps/v1", "Deployment", "kueue-controller-manager", kueue.NAMESPACE)
        controller = judge.judge_deployment(deployment, "Kueue controller")
        queues = judge.judge_queues(
            self.spec,
            self.api.list("kueue.x-k8s.io/v1beta2", "ClusterQueue"),
            self.api.list("kueue.x-k8s.io/v1beta2", "LocalQueue"),
        )
        result.problems += controller.problems + queues.problems
        result.facts.update({"controller": controller.facts, **queues.facts})
        return self._judged(
            result,
            f"Kueue CRDs served at v1beta2; controller available; {len(self.spec.teams)} "
            f"ClusterQueues and LocalQueues active",
        )

    # -- scheduling --

    def _job(
        self,
        what: str,
        cpu: str,
        memory: str,
        parallelism: int = 1,
        priority: str | None = None,
        seconds: int = 5,
        active_deadline_s: int | None = None,
        pool: NodePool | None = None,
    ) -> dict:
        """A suspended Job for the team's LocalQueue, pinned to ``pool`` (default: :meth:`admission_pool`):
        unpinned, Kueue would give it the first flavor with room, which may be a pool with no node running."""
        from park.components.manifests.common import tolerations_for
        from park.workloads.cluster import CONTAINER_SECURITY_CONTEXT, kueue_labels

        pool = pool or self.admission_pool()
        labels = kueue_labels(self.spec, self.team, priority or self.ctx.options.priority)
        resources = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}
        placement: dict[str, Any] = {"nodeSelector": {POOL_LABEL: pool.name}}
        if self.spec.node_taints(pool):
            placement["tolerations"] = tolerations_for(self.spec.node_taints(pool))
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": self.object_name(what), "namespace": self.namespace, "labels": labels},
            "spec": {
                "suspend": True,
                "parallelism": parallelism,
                "completions": parallelism,
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 600,
                **({"activeDeadlineSeconds": active_deadline_s} if active_deadline_s else {}),
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        **placement,
                        "containers": [
                            {
                                "name": "sleep",
                                "image": _image(self.spec, gpu=False),
                                "command": ["python", "-c", f"import time; time.sleep({seconds})"],
                                "securityContext": CONTAINER_SECURITY_CONTEXT,
                                "resources": resources,
                            }
                        ],
                    }
                },
            },
        }

    def admission_pool(self) -> NodePool:
        """Where the small admission Job runs: the system pool when the team has quota there (Ray heads need
        it anyway, and its nodes always run), else the proving pool."""
        from park.workloads.cluster import system_pool

        system = system_pool(self.spec)
        if any(q.pool == system.name for q in self.team.quotas):
            return system
        return self.proving_pool()

    def admission_job(self) -> dict:
        return self._job("admit", "100m", "128Mi")

    def check_queue_admission(self, ctx: RunContext) -> Passed:
        job = self.admission_job()
        self.create(job)
        name = job["metadata"]["name"]

        def admitted() -> tuple[bool, str]:
            return judge.admission_state(self.workload_of("Job", name))

        wait_until(
            admitted, self._time_left(120), f"Workload of Job {name} admitted by {self.team.local_queue}"
        )

        def completed() -> tuple[bool, str]:
            live = self.api.get("batch/v1", "Job", name, self.namespace) or {}
            return bool(live.get("status", {}).get("succeeded")), json.dumps(live.get("status", {}))[:300]

        wait_until(completed, self._time_left(240), f"Job {name} completed")
        self.release(job)
        return Passed(
            f"Job {name} was admitted through LocalQueue {self.namespace}/{self.team.local_queue} and "
            f"ran to completion"
        )

    def _tiny_rayjob(self, what: str, workers: int, worker_cpus: float = 1) -> dict:
        """A RayJob of ``workers`` CPU-only workers on the proving pool, its submitter pinned there too."""
        from park.workloads import cluster

        pool = self.proving_pool()
        spec = cluster.ray_cluster_spec(
            self.spec, pool=pool, workers=workers, worker_cpus=worker_cpus, worker_memory="1Gi"
        )
        return cluster.rayjob(
            self.spec,
            name=self.object_name(what),
            entrypoint=["python", "-c", "import ray; ray.init(); print(ray.cluster_resources())"],
            cluster_spec=spec,
            env={},
            team=self.team,
            priority=self.ctx.options.priority,
            active_deadline_s=600,
            submitter_pool=pool,
        )

    def gang_cohort_cpus(self) -> float:
        """CPUs every team together has on the proving pool: a RayJob needing more can never be admitted."""
        from kubernetes.utils.quantity import parse_quantity

        pool = self.proving_pool()
        return sum(
            float(parse_quantity(q.cpu)) for t in self.spec.teams for q in t.quotas if q.pool == pool.name
        )

    def gang_rayjobs(self) -> tuple[dict, dict]:
        """The RayJob bigger than the cohort (never admitted: no pod) and the 2-worker one that fits."""
        oversized = self._tiny_rayjob("gang-big", workers=int(self.gang_cohort_cpus()) + 2)
        return oversized, self._tiny_rayjob("gang-fit", workers=2)

    def check_gang_admission(self, ctx: RunContext) -> Passed:
        cohort_cpus = self.gang_cohort_cpus()
        oversized, fitting = self.gang_rayjobs()
        self.create(oversized)
        big_name = oversized["metadata"]["name"]
        time.sleep(min(30.0, self._time_left(30)))  # give Kueue time to (wrongly) admit it
        held = judge.judge_gang_held(
            self.workload_of("RayJob", big_name),
            self.api.list("v1", "Pod", self.namespace, f"ray.io/cluster={big_name}"),
        )
        if not held.ok:
            raise CheckFailed("; ".join(held.problems), held.facts)
        self.api.delete(oversized)
        self.create(fitting)
        fit_name = fitting["metadata"]["name"]
        try:
            wait_until(
                lambda: judge.admission_state(self.workload_of("RayJob", fit_name)),
                self._time_left(300),
                f"Workload of RayJob {fit_name} admitted",
            )
            gang = judge.judge_gang_admission(self.workload_of("RayJob", fit_name))
        finally:
            self.release(fitting)
        return self._judged(
            gang,
            f"a RayJob needing {int(cohort_cpus) + 2} workers (more than the cohort's "
            f"{cohort_cpus:g} CPUs) got no pod; a 2-worker RayJob was admitted whole: "
            f"{gang.facts['assigned']}",
        )

    def preemption_jobs(self) -> tuple[dict, dict, str, str]:
        """A low- and a high-priority Job, each asking for 80% of the team's CPU quota on the proving pool
        (so only one fits), pinned there; with the CPU each asks and the quota."""
        from kubernetes.utils.quantity import parse_quantity
        from park.workloads import cluster

        pool = self.proving_pool()
        quota = next((q for q in self.team.quotas if q.pool == pool.name), None)
        priorities = sorted(self.spec.priority_classes, key=lambda p: p.value)
        if quota is None or len(priorities) < 2:
            raise NotApplicable(
                f"team {self.team.name} has no quota on pool {pool.name}, or the stack has fewer "
                f"than two priority classes"
            )
        cpus = float(parse_quantity(quota.cpu))
        cpu = cluster.cpu_quantity(cpus * 0.8)
        # The low Job must not outlive this check: it sleeps, and may run, no longer than the check may take.
        lifetime = int(BY_NAME["scheduling.preemption"].timeout_s)
        low = self._job(
            "low",
            cpu,
            "256Mi",
            priority=priorities[0].name,
            seconds=lifetime,
            active_deadline_s=lifetime,
            pool=pool,
        )
        high = self._job("high", cpu, "256Mi", priority=priorities[-1].name, seconds=5, pool=pool)
        return low, high, cpu, str(quota.cpu)

    def check_preemption(self, ctx: RunContext) -> Passed:
        low, high, cpu, quota_cpu = self.preemption_jobs()
        priorities = sorted(self.spec.priority_classes, key=lambda p: p.value)
        try:
            self.create(low)
            wait_until(
                lambda: judge.admission_state(self.workload_of("Job", low["metadata"]["name"])),
                self._time_left(120),
                "low-priority Job admitted",
            )
            self.create(high)

            def preempted() -> tuple[bool, str]:
                verdict = judge.judge_preemption(
                    self.workload_of("Job", low["metadata"]["name"]),
                    self.workload_of("Job", high["metadata"]["name"]),
                )
                return verdict.ok, "; ".join(verdict.problems)

            wait_until(preempted, self._time_left(300), "preemption of the low-priority Job")
        finally:
            # Pass or fail, give the quota back: once the high Job ends Kueue would re-admit the low one,
            # and it would hold most of the team's quota while the workload checks wait behind it.
            holding = self.delete_and_release([low, high])
        if holding:
            raise CheckFailed(f"the preemption Jobs were deleted but still hold quota: {holding}")
        return Passed(
            f"a {priorities[-1].name}-priority Job preempted a {priorities[0].name}-priority Job holding "
            f"{cpu} CPU of team {self.team.name}'s {quota_cpu}"
        )

    def delete_and_release(self, jobs: list[dict], timeout_s: float = 60.0) -> str:
        """Delete ``jobs`` now and wait until Kueue no longer counts their Workloads against the quota.
        Returns what still holds quota after ``timeout_s`` (empty when all is released); never raises."""
        for job in jobs:
            try:
                self.api.delete(job)
            except KubeError as err:
                self.ctx.log.warning("could not delete Job %s: %s", job["metadata"]["name"], err)

        def released() -> tuple[bool, str]:
            holding = [
                job["metadata"]["name"]
                for job in jobs
                if judge.holds_quota(
                    self.workload_of("Job", job["metadata"]["name"], job["metadata"]["namespace"])
                )
            ]
            return not holding, ", ".join(holding)

        try:
            wait_until(released, max(1.0, min(timeout_s, self.ctx.remaining_s())), "quota released")
        except (CheckFailed, KubeError) as err:
            self.ctx.log.warning("preemption Jobs still hold quota: %s", err)
            return str(err)
        return ""

    # -- storage --

    def storage_folder(self) -> str:
        from park.workloads import storage

        return storage.join(self.spec.storage_uri, "conformance", self.ctx.run_id)

    def storage_probe(self, nonce: str = "") -> dict:
        """A pod on the Ray workers' pool, as their service account with their mounts (on kind: the storage
        host folder; minus /dev/shm), that writes ``nonce`` to the stack's storage and reads it back."""
        from park.components.spec import RAY_SERVICE_ACCOUNT, STORAGE_CONFIGMAP
        from park.workloads import storage

        uri = storage.join(self.storage_folder(), "storage-probe.txt")
        template = self.worker_template()
        volumes = [v for v in template.get("volumes", []) if v.get("emptyDir", {}).get("medium") != "Memory"]
        names = {v["name"] for v in volumes}
        mounts = [m for c in template["containers"] for m in c.get("volumeMounts", []) if m["name"] in names]
        pool = self.spec.pool(template["nodeSelector"][POOL_LABEL])
        pod = self.probe_pod("storage", pool, _image(self.spec, gpu=False), volumes=volumes, mounts=mounts)
        pod["spec"]["serviceAccountName"] = RAY_SERVICE_ACCOUNT
        pod["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": STORAGE_CONFIGMAP}}]
        pod["spec"]["containers"][0]["command"] = [
            "python",
            "-m",
            "park.conformance.probe",
            "storage-direct",
            "--uri",
            uri,
            "--nonce",
            nonce,
        ]
        return pod

    def check_storage(self, ctx: RunContext) -> Passed:
        from park.components.spec import RAY_SERVICE_ACCOUNT

        nonce = f"{ctx.name} {secrets.token_hex(16)}"
        self.remove_at_cleanup(self.storage_folder())
        pod = self.storage_probe(nonce)
        command = pod["spec"]["containers"][0]["command"]
        uri = command[command.index("--uri") + 1]
        self.create(pod)
        name = pod["metadata"]["name"]

        def finished() -> tuple[bool, str]:
            phase = (
                (self.api.get("v1", "Pod", name, self.namespace) or {})
                .get("status", {})
                .get("phase", "absent")
            )
            return phase in ("Succeeded", "Failed"), phase

        phase = wait_until(finished, self._time_left(300), f"storage probe pod {name} finished")
        from park.conformance.probe import parse_result

        logs = self.api.pod_log(self.namespace, name)
        self.release(pod)
        reported = parse_result(logs)
        if phase != "Succeeded" or not reported or not reported.get("same"):
            raise CheckFailed(
                f"the storage probe pod (service account {RAY_SERVICE_ACCOUNT}) {phase}: {logs[-500:]}"
            )
        return Passed(
            f"a pod running as {self.namespace}/{RAY_SERVICE_ACCOUNT} wrote {uri} and read it back "
            f"byte for byte (sha256 {reported['sha256'][:12]}…)",
            {"uri": uri, **reported},
        )

    # -- workloads --

    def _run_rayjob(self, rayjob: dict, budget: float) -> tuple[dict, str]:
        self.create(rayjob)
        name, namespace = rayjob["metadata"]["name"], rayjob["metadata"]["namespace"]
        self.ctx.facts[f"{name}.team"] = self.team_of(rayjob).name

        def finished() -> tuple[bool, str]:
            live = self.api.get("ray.io/v1", "RayJob", name, namespace) or {}
            return judge.rayjob_outcome(live)

        wait_until(finished, self._time_left(budget), f"RayJob {namespace}/{name} finished", poll_s=5)
        live = self.api.get("ray.io/v1", "RayJob", name, namespace) or {}
        workload = self.workload_of("RayJob", name, namespace)
        self.ctx.facts[f"{name}.admitted_by_kueue"] = judge.admitted(workload) or bool(
            workload and judge.condition(workload, "Finished")
        )
        submitter = self.api.list("v1", "Pod", namespace, f"job-name={name}").get("items", [])
        logs = self.api.pod_log(namespace, submitter[-1]["metadata"]["name"]) if submitter else ""
        self.ctx.log.info(
            "RayJob %s: %s; submitter output:\n%s",
            name,
            judge.rayjob_outcome(live)[1],
            "\n".join(f"    | {line}" for line in logs.splitlines()),
        )
        return live, logs

    def train_bar(self) -> float:
        from park.workloads.train.manifest import DEFAULT_MIN_ACCURACY

        bar = self.ctx.options.injections.train_min_accuracy
        return DEFAULT_MIN_ACCURACY if bar is None else bar

    def train_rayjob(self) -> dict:
        """The training RayJob at the conformance size, under this run's name."""
        from park.workloads.train.manifest import build_rayjob

        name = self.object_name("train")
        return build_rayjob(
            self.spec,
            **self.workload_placement(),
            run_name=name,
            min_accuracy=self.train_bar(),
            name=name,
            size="conformance",
        )

    def check_train(self, ctx: RunContext) -> Passed:
        from park.workloads import storage
        from park.workloads.train.manifest import CHECKPOINT_FOLDER

        bar = self.train_bar()
        name = self.object_name("train")
        rayjob = self.train_rayjob()
        run_uri = storage.join(self.spec.storage_uri, CHECKPOINT_FOLDER, name)
        self.remove_at_cleanup(run_uri)
        live, logs = self._run_rayjob(rayjob, 3000)
        summary_uri = storage.join(run_uri, "summary.json")
        try:
            summary = json.loads(storage.read_text(summary_uri))
        except Exception as err:  # noqa: BLE001 - the runner may lack bucket credentials; the job log has its verdict
            summary = None
            ctx.log.warning("cannot read %s from here: %s", summary_uri, err)
        accuracy = summary.get("final_accuracy") if summary else None
        if not judge.rayjob_succeeded(live):
            raise CheckFailed(
                f"RayJob {name} did not succeed ({judge.rayjob_outcome(live)[1]}); accuracy "
                f"{accuracy} vs bar {bar}; submitter output: {logs[-400:]}"
            )
        if accuracy is not None and accuracy < bar:
            raise CheckFailed(f"final accuracy {accuracy:.4f} is below the bar {bar} ({summary_uri})")
        shown = (
            f"{accuracy:.3f}"
            if accuracy is not None
            else "(summary unreadable from here; job log says PASSED)"
        )
        return Passed(
            f"RayJob {name} admitted by Kueue and completed; final accuracy {shown} >= {bar}",
            {"summary_uri": summary_uri, "final_accuracy": accuracy},
        )

    def batch_rayjob(self) -> dict:
        """The batch RayJob at the conformance size, writing to this run's folder (plus the injected fault)."""
        from park.conformance.workload_checks import BATCH_ROWS
        from park.workloads.batch.manifest import build_rayjob

        name = self.object_name("batch")
        rayjob = build_rayjob(
            self.spec,
            **self.workload_placement(),
            rows=BATCH_ROWS,
            output_folder=f"batch/{name}",
            name=name,
            size="conformance",
        )
        drop = self.ctx.options.injections.batch_drop_rows
        if drop:
            argv = shlex.split(rayjob["spec"]["entrypoint"]) + ["--drop-rows-for-testing", str(int(drop))]
            rayjob["spec"]["entrypoint"] = shlex.join(argv)
        return rayjob

    def check_batch(self, ctx: RunContext) -> Passed:
        from park.conformance.workload_checks import compare_ids, parquet_column
        from park.workloads import storage

        name = self.object_name("batch")
        rayjob = self.batch_rayjob()
        argv = shlex.split(rayjob["spec"]["entrypoint"])
        input_uri = argv[argv.index("--input-uri") + 1]
        output_uri = argv[argv.index("--output-uri") + 1]
        data_uri = storage.join(output_uri, "data")
        self.remove_at_cleanup(output_uri)  # the shared input folder stays: later runs reuse it
        live, logs = self._run_rayjob(rayjob, 1800)
        try:
            comparison = compare_ids(parquet_column(input_uri, "id"), parquet_column(data_uri, "id"))
        except Exception as err:  # noqa: BLE001 - the runner may lack bucket credentials
            comparison = None
            ctx.log.warning("cannot read %s / %s from here: %s", input_uri, data_uri, err)
        if comparison is not None and not comparison["exact"]:
            raise CheckFailed(
                f"output is not exactly the input rows: {comparison['missing']} missing, "
                f"{comparison['duplicated']} duplicated, {comparison['unexpected']} unexpected of "
                f"{comparison['rows_in']} ({data_uri})",
                comparison,
            )
        if not judge.rayjob_succeeded(live):
            raise CheckFailed(
                f"RayJob {name} did not succeed ({judge.rayjob_outcome(live)[1]}); submitter output: "
                f"{logs[-400:]}"
            )
        shown = (
            f"{comparison['rows_out']} output ids = {comparison['rows_in']} input ids"
            if comparison
            else "output unreadable from here; the job verified its own ids"
        )
        return Passed(f"RayJob {name} admitted by Kueue and completed; {shown}", comparison or {})

    def serve_rayservice(self) -> dict:
        """The serving RayService as rendered (its serving pool, its models' minimum replicas)."""
        from park.conformance.workload_checks import serve_module

        return serve_module().build_rayservice(
            self.spec, **self.workload_placement(), name=self.object_name("serve")
        )

    def check_serve(self, ctx: RunContext) -> Passed:
        name = self.object_name("serve")
        rayservice = self.serve_rayservice()
        namespace = rayservice["metadata"]["namespace"]
        self.ctx.facts[f"{name}.team"] = self.team_of(rayservice).name
        self.create(rayservice)

        def ready() -> tuple[bool, str]:
            return judge.rayservice_ready(self.api.get("ray.io/v1", "RayService", name, namespace) or {})

        wait_until(ready, self._time_left(1500), f"RayService {namespace}/{name} Ready", poll_s=10)
        model = self.spec.models[0].name if self.spec.models else "default"
        answer = self.api.service_proxy(
            "POST",
            namespace,
            f"{name}-serve-svc",
            8000,
            "v1/chat/completions",
            body={
                "model": model,
                "max_tokens": 16,
                "temperature": 0,
                "messages": [{"role": "user", "content": "Say hello."}],
            },
        )
        verdict = judge.judge_chat_completion(answer if isinstance(answer, dict) else {}, model)
        return self._judged(
            verdict,
            f"RayService {name} Ready; chat completion from {model}: {verdict.facts.get('content')!r}",
        )

    # -- observability --

    def _prometheus(self, path: str, query: dict[str, str] | None = None) -> dict:
        from park.components.manifests import observability

        if not observability.installs_prometheus(self.spec):
            raise NotApplicable("the stack turns Prometheus off (observability.prometheus: false)")
        return self.api.service_proxy(
            "GET",
            observability.NAMESPACE,
            observability.PROMETHEUS_SERVICE,
            observability.PROMETHEUS_PORT,
            path,
            query=query,
        )

    def check_prometheus_targets(self, ctx: RunContext) -> Passed:
        from park.components.manifests import observability

        wanted = {}
        if self.spec.observability.ray_metrics:
            wanted["Ray"] = r"ray"
        if self.spec.observability.kueue_metrics:
            wanted["Kueue"] = r"kueue"
        if observability.installs_dcgm_exporter(self.spec):
            wanted["dcgm-exporter"] = r"dcgm"
        targets = self._prometheus("api/v1/targets", {"state": "active"})
        result = judge.judge_prometheus_targets(targets, wanted)
        return self._judged(
            result, f"Prometheus scrapes {', '.join(wanted)} and the targets are up: {result.facts}"
        )

    def check_gpu_metric(self, ctx: RunContext) -> Passed:
        self.gpu_pool()
        result = judge.Judgement()
        for metric in GPU_METRICS:
            found = judge.judge_query_has_series(self._prometheus("api/v1/query", {"query": metric}), metric)
            result.problems += found.problems
            result.facts.update(found.facts)
        return self._judged(result, f"Prometheus holds per-GPU {' and '.join(GPU_METRICS)} series")


VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
"""The variable through which the NVIDIA container toolkit grants GPUs (CUDA base images set it to ``all``)."""


@dataclass(frozen=True)
class GpuIsolation:
    """What the platform guarantees about GPUs a pod did not request on the stack's cloud, and so what
    ``accelerators.gpu-isolation`` demands. Read from ``CAPABILITIES[cloud].isolates_unrequested_gpus``, the
    same fact that sets the device plugin's ``deviceListStrategy``."""

    guaranteed: bool
    """No unprivileged container gets a GPU it did not request, whatever its environment says."""
    probe_visible_devices: str
    """NVIDIA_VISIBLE_DEVICES of the probe pod: ``all`` (the hostile case) where isolation is guaranteed,
    ``void`` (the toolkit's "no GPU, behave like runc") where only pods that do not ask are kept out."""
    device_list_strategy: str | None
    """The deviceListStrategy of the device plugin park-stack installs; None where the cloud runs its own."""
    not_guaranteed: str | None
    """What a person must know where isolation is not guaranteed."""
    broken_if_reached: str
    """What a probe that reaches a GPU means here."""


def gpu_isolation(spec: StackSpec) -> GpuIsolation:
    from park.components.clouds import CAPABILITIES
    from park.components.manifests import gpu

    strategy = gpu.device_list_strategy(spec) if gpu.installs_device_plugin(spec) else None
    plugin = f"deviceListStrategy {strategy}" if strategy else "the cloud's own device plugin"
    if CAPABILITIES[spec.cloud].isolates_unrequested_gpus:
        return GpuIsolation(
            True,
            "all",
            strategy,
            None,
            f"the {spec.cloud} GPU nodes are declared to hand out GPUs only through the device plugin "
            f"({plugin}; CloudCapabilities.isolates_unrequested_gpus), yet the container runtime honoured "
            f"{VISIBLE_DEVICES} from an unprivileged container",
        )
    return GpuIsolation(
        False,
        "void",
        strategy,
        f"not guaranteed on {spec.cloud}: an unprivileged pod that sets {VISIBLE_DEVICES} (CUDA base images "
        f"set it to all) sees its node's GPUs without requesting one, because the nodes' NVIDIA container "
        f"toolkit accepts that variable from unprivileged containers (its packaged default); only pods that "
        f"tolerate the GPU pools' taints land there (docs/conformance.md, GPU isolation)",
        f"something besides the device plugin ({plugin}) hands out GPUs: a privileged default, a runtime "
        f"hook that ignores {VISIBLE_DEVICES}=void, or device specs passed to every container",
    )


def _image(spec: StackSpec, gpu: bool) -> str:
    from park.workloads.cluster import workload_image

    return workload_image(spec, gpu=gpu)
