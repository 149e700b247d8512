"""Storage the workloads can reach from their pods.

On aws and gcp storage is a bucket reached with the Ray service account's cloud identity; nothing to
apply in the cluster beyond the storage ConfigMap (namespaces add-on). On kind the storage location is a
host folder mounted into every kind node (``storage.localPath``). Team namespaces enforce the
``baseline`` Pod Security level, which forbids ``hostPath`` volumes in pods, so the folder is offered as a
statically bound PersistentVolume + PersistentVolumeClaim per team namespace: pods mount the claim
``park-storage`` at the same path, and ``file://<localPath>`` means the same thing in every pod.

A shared filesystem (FSx for Lustre on aws through the FSx CSI driver, Filestore on gcp over NFS) is offered
the same way, as the claim ``park-shared-fs`` in each team namespace. A PersistentVolume binds one claim, so
each team namespace gets its own volume pointing at the same filesystem.
"""

from __future__ import annotations

from typing import Any

from park.components.manifests.common import AddonManifests, ClusterFacts, metadata
from park.components.spec import StackSpec, Team

PVC_NAME = "park-storage"
"""Claim name in each team namespace on kind; workloads mount it at ``spec.storage.local_path``."""
SHARED_FS_PVC_NAME = "park-shared-fs"
"""Claim name of the shared filesystem in each team namespace; workloads mount it at its ``mountPath``."""
FSX_CSI_DRIVER = "fsx.csi.aws.com"
CAPACITY = "100Gi"
"""Nominal: a hostPath volume is not size-limited; the figure only lets the claim bind."""


def uses_host_path(spec: StackSpec) -> bool:
    """Storage is a folder of the host (kind), not a bucket."""
    return spec.capabilities.bucket_scheme is None


def uses_object_storage(spec: StackSpec) -> bool:
    return not uses_host_path(spec)


def volume_name(spec: StackSpec, team: Team) -> str:
    return f"{spec.cluster_name}-storage-{team.namespace_name}"[:253]


def persistent_volume(spec: StackSpec, team: Team) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": metadata(volume_name(spec, team)),
        "spec": {
            "capacity": {"storage": CAPACITY},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": spec.storage.local_path, "type": "DirectoryOrCreate"},
            # Reserved for this team's claim, so no other claim can bind it.
            "claimRef": {"namespace": team.namespace_name, "name": PVC_NAME},
        },
    }


def persistent_volume_claim(spec: StackSpec, team: Team) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": metadata(PVC_NAME, team.namespace_name),
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",  # static binding: no provisioner
            "volumeName": volume_name(spec, team),
            "resources": {"requests": {"storage": CAPACITY}},
        },
    }


def shared_volume_name(spec: StackSpec, team: Team) -> str:
    return f"{spec.cluster_name}-shared-fs-{team.namespace_name}"[:253]


def shared_volume_source(shared: dict[str, str]) -> dict[str, Any]:
    """The PersistentVolume source for a shared filesystem described by ``ClusterFacts.shared_filesystem``."""
    if shared["kind"] == "fsx-lustre":
        return {"csi": {"driver": FSX_CSI_DRIVER, "volumeHandle": shared["fileSystemId"],
                        "volumeAttributes": {"dnsname": shared["dnsName"], "mountname": shared["mountName"]}}}
    if shared["kind"] == "filestore":
        return {"nfs": {"server": shared["server"], "path": f"/{shared['share'].lstrip('/')}"}}
    raise ValueError(f"unknown shared filesystem kind {shared['kind']!r}; known: fsx-lustre, filestore")


def shared_filesystem_volumes(spec: StackSpec, team: Team, shared: dict[str, str]) -> list[dict[str, Any]]:
    capacity = f"{spec.storage.shared_filesystem.capacity_gib}Gi" if spec.storage.shared_filesystem else CAPACITY
    volume = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": metadata(shared_volume_name(spec, team)),
        "spec": {
            "capacity": {"storage": capacity},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            **shared_volume_source(shared),
            "claimRef": {"namespace": team.namespace_name, "name": SHARED_FS_PVC_NAME},
        },
    }
    claim = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": metadata(SHARED_FS_PVC_NAME, team.namespace_name),
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                 "volumeName": shared_volume_name(spec, team), "resources": {"requests": {"storage": capacity}}},
    }
    return [volume, claim]


def build(spec: StackSpec, facts: ClusterFacts) -> AddonManifests:
    objects: list[dict[str, Any]] = []
    for team in spec.teams:
        if uses_host_path(spec):
            objects += [persistent_volume(spec, team), persistent_volume_claim(spec, team)]
        if facts.shared_filesystem is not None:
            objects += shared_filesystem_volumes(spec, team, facts.shared_filesystem)
    return AddonManifests("storage", objects=tuple(objects))
