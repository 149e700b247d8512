"""Storage: a Ray worker, under the identity the stack gives it, writes to the stack's storage location and
the object reads back byte for byte.

- local: a Ray job on the run's head writes to the run's storage folder; it is read back here, outside Ray.
- cluster: a pod on the Ray workers' pool, as their service account with their mounts, writes and reads.
"""

from __future__ import annotations

import hashlib
import secrets
import shlex

from park.components.spec import POOL_LABEL, RAY_SERVICE_ACCOUNT, STORAGE_CONFIGMAP
from park.conformance.context import RunContext
from park.conformance.kube import KubeCluster, wait_until
from park.conformance.layers.table import CheckTable
from park.conformance.local import LocalMachine, tail
from park.conformance.model import CheckFailed, Passed
from park.conformance.probe import parse_result
from park.workloads import storage

checks = CheckTable("storage")


@checks.local("storage.read-write")
def local_storage(machine: LocalMachine, ctx: RunContext) -> Passed:
    nonce = f"{ctx.name} {secrets.token_hex(16)}"
    uri = storage.join(machine.spec.storage_uri, "conformance", ctx.run_id, "storage-probe.txt")
    entrypoint = shlex.join(
        ["python", "-m", "park.conformance.probe", "storage-roundtrip", "--uri", uri, "--nonce", nonce]
    )
    status, message, logs = machine.run_job("storage", entrypoint, {}, machine.time_left(120))
    reported = parse_result(logs)
    if status != "SUCCEEDED" or reported is None:
        raise CheckFailed(
            f"the storage probe job {status}: {message or 'no result printed'}; last output: {tail(logs)}"
        )
    back = storage.read_text(uri)  # read back here, outside Ray, the way a reader of results would
    if back != nonce:
        raise CheckFailed(
            f"{uri} holds {len(back)} bytes that differ from the {len(nonce)} written by the Ray "
            f"worker on {reported['host']}"
        )
    digest = hashlib.sha256(back.encode()).hexdigest()
    return Passed(
        f"a Ray worker wrote {uri} and it reads back byte for byte here (sha256 {digest[:12]}…)",
        {"uri": uri, "sha256": digest, "worker_host": reported["host"]},
    )


def storage_folder(cluster: KubeCluster) -> str:
    return storage.join(cluster.spec.storage_uri, "conformance", cluster.ctx.run_id)


def storage_probe(cluster: KubeCluster, nonce: str = "") -> dict:
    """A pod on the Ray workers' pool, as their service account with their mounts (on kind: the storage
    host folder; minus /dev/shm), that writes ``nonce`` to the stack's storage and reads it back."""
    uri = storage.join(storage_folder(cluster), "storage-probe.txt")
    template = cluster.worker_template()
    volumes = [v for v in template.get("volumes", []) if v.get("emptyDir", {}).get("medium") != "Memory"]
    names = {v["name"] for v in volumes}
    mounts = [m for c in template["containers"] for m in c.get("volumeMounts", []) if m["name"] in names]
    pool = cluster.spec.pool(template["nodeSelector"][POOL_LABEL])
    pod = cluster.probe_pod("storage", pool, cluster.image(gpu=False), volumes=volumes, mounts=mounts)
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


@checks.cluster("storage.read-write", creates=lambda cluster: [storage_probe(cluster)])
def cluster_storage(cluster: KubeCluster, ctx: RunContext) -> Passed:
    nonce = f"{ctx.name} {secrets.token_hex(16)}"
    cluster.remove_at_cleanup(storage_folder(cluster))
    pod = storage_probe(cluster, nonce)
    command = pod["spec"]["containers"][0]["command"]
    uri = command[command.index("--uri") + 1]
    cluster.create(pod)
    name = pod["metadata"]["name"]

    def finished() -> tuple[bool, str]:
        phase = (
            (cluster.api.get("v1", "Pod", name, cluster.namespace) or {})
            .get("status", {})
            .get("phase", "absent")
        )
        return phase in ("Succeeded", "Failed"), phase

    phase = wait_until(finished, cluster.time_left(300), f"storage probe pod {name} finished")
    logs = cluster.api.pod_log(cluster.namespace, name)
    cluster.release(pod)
    reported = parse_result(logs)
    if phase != "Succeeded" or not reported or not reported.get("same"):
        raise CheckFailed(
            f"the storage probe pod (service account {RAY_SERVICE_ACCOUNT}) {phase}: {logs[-500:]}"
        )
    return Passed(
        f"a pod running as {cluster.namespace}/{RAY_SERVICE_ACCOUNT} wrote {uri} and read it back "
        f"byte for byte (sha256 {reported['sha256'][:12]}…)",
        {"uri": uri, **reported},
    )
