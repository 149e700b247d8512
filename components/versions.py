"""Every pinned chart, image, CRD and runtime version, in one place.

Each pin can be overridden by an environment variable named ``PARK_<NAME>`` (for example
``PARK_KUBERAY_VERSION=1.7.1``), the way KubeRay's ``support/defaults.go`` does, so a platform
team can try a newer release without forking. Nothing else in the project spells a version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _pin(name: str, default: str) -> str:
    return os.environ.get(f"PARK_{name}", default)


@dataclass(frozen=True)
class Chart:
    """Coordinates of a Helm chart: where it lives and which version we install."""

    name: str
    version: str
    repo: str
    """Helm repository URL, or an ``oci://`` registry path (then ``name`` is the last path segment)."""


KUBERAY_VERSION = _pin("KUBERAY_VERSION", "1.7.0")
KUEUE_VERSION = _pin("KUEUE_VERSION", "v0.19.2")
KUBE_PROMETHEUS_STACK_VERSION = _pin("KUBE_PROMETHEUS_STACK_VERSION", "88.5.3")
DCGM_EXPORTER_VERSION = _pin("DCGM_EXPORTER_VERSION", "4.8.2")
NVIDIA_DEVICE_PLUGIN_VERSION = _pin("NVIDIA_DEVICE_PLUGIN_VERSION", "0.20.0")
GPU_OPERATOR_VERSION = _pin("GPU_OPERATOR_VERSION", "v26.7.0")
RAY_VERSION = _pin("RAY_VERSION", "2.60.0")

KUBERAY_CHART = Chart("kuberay-operator", KUBERAY_VERSION, "https://ray-project.github.io/kuberay-helm/")
KUEUE_CHART = Chart("kueue", KUEUE_VERSION.lstrip("v"), "oci://registry.k8s.io/kueue/charts/kueue")
KUBE_PROMETHEUS_STACK_CHART = Chart(
    "kube-prometheus-stack", KUBE_PROMETHEUS_STACK_VERSION, "https://prometheus-community.github.io/helm-charts"
)
DCGM_EXPORTER_CHART = Chart("dcgm-exporter", DCGM_EXPORTER_VERSION, "https://nvidia.github.io/dcgm-exporter/helm-charts")
NVIDIA_DEVICE_PLUGIN_CHART = Chart(
    "nvidia-device-plugin", NVIDIA_DEVICE_PLUGIN_VERSION, "https://nvidia.github.io/k8s-device-plugin"
)
GPU_OPERATOR_CHART = Chart("gpu-operator", GPU_OPERATOR_VERSION, "https://helm.ngc.nvidia.com/nvidia")

# Container images the workloads run in. The CPU image serves the kind profile and CPU fallback.
RAY_IMAGE_GPU = _pin("RAY_IMAGE_GPU", f"rayproject/ray:{RAY_VERSION}-py311-gpu")
RAY_IMAGE_CPU = _pin("RAY_IMAGE_CPU", f"rayproject/ray:{RAY_VERSION}-py311-cpu")

# The reference workloads' image: the Ray image above plus park-stack (workloads/Dockerfile). A team builds
# and pushes it to its own registry (on kind: `kind load docker-image`), then points these pins at it.
WORKLOAD_IMAGE = _pin("WORKLOAD_IMAGE", "park-stack/workloads:0.1.0")
"""CPU variant (kind profile, CPU pools), built FROM ``RAY_IMAGE_CPU``."""
WORKLOAD_IMAGE_GPU = _pin("WORKLOAD_IMAGE_GPU", f"{WORKLOAD_IMAGE}-gpu")
"""GPU variant, built FROM ``RAY_IMAGE_GPU``."""

# API versions of the custom resources we render.
RAY_API_VERSION = "ray.io/v1"
KUEUE_API_VERSION = "kueue.x-k8s.io/v1beta2"

# Kubernetes minor versions that both the pinned KubeRay and Kueue support (inclusive).
KUBERNETES_MIN = (1, 30)
KUBERNETES_MAX = (1, 35)
DEFAULT_KUBERNETES_VERSION = "1.33"

# Where the vendored CRD schemas live: ../shared/schemas beside the checkout, or PARK_CRD_SCHEMA_DIR.
CRD_SCHEMA_DIR_ENV = "PARK_CRD_SCHEMA_DIR"
