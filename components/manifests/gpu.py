"""GPU enablement: the NVIDIA device plugin, with time-slicing for pools that share GPUs.

Installed only where the stack has GPU pools and the cloud does not run its own device plugin
(``CloudCapabilities.installs_device_plugin``: GKE does). The plugin runs on the GPU pools only (node
affinity on :data:`~park.components.spec.POOL_LABEL`) and tolerates their taints.

Time-slicing is per pool: the chart's config map holds one named config per sharing pool plus a
``default`` without sharing, and the plugin's config manager picks a node's config from the node label
:data:`~park.components.spec.DEVICE_PLUGIN_CONFIG_LABEL`, which ``StackSpec.node_labels`` puts on sharing pools.
"""

from __future__ import annotations

from typing import Any

import yaml
from park.components import versions
from park.components.manifests.common import (
    DEVICE_PLUGIN_NAMESPACE,
    AddonManifests,
    ClusterFacts,
    HelmRelease,
    gpu_pool_affinity,
    gpu_pool_tolerations,
)
from park.components.spec import GPU_RESOURCE, NodePool, StackSpec

NAMESPACE = DEVICE_PLUGIN_NAMESPACE
RELEASE_NAME = "nvidia-device-plugin"
DEFAULT_CONFIG = "default"


def installs_device_plugin(spec: StackSpec) -> bool:
    return spec.has_gpus and not spec.capabilities.installs_device_plugin


def sharing_pools(spec: StackSpec) -> list[NodePool]:
    return [p for p in spec.gpu_pools if p.gpu_sharing is not None]


def plugin_config(pool: NodePool | None) -> dict[str, Any]:
    """The device plugin config (version v1) for a pool; ``None`` gives the no-sharing default."""
    config: dict[str, Any] = {"version": "v1", "flags": {"migStrategy": "none"}}
    if pool is not None and pool.gpu_sharing is not None:
        config["sharing"] = {"timeSlicing": {
            # Keep the resource name nvidia.com/gpu, so quotas and pod requests do not change with sharing;
            # a pod asking for more than one slice gets an error instead of two slices of one GPU.
            "renameByDefault": False,
            "failRequestsGreaterThanOne": True,
            "resources": [{"name": GPU_RESOURCE, "replicas": pool.gpu_sharing.replicas}],
        }}
    return config


def device_list_strategy(spec: StackSpec) -> str:
    """How the plugin passes a pod's GPUs to the node's NVIDIA container toolkit; it must be what the toolkit
    reads (``CloudCapabilities.isolates_unrequested_gpus``). ``volume-mounts`` where nodes refuse
    ``NVIDIA_VISIBLE_DEVICES`` from unprivileged containers (toolkit ``accept-nvidia-visible-devices-as-volume-
    mounts = true``, ``...-envvar-when-unprivileged = false``); ``envvar`` where the toolkit keeps its packaged
    defaults, which ignore volume-mount device lists (EKS AL2023 NVIDIA AMI)."""
    return "volume-mounts" if spec.capabilities.isolates_unrequested_gpus else "envvar"


def device_plugin_values(spec: StackSpec) -> dict[str, Any]:
    values: dict[str, Any] = {
        # Replace the chart's default affinity (node-feature-discovery labels, which EKS nodes lack).
        "affinity": gpu_pool_affinity(spec),
        "tolerations": gpu_pool_tolerations(spec),
        # Stated even where it is the plugin's default, so the values say what the nodes must accept.
        "deviceListStrategy": device_list_strategy(spec),
    }
    pools = sharing_pools(spec)
    if pools:
        config_map = {DEFAULT_CONFIG: yaml.safe_dump(plugin_config(None), sort_keys=False)}
        for pool in pools:
            config_map[pool.name] = yaml.safe_dump(plugin_config(pool), sort_keys=False)
        values["config"] = {"map": config_map, "default": DEFAULT_CONFIG}
    return values


def build(spec: StackSpec, facts: ClusterFacts) -> AddonManifests:
    del facts
    if not installs_device_plugin(spec):
        return AddonManifests("gpu")
    release = HelmRelease(RELEASE_NAME, NAMESPACE, versions.NVIDIA_DEVICE_PLUGIN_CHART, device_plugin_values(spec))
    return AddonManifests("gpu", releases=(release,))
