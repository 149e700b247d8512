"""Every pinned chart, image, CRD and runtime version, in one place.

Each pin can be overridden by an environment variable named ``PARK_<NAME>`` (for example
``PARK_KUBERAY_VERSION=1.7.1``), the way KubeRay's ``support/defaults.go`` does, so a platform
team can try a newer release without forking. Nothing else in the project spells a version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _pin(name: str, default: str) -> str:
    """The pin, or its ``PARK_<NAME>`` override; an empty variable (a CI variable left unset) is no override."""
    return os.environ.get(f"PARK_{name}") or default


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
# Chart version chosen without a registry check on this machine: confirm against the chart index before upgrading.
CLUSTER_AUTOSCALER_CHART = Chart(
    "cluster-autoscaler", _pin("CLUSTER_AUTOSCALER_VERSION", "9.50.1"), "https://kubernetes.github.io/autoscaler"
)
GPU_OPERATOR_CHART = Chart("gpu-operator", GPU_OPERATOR_VERSION, "https://helm.ngc.nvidia.com/nvidia")

# Container images the workloads run in. The CPU image serves the kind profile and CPU fallback.
RAY_IMAGE_GPU = _pin("RAY_IMAGE_GPU", f"rayproject/ray:{RAY_VERSION}-py311-gpu")
RAY_IMAGE_CPU = _pin("RAY_IMAGE_CPU", f"rayproject/ray:{RAY_VERSION}-py311-cpu")

# The reference workloads' image: the Ray image above plus park-stack (workloads/Dockerfile). These pins are
# the defaults of a stack's `workloads.image` / `workloads.gpuImage`; a team builds the image (`make image`),
# pushes it to its own registry (on kind: `park image load`) and sets those keys, or overrides the pins.
UNPUBLISHED_WORKLOAD_IMAGE = "park-stack/workloads:0.1.0"
"""The name ``make image`` builds when nothing else is set: in no registry, so only a kind cluster (after
``park image load``) can run it."""
WORKLOAD_IMAGE = _pin("WORKLOAD_IMAGE", UNPUBLISHED_WORKLOAD_IMAGE)
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


@dataclass(frozen=True)
class CrdFile:
    """One upstream CRD YAML the tests validate against, pinned by release tag and checksum.

    ``components/manifests/schemas.py`` fetches it from ``<base>/<repo>/<tag>/<path>`` (base: GitHub's raw file
    host, or a mirror laid out the same way) when no local schema folder exists, and keeps it only when its
    sha256 matches. Not overridable by ``PARK_*``: a checksum belongs to one file at one tag.
    """

    file: str
    """Name in the schema folder (``../shared/schemas``, ``$PARK_CRD_SCHEMA_DIR``, the cache)."""
    repo: str
    """GitHub ``owner/name``."""
    tag: str
    path: str
    """Path inside the repository at ``tag``."""
    sha256: str


_KUBERAY_CRDS = ("ray-project/kuberay", "v1.7.0", "ray-operator/config/crd/bases")
_KUEUE_CRDS = ("kubernetes-sigs/kueue", "v0.19.2", "config/components/crd/bases")
_PROMETHEUS_CRDS = ("prometheus-community/helm-charts", "kube-prometheus-stack-88.5.3",
                    "charts/kube-prometheus-stack/charts/crds/crds")
CRD_FILES: tuple[CrdFile, ...] = tuple(
    CrdFile(local, repo, tag, f"{folder}/{upstream}", sha256)
    for (repo, tag, folder), local, upstream, sha256 in (
        (_KUBERAY_CRDS, "kuberay-v1.7.0_ray.io_rayclusters.yaml", "ray.io_rayclusters.yaml",
         "c44704442eef0c6721ad40c1d66782c8bd3fdab9d3344306a5820910a679baa1"),
        (_KUBERAY_CRDS, "kuberay-v1.7.0_ray.io_rayjobs.yaml", "ray.io_rayjobs.yaml",
         "01a5cf3b17c1769fda44af7e82debcd98722f0c27b9ab84d084681c6649121f5"),
        (_KUBERAY_CRDS, "kuberay-v1.7.0_ray.io_rayservices.yaml", "ray.io_rayservices.yaml",
         "0a8fc325e6e22b9231c1f282b309555e2ecf94227ca20a03df3d1d9a403907ab"),
        (_KUEUE_CRDS, "kueue-v0.19.2_kueue.x-k8s.io_clusterqueues.yaml", "kueue.x-k8s.io_clusterqueues.yaml",
         "e0a5fc9b370c70f3d993d4f599865817338ecf94187b30b15b12ff33c579bd55"),
        (_KUEUE_CRDS, "kueue-v0.19.2_kueue.x-k8s.io_cohorts.yaml", "kueue.x-k8s.io_cohorts.yaml",
         "61fbe5ec55d45e7fae2d65321fb32517b197257ab78ad55316673183aac911c2"),
        (_KUEUE_CRDS, "kueue-v0.19.2_kueue.x-k8s.io_localqueues.yaml", "kueue.x-k8s.io_localqueues.yaml",
         "dd10ef8d3578e7212fa52763549e7b6be0949793a5b924495fcd293330109fed"),
        (_KUEUE_CRDS, "kueue-v0.19.2_kueue.x-k8s.io_resourceflavors.yaml", "kueue.x-k8s.io_resourceflavors.yaml",
         "19e339c47e9ca3fa2c9eeddd27715a512f765c4794ed859733408a9715720173"),
        (_KUEUE_CRDS, "kueue-v0.19.2_kueue.x-k8s.io_workloadpriorityclasses.yaml",
         "kueue.x-k8s.io_workloadpriorityclasses.yaml",
         "0b755726aab05b8def9a53ee15b201eed3846bcffd1ff5528fed123f4ae03519"),
        (_KUEUE_CRDS, "kueue-v0.19.2_kueue.x-k8s.io_workloads.yaml", "kueue.x-k8s.io_workloads.yaml",
         "1970ff6fcc5dc1a29e3f290ed736032c5d4509c94efe2c642d64a244ad1b8aa5"),
        (_PROMETHEUS_CRDS, "prometheus-operator-v0.93.1_monitoring.coreos.com_podmonitors.yaml",
         "crd-podmonitors.yaml", "41de2587baafa31240438654a3ae5dc19ef40296c31cb186855fa4ce85b03fb9"),
        (_PROMETHEUS_CRDS, "prometheus-operator-v0.93.1_monitoring.coreos.com_servicemonitors.yaml",
         "crd-servicemonitors.yaml", "3322d612f23bf144c887c94bf247b0b4a69189adf37c0d482d2c6267ffe906ab"),
    )
)
"""The CRDs of ``../shared/schemas`` (its README names each file's source; sha1s there, sha256s here, of the
same bytes): KubeRay v1.7.0, Kueue v0.19.2 and the Prometheus Operator monitors of kube-prometheus-stack 88.5.3."""

# --- cloud-side pins used by the cloud adapters (components/clouds/) ---

# kind: the release whose node images we pin, and one node image per Kubernetes minor, pinned by digest as
# kind's release notes publish them (a tag alone can be re-pushed). PARK_KIND_NODE_IMAGE overrides the
# image for every minor.
KIND_VERSION = _pin("KIND_VERSION", "v0.31.0")
KIND_NODE_IMAGES: dict[str, str] = {
    # 1.30 has no image in kind v0.31.0; this one is from kind v0.29.0 (works best effort with later kinds).
    "1.30": "kindest/node:v1.30.13@sha256:397209b3d947d154f6641f2d0ce8d473732bd91c87d9575ade99049aa33cd648",
    "1.31": "kindest/node:v1.31.14@sha256:6f86cf509dbb42767b6e79debc3f2c32e4ee01386f0489b3b2be24b0a55aac2b",
    "1.32": "kindest/node:v1.32.11@sha256:5fc52d52a7b9574015299724bd68f183702956aa4a2116ae75a63cb574b35af8",
    "1.33": "kindest/node:v1.33.7@sha256:d26ef333bdb2cbe9862a0f7c3803ecc7b4303d8cea8e814b481b09949d353040",
    "1.34": "kindest/node:v1.34.3@sha256:08497ee19eace7b4b5348db5c6a1591d7752b164530a36f855cb0f2bdcbadd48",
    "1.35": "kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f",
}


def kind_node_image(kubernetes_minor: str) -> str | None:
    """The kindest/node image for a Kubernetes minor ("1.33"), or None when none is pinned."""
    return os.environ.get("PARK_KIND_NODE_IMAGE") or KIND_NODE_IMAGES.get(kubernetes_minor)


# Lustre version of the optional FSx for Lustre file system on aws (PERSISTENT_2 needs 2.12 or later).
FSX_LUSTRE_VERSION = _pin("FSX_LUSTRE_VERSION", "2.15")


# --- cluster autoscaler: one image per Kubernetes minor -------------------------------------------------
# The cluster autoscaler is released per Kubernetes minor and supports that minor only; the chart's appVersion
# (9.50.1 -> v1.33.0) would run 1.33 whatever kubernetesVersion says. Tags are image tags promoted to
# registry.k8s.io/autoscaling/cluster-autoscaler: 1.30.5, 1.31.3 from kubernetes/k8s.io
# registry.k8s.io/images/k8s-staging-autoscaling/images.yaml; 1.32.5, 1.33.3, 1.34.2 from kubernetes/k8s.io
# pull request 8815 ("Promote Cluster Autoscaler images 1.32.5, 1.33.3 & 1.34.2"). 1.35.1 is NOT verified
# against the promotion manifest here (taken from aws-ia/terraform-aws-eks-blueprints-addons pull request 516,
# which cites the autoscaler releases page): check it before relying on 1.35.
# PARK_CLUSTER_AUTOSCALER_IMAGE_TAG overrides the tag for every minor.
CLUSTER_AUTOSCALER_IMAGE_TAGS: dict[str, str] = {
    "1.30": "v1.30.5",
    "1.31": "v1.31.3",
    "1.32": "v1.32.5",
    "1.33": "v1.33.3",
    "1.34": "v1.34.2",
    "1.35": "v1.35.1",
}


def cluster_autoscaler_image_tag(kubernetes_minor: str) -> str:
    """The cluster-autoscaler image tag for a Kubernetes minor ("1.33"); ValueError names the pinned minors."""
    override = os.environ.get("PARK_CLUSTER_AUTOSCALER_IMAGE_TAG")
    if override:
        return override
    try:
        return CLUSTER_AUTOSCALER_IMAGE_TAGS[kubernetes_minor]
    except KeyError:
        raise ValueError(f"no cluster-autoscaler image pinned for Kubernetes {kubernetes_minor}; pinned: "
                         f"{', '.join(CLUSTER_AUTOSCALER_IMAGE_TAGS)}") from None


# --- EKS managed add-ons: one version per add-on and Kubernetes minor -------------------------------------
# Unpinned, EKS installs its current default and a later `pulumi up` of the same program can get another one.
# vpc-cni, coredns and kube-proxy come from the "latest version of the Amazon EKS add-on type for each
# Kubernetes version" tables of the Amazon EKS User Guide (managing-vpc-cni, managing-coredns,
# managing-kube-proxy): coredns and kube-proxy as docs.amazonaws.cn/zh_cn/eks/latest/userguide/*.md publish them
# (the only snapshot found here that covers 1.30 to 1.35); vpc-cni v1.20.1-eksbuild.3 is the table's entry for
# 1.27 to 1.33 (awsdocs/amazon-eks-user-guide latest/ug/networking/managing-vpc-cni.adoc) and is used for 1.34
# and 1.35 UNVERIFIED (no table for them was found here). AWS publishes no per-minor table for
# eks-pod-identity-agent, aws-ebs-csi-driver and aws-fsx-csi-driver: those pins are versions seen in public
# use and are UNVERIFIED per minor. Check any pin with
#   aws eks describe-addon-versions --addon-name NAME --kubernetes-version 1.NN
# and override one add-on for every minor with PARK_EKS_ADDON_<NAME> (e.g. PARK_EKS_ADDON_VPC_CNI).
# vpc-cni enforces NetworkPolicy from v1.14.0-eksbuild.3 (enableNetworkPolicy); every pin here is later.
_EKS_ADDONS_ANY_MINOR = {
    "vpc-cni": "v1.20.1-eksbuild.3",
    "eks-pod-identity-agent": "v1.3.4-eksbuild.1",
    "aws-ebs-csi-driver": "v1.44.0-eksbuild.1",
    # NOT FOUND in any source here: check it before enabling storage.sharedFilesystem
    "aws-fsx-csi-driver": "v1.5.0-eksbuild.1",
}
"""Add-ons pinned to one version for every supported minor (see the sources above)."""
_EKS_ADDONS_BY_MINOR = {  # minor: (kube-proxy, coredns)
    "1.30": ("v1.30.14-eksbuild.28", "v1.11.4-eksbuild.33"),
    "1.31": ("v1.31.14-eksbuild.9", "v1.11.4-eksbuild.33"),
    "1.32": ("v1.32.13-eksbuild.5", "v1.11.4-eksbuild.33"),
    "1.33": ("v1.33.10-eksbuild.2", "v1.13.2-eksbuild.4"),
    "1.34": ("v1.34.6-eksbuild.2", "v1.13.2-eksbuild.4"),
    "1.35": ("v1.35.3-eksbuild.2", "v1.13.2-eksbuild.4"),
}
EKS_ADDON_VERSIONS: dict[str, dict[str, str]] = {
    minor: {**_EKS_ADDONS_ANY_MINOR, "kube-proxy": kube_proxy, "coredns": coredns}
    for minor, (kube_proxy, coredns) in _EKS_ADDONS_BY_MINOR.items()
}
"""Kubernetes minor -> EKS add-on name -> pinned version."""


def eks_addon_version(addon: str, kubernetes_minor: str) -> str:
    """The pinned version of an EKS managed add-on for a Kubernetes minor; ValueError when none is pinned."""
    override = os.environ.get(f"PARK_EKS_ADDON_{addon.upper().replace('-', '_')}")
    if override:
        return override
    try:
        return EKS_ADDON_VERSIONS[kubernetes_minor][addon]
    except KeyError:
        raise ValueError(f"no version of EKS add-on {addon!r} pinned for Kubernetes {kubernetes_minor}") from None
