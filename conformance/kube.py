"""The cluster under test: what every cluster check works with. The checks themselves live with their layer
in :mod:`park.conformance.layers`; :class:`~park.conformance.targets.KubernetesTarget` adds the lookup.

Thin on purpose: reading and creating objects goes through :class:`~park.conformance.kube_api.KubeApi` (the
official client), commands inside pods through pytest-testinfra's ``kubectl`` backend, and every judgement
is a pure function in :mod:`park.conformance.judgements`, unit-tested against recorded responses.

Everything a run creates is named ``park-conf-<run id>-<what>``, labelled
``park-stack.io/conformance-run=<run id>`` and is deleted at the end unless ``--keep``. Each reference
workload goes to its own team's namespace (the builders' choice: serving on the serving team, training and
batch on a research team), or to ``--team``; probes and the scheduling checks use ``--team`` or the stack's
first team (the namespace its ClusterQueue admits, holding the Ray service account and the storage
ConfigMap). Nothing here runs without a reachable API server: :meth:`KubeCluster.connect` fails first, with
the address it tried.

Sizes are the smallest that prove the layer: train and batch with ``size="conformance"`` (one GPU on the
cheapest GPU pool, :func:`~park.workloads.cluster.proving_pool`), probes and the scheduling checks' pods
pinned to a pool, and each check deletes what it made when it ends (unless ``--keep``), so the next one
starts on free nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from park.components.manifests.common import tolerations_for
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
from park.conformance.context import RunContext, check_overrides
from park.conformance.kube_api import KubeApi, KubeError
from park.conformance.model import CheckFailed, NotApplicable, Passed
from park.workloads import cluster as builders
from park.workloads import storage
from park.workloads.train.manifest import build_rayjob

RUN_LABEL = "park-stack.io/conformance-run"
POLL_S = 3.0
POD_START_S = 300.0


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


def judged(judgement: judge.Judgement, summary: str) -> Passed:
    """A pass with ``summary`` when the judgement found no problem, else a failure listing them all."""
    if not judgement.ok:
        raise CheckFailed("; ".join(judgement.problems), judgement.facts)
    return Passed(summary, judgement.facts)


class KubeCluster:
    """The API client, the stack it is checked against, and the plumbing every cluster check shares:
    naming and labelling what a run creates, probe pods, waiting, releasing."""

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
        self.ctx = ctx
        self.api = api
        self.spec = spec
        self.stack_path = stack_path
        self.server = server
        self.kubeconfig = kubeconfig
        self.context = context
        self.team = builders.team_for(spec, ctx.options.team)
        """Where probes and the scheduling checks run: ``--team``, else the stack's first team."""
        self.namespace = self.team.namespace_name
        self._nodes: dict | None = None

    # -- construction --

    @classmethod
    def connect(cls, ctx: RunContext) -> KubeCluster:
        """Load the stack and the kubeconfig, and make sure the API server answers."""
        # The kubernetes client belongs to the conformance extra: imported when a cluster run connects.
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
    def offline(cls, ctx: RunContext, spec: StackSpec, stack_path: str) -> KubeCluster:
        """A cluster that only builds objects (for the plan): no API client; each pool is taken to run its
        ``minNodes`` Ready nodes."""
        return cls(ctx, None, spec, stack_path, {})

    # -- naming and creating --

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

    def remove_at_cleanup(self, uri: str) -> None:
        """Delete what the run wrote under ``uri`` in the stack's storage at the end (best effort: the runner
        may lack write access to the bucket; then the cleanup log says so)."""

        def remove() -> None:
            import pyarrow.fs as pafs  # the workloads extra: imported at cleanup

            filesystem, path = storage.resolve(uri)
            info = filesystem.get_file_info(path)
            if info.type == pafs.FileType.Directory:
                filesystem.delete_dir(path)
            elif info.type == pafs.FileType.File:
                filesystem.delete_file(path)

        self.ctx.on_cleanup(f"remove {uri} from the stack's storage", remove)

    def time_left(self, budget: float) -> float:
        """``budget`` seconds, or what is left of the run's ``--timeout`` if less (at least one)."""
        return max(1.0, min(budget, self.ctx.remaining_s()))

    # -- nodes and pools --

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
        ordered = builders.gpu_pools_by_cost(self.spec)
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
        return builders.proving_pool(self.spec)

    # -- workloads and pods --

    def image(self, gpu: bool) -> str:
        """The workload image (its GPU or CPU variant) the probes run."""
        return builders.workload_image(self.spec, gpu=gpu)

    def worker_template(self) -> dict:
        """The pod spec of a Ray worker as the conformance training RayJob renders it (pool, image, volumes,
        account)."""
        rayjob = build_rayjob(self.spec, team=self.team, size="conformance")
        return rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]

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

    def probe_pod(
        self,
        what: str,
        pool: NodePool,
        image: str,
        gpus: int = 0,
        volumes: list | None = None,
        mounts: list | None = None,
    ) -> dict:
        container: dict[str, Any] = {
            "name": "probe",
            "image": image,
            "command": ["sleep", "900"],
            "securityContext": builders.CONTAINER_SECURITY_CONTEXT,
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
        import testinfra  # the conformance extra: imported when a probe runs

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
