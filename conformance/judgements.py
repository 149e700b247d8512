"""Pure judgements of what the targets observe: Kubernetes API objects, Prometheus answers, OpenAI answers.

Every function takes the API server's JSON (as dicts: a NodeList, a CustomResourceDefinitionList, a
Workload, Prometheus's /api/v1/targets answer...) and the stack spec, and returns the problems it sees —
each a sentence naming the object and what to do — plus the facts it measured. Nothing here talks to a
cluster, so the logic is unit-tested against recorded responses (tests/fixtures/k8s/).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from park.components.spec import GPU_RESOURCE, POOL_LABEL, StackSpec


@dataclass
class Judgement:
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def condition(obj: dict, kind: str) -> dict | None:
    """The ``status.conditions`` entry of ``type == kind``, or None."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def condition_true(obj: dict, kind: str) -> bool:
    found = condition(obj, kind)
    return bool(found) and found.get("status") == "True"


def _name(obj: dict) -> str:
    meta = obj.get("metadata", {})
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", "?")


# --- infrastructure ----------------------------------------------------------------------------


def nodes_by_pool(node_list: dict) -> dict[str, list[dict]]:
    pools: dict[str, list[dict]] = {}
    for node in node_list.get("items", []):
        pool = node["metadata"].get("labels", {}).get(POOL_LABEL)
        if pool is not None:
            pools.setdefault(pool, []).append(node)
    return pools


def judge_nodes(spec: StackSpec, node_list: dict) -> Judgement:
    """Every pool has at least ``minNodes`` Ready nodes (a system pool at least one)."""
    out = Judgement()
    pools = nodes_by_pool(node_list)
    for pool in spec.node_pools:
        nodes = pools.get(pool.name, [])
        ready = [n for n in nodes if condition_true(n, "Ready")]
        out.facts[pool.name] = {
            "nodes": len(nodes),
            "ready": len(ready),
            "min": pool.min_nodes,
            "max": pool.max_nodes,
        }
        if len(ready) < pool.min_nodes:
            not_ready = [n["metadata"]["name"] for n in nodes if n not in ready]
            out.problems.append(
                f"pool {pool.name!r} has {len(ready)} Ready node(s), below minNodes "
                f"{pool.min_nodes}"
                + (
                    f" (not Ready: {', '.join(not_ready)})"
                    if not_ready
                    else f" (no node carries {POOL_LABEL}={pool.name})"
                )
            )
        if len(nodes) > pool.max_nodes:
            out.problems.append(f"pool {pool.name!r} has {len(nodes)} nodes, above maxNodes {pool.max_nodes}")
    unknown = sorted(set(pools) - {p.name for p in spec.node_pools})
    if unknown:
        out.facts["pools_not_in_stack"] = unknown
    return out


def _taint_matches(expected: dict, actual: dict) -> bool:
    return (
        expected["key"] == actual.get("key")
        and expected.get("value", "") == actual.get("value", "")
        and expected["effect"] == actual.get("effect")
    )


def judge_labels_taints(spec: StackSpec, node_list: dict) -> Judgement:
    """Every node of a stack pool carries the pool's labels and taints."""
    out = Judgement()
    checked = 0
    for pool_name, nodes in nodes_by_pool(node_list).items():
        pool = next((p for p in spec.node_pools if p.name == pool_name), None)
        if pool is None:
            continue
        want_labels = spec.node_labels(pool)
        want_taints = spec.node_taints(pool)
        for node in nodes:
            checked += 1
            name = node["metadata"]["name"]
            labels = node["metadata"].get("labels", {})
            for key, value in want_labels.items():
                if labels.get(key) != value:
                    out.problems.append(
                        f"node {name} (pool {pool_name}) has label {key}={labels.get(key)!r}, "
                        f"expected {value!r}"
                    )
            taints = node.get("spec", {}).get("taints") or []
            for taint in want_taints:
                if not any(_taint_matches(taint, t) for t in taints):
                    out.problems.append(
                        f"node {name} (pool {pool_name}) lacks taint "
                        f"{taint['key']}={taint.get('value', '')}:{taint['effect']}"
                    )
    out.facts["nodes_checked"] = checked
    return out


def judge_gpus_allocatable(spec: StackSpec, node_list: dict) -> Judgement:
    """GPU nodes advertise ``nvidia.com/gpu`` = GPUs per node x time-slicing replicas."""
    out = Judgement()
    pools = nodes_by_pool(node_list)
    for pool in spec.gpu_pools:
        expected = spec.gpu_slots_per_node(pool)
        for node in pools.get(pool.name, []):
            name = node["metadata"]["name"]
            advertised = int((node.get("status", {}).get("allocatable") or {}).get(GPU_RESOURCE, "0"))
            out.facts[name] = advertised
            if advertised != expected:
                hint = (
                    "the NVIDIA device plugin is not running there"
                    if advertised == 0
                    else "check the device plugin's time-slicing config for the pool"
                )
                out.problems.append(
                    f"node {name} (pool {pool.name}) advertises {advertised} {GPU_RESOURCE}, "
                    f"expected {expected}: {hint}"
                )
    return out


# --- operators ---------------------------------------------------------------------------------


def judge_crds(crd_list: dict, required: dict[str, str]) -> Judgement:
    """Each CRD named in ``required`` (name -> version) exists, is Established and serves that version."""
    out = Judgement()
    by_name = {crd["metadata"]["name"]: crd for crd in crd_list.get("items", [])}
    for name, version in required.items():
        crd = by_name.get(name)
        if crd is None:
            out.problems.append(f"CRD {name} is not installed")
            continue
        served = [v["name"] for v in crd["spec"].get("versions", []) if v.get("served")]
        out.facts[name] = served
        if version not in served:
            out.problems.append(f"CRD {name} serves {', '.join(served) or 'no version'}, not {version}")
        if not condition_true(crd, "Established"):
            out.problems.append(f"CRD {name} is not Established")
    return out


def judge_deployment(deployment: dict | None, what: str) -> Judgement:
    """The controller's Deployment exists, is Available and has all replicas ready."""
    out = Judgement()
    if deployment is None:
        out.problems.append(f"{what}: Deployment not found")
        return out
    wanted = deployment.get("spec", {}).get("replicas", 1)
    ready = deployment.get("status", {}).get("readyReplicas", 0)
    out.facts = {"deployment": _name(deployment), "ready": ready, "replicas": wanted}
    if not condition_true(deployment, "Available"):
        reason = (condition(deployment, "Available") or {}).get("message", "no Available condition")
        out.problems.append(f"{what}: Deployment {_name(deployment)} is not Available ({reason})")
    elif ready < wanted:
        out.problems.append(f"{what}: Deployment {_name(deployment)} has {ready}/{wanted} replicas ready")
    return out


def judge_queues(spec: StackSpec, cluster_queues: dict, local_queues: dict) -> Judgement:
    """Each team's ClusterQueue and LocalQueue exist and are Active."""
    out = Judgement()
    cqs = {q["metadata"]["name"]: q for q in cluster_queues.get("items", [])}
    lqs = {(q["metadata"]["namespace"], q["metadata"]["name"]): q for q in local_queues.get("items", [])}
    for team in spec.teams:
        cq = cqs.get(team.cluster_queue)
        if cq is None:
            out.problems.append(f"ClusterQueue {team.cluster_queue} of team {team.name} is missing")
        elif not condition_true(cq, "Active"):
            why = (condition(cq, "Active") or {}).get("message", "no Active condition")
            out.problems.append(f"ClusterQueue {team.cluster_queue} is not Active: {why}")
        lq = lqs.get((team.namespace_name, team.local_queue))
        if lq is None:
            out.problems.append(f"LocalQueue {team.namespace_name}/{team.local_queue} is missing")
        elif not condition_true(lq, "Active"):
            why = (condition(lq, "Active") or {}).get("message", "no Active condition")
            out.problems.append(f"LocalQueue {team.namespace_name}/{team.local_queue} is not Active: {why}")
    out.facts["cluster_queues"] = sorted(cqs)
    return out


# --- scheduling --------------------------------------------------------------------------------


def workload_for(workloads: dict, owner_kind: str, owner_name: str) -> dict | None:
    """The Kueue Workload owned by a Job / RayJob / RayCluster of that name."""
    for workload in workloads.get("items", []):
        for ref in workload["metadata"].get("ownerReferences", []):
            if ref.get("kind") == owner_kind and ref.get("name") == owner_name:
                return workload
    return None


def admitted(workload: dict | None) -> bool:
    return workload is not None and condition_true(workload, "Admitted")


def holds_quota(workload: dict | None) -> bool:
    """Kueue counts a Workload against its ClusterQueue while QuotaReserved is true, until it is Finished or
    deleted (Kueue v0.19.2 pkg/workload/workload.go ``HasQuotaReservation``; pkg/controller/core/
    workload_controller.go drops a finished or deleted Workload from the cache that holds the usage)."""
    return (
        workload is not None
        and condition_true(workload, "QuotaReserved")
        and not condition_true(workload, "Finished")
    )


def admission_state(workload: dict | None) -> tuple[bool, str]:
    """(admitted, what Kueue says) of a Workload: the message of its latest condition, e.g. ``couldn't assign
    flavors to pod set head: flavor cpu doesn't match node affinity``."""
    if workload is None:
        return False, "no Workload yet (is the kind integrated with Kueue, and the queue-name label set?)"
    conditions = (workload.get("status") or {}).get("conditions") or []
    latest = max(conditions, key=lambda c: c.get("lastTransitionTime", ""), default=None)
    said = (
        f"{latest['type']}={latest['status']}: {latest.get('message', '')}" if latest else "no condition yet"
    )
    return admitted(workload), f"Workload {_name(workload)} {said}"


def judge_gang_admission(workload: dict) -> Judgement:
    """Admitted all at once: every pod set is assigned its full count in one admission."""
    out = Judgement()
    requested = {ps["name"]: ps.get("count", 1) for ps in workload.get("spec", {}).get("podSets", [])}
    admission = (workload.get("status") or {}).get("admission") or {}
    assigned = {
        a["name"]: a.get("count", requested.get(a["name"], 0)) for a in admission.get("podSetAssignments", [])
    }
    out.facts = {"requested": requested, "assigned": assigned}
    if not condition_true(workload, "Admitted"):
        out.problems.append(f"Workload {_name(workload)} is not admitted")
    for name, count in requested.items():
        if assigned.get(name) != count:
            out.problems.append(
                f"Workload {_name(workload)} pod set {name}: {assigned.get(name, 0)} of {count} "
                f"admitted (not all-or-nothing)"
            )
    return out


def judge_gang_held(workload: dict | None, pods: dict) -> Judgement:
    """A too-large workload holds no quota and has no pod running: nothing, rather than part of it."""
    out = Judgement()
    if workload is None:
        out.problems.append(
            "Kueue created no Workload for the oversized RayJob (is ray.io/rayjob integrated?)"
        )
        return out
    if condition_true(workload, "QuotaReserved") or condition_true(workload, "Admitted"):
        out.problems.append(f"Workload {_name(workload)} was admitted although it exceeds every quota")
    running = [
        p["metadata"]["name"]
        for p in pods.get("items", [])
        if p.get("status", {}).get("phase") in ("Pending", "Running")
    ]
    out.facts = {
        "pods": running,
        "pending_reason": (condition(workload, "QuotaReserved") or {}).get("message"),
    }
    if running:
        out.problems.append(
            f"{len(running)} pod(s) of the oversized RayJob exist ({', '.join(running[:3])}): "
            f"admission was not all-or-nothing"
        )
    return out


def judge_preemption(low: dict | None, high: dict | None) -> Judgement:
    """The low-priority Workload was evicted for preemption and the high-priority one admitted."""
    out = Judgement()
    evicted = condition(low, "Evicted") if low else None
    preempted = condition(low, "Preempted") if low else None
    out.facts = {"low_evicted": evicted, "low_preempted": preempted, "high_admitted": admitted(high)}
    if low is None or not (
        (evicted or {}).get("status") == "True" or (preempted or {}).get("status") == "True"
    ):
        out.problems.append("the low-priority Workload was not evicted or preempted")
    if not admitted(high):
        out.problems.append("the high-priority Workload was not admitted")
    return out


def count_ready_nodes(node_list: dict, pool: str) -> int:
    return sum(condition_true(n, "Ready") for n in nodes_by_pool(node_list).get(pool, []))


# --- accelerators ------------------------------------------------------------------------------

_GPU_LINE = re.compile(r"^GPU (\d+): (.+?) \(UUID: (GPU-[0-9a-fA-F-]+)\)")


def parse_nvidia_smi_list(text: str) -> list[dict[str, str]]:
    """``nvidia-smi -L`` lines -> [{index, name, uuid}]."""
    found = []
    for line in text.splitlines():
        match = _GPU_LINE.match(line.strip())
        if match:
            found.append({"index": match.group(1), "name": match.group(2), "uuid": match.group(3)})
    return found


def shm_size_bytes(df_output: str) -> int:
    """Size of /dev/shm from POSIX ``df -Pk /dev/shm`` output."""
    return int(df_output.strip().splitlines()[-1].split()[1]) * 1024


# --- observability -----------------------------------------------------------------------------


def judge_prometheus_targets(targets: dict, wanted: dict[str, str]) -> Judgement:
    """``wanted`` maps a name to a regex over scrape pool / job; each needs an active target that is up."""
    out = Judgement()
    active = (targets.get("data") or {}).get("activeTargets") or []
    for name, pattern in wanted.items():
        regex = re.compile(pattern)
        matching = [
            t
            for t in active
            if regex.search(t.get("scrapePool", "")) or regex.search((t.get("labels") or {}).get("job", ""))
        ]
        up = [t for t in matching if t.get("health") == "up"]
        out.facts[name] = {"targets": len(matching), "up": len(up)}
        if not matching:
            out.problems.append(
                f"Prometheus has no target for {name} (scrape pool or job matching /{pattern}/); "
                f"is its ServiceMonitor / PodMonitor selected by Prometheus?"
            )
        elif not up:
            errors = "; ".join(sorted({t.get("lastError", "") for t in matching if t.get("lastError")}))[:300]
            out.problems.append(f"all {len(matching)} Prometheus target(s) for {name} are down: {errors}")
    return out


def judge_query_has_series(answer: dict, metric: str) -> Judgement:
    """A Prometheus instant query returned at least one series."""
    out = Judgement()
    if answer.get("status") != "success":
        out.problems.append(f"query {metric} failed: {answer.get('error', answer)}")
        return out
    series = (answer.get("data") or {}).get("result") or []
    out.facts[metric] = [
        {"labels": s.get("metric", {}), "value": s.get("value", [None, None])[1]} for s in series[:8]
    ]
    if not series:
        out.problems.append(
            f"Prometheus has no series of {metric}: dcgm-exporter is not scraped or not running "
            f"on the GPU nodes"
        )
    return out


# --- workloads ---------------------------------------------------------------------------------


def rayjob_outcome(rayjob: dict) -> tuple[bool, str]:
    """(finished, description) of a RayJob's status."""
    status = rayjob.get("status") or {}
    deployment = status.get("jobDeploymentStatus", "")
    job_status = status.get("jobStatus", "")
    finished = deployment in ("Complete", "Failed") or job_status in ("SUCCEEDED", "FAILED", "STOPPED")
    message = status.get("message") or status.get("reason") or ""
    return (
        finished,
        f"jobDeploymentStatus={deployment or '-'} jobStatus={job_status or '-'} {message}".strip(),
    )


def rayjob_succeeded(rayjob: dict) -> bool:
    status = rayjob.get("status") or {}
    return status.get("jobStatus") == "SUCCEEDED" and status.get("jobDeploymentStatus") in ("Complete", "")


def rayservice_ready(rayservice: dict) -> tuple[bool, str]:
    status = rayservice.get("status") or {}
    ready = condition_true(rayservice, "Ready")
    detail = (condition(rayservice, "Ready") or {}).get("message") or status.get("serviceStatus") or ""
    return ready, detail


def judge_chat_completion(answer: dict, model: str) -> Judgement:
    """An OpenAI chat completion answer: the model named, a non-empty assistant message, tokens counted."""
    out = Judgement()
    choices = answer.get("choices") or []
    content = (choices[0].get("message") or {}).get("content") if choices else None
    usage = answer.get("usage") or {}
    out.facts = {
        "model": answer.get("model"),
        "content": content,
        "finish_reason": choices[0].get("finish_reason") if choices else None,
        "usage": usage,
    }
    if answer.get("object") != "chat.completion":
        out.problems.append(f"answer object is {answer.get('object')!r}, not 'chat.completion'")
    if answer.get("model") != model:
        out.problems.append(f"answer names model {answer.get('model')!r}, not the served {model!r}")
    if not isinstance(content, str) or not content.strip():
        out.problems.append("the answer holds no assistant text")
    if not usage.get("completion_tokens"):
        out.problems.append("the answer reports no completion tokens")
    return out
