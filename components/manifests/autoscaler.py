"""The Kubernetes cluster autoscaler, where the cloud has none of its own (EKS managed node groups).

It discovers this cluster's node groups by the tags EKS puts on their Auto Scaling groups and runs on the
system pool as ``kube-system/cluster-autoscaler``, the service account the aws adapter's Pod Identity
association trusts (so it needs no IAM annotation). GKE scales node pools itself; kind does not scale.
"""

from __future__ import annotations

from typing import Any

from park.components import versions
from park.components.conventions import CLUSTER_AUTOSCALER_SERVICE_ACCOUNT
from park.components.manifests.common import AddonManifests, ClusterFacts, HelmRelease, system_pool_selector
from park.components.spec import StackSpec

RELEASE_NAME = "cluster-autoscaler"


def installs_cluster_autoscaler(spec: StackSpec) -> bool:
    return spec.capabilities.needs_cluster_autoscaler


def autoscaler_values(spec: StackSpec) -> dict[str, Any]:
    _, service_account = CLUSTER_AUTOSCALER_SERVICE_ACCOUNT
    return {
        "cloudProvider": spec.cloud,
        # The autoscaler supports only its own Kubernetes minor; the chart's default tag is its appVersion.
        "image": {"tag": versions.cluster_autoscaler_image_tag(spec.kubernetes_version)},
        "awsRegion": spec.region,
        "autoDiscovery": {"clusterName": spec.cluster_name},
        "rbac": {"serviceAccount": {"create": True, "name": service_account}},
        "nodeSelector": system_pool_selector(spec),
        # The hardening the chart's values.yaml suggests (commented out there): its image runs as nobody and
        # keeps no state on disk (docs/security.md, checkov CKV_K8S_20/22/23/28/29/30/31/37/40).
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containerSecurityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                     "capabilities": {"drop": ["ALL"]}},
        "extraArgs": {
            # GPU nodes are expensive: pick the group that wastes least, and scale down idle nodes promptly.
            "expander": "least-waste",
            "balance-similar-node-groups": True,
            "skip-nodes-with-system-pods": False,
            "scale-down-unneeded-time": "5m",
        },
    }


def build(spec: StackSpec, facts: ClusterFacts) -> AddonManifests:
    del facts
    if not installs_cluster_autoscaler(spec):
        return AddonManifests("autoscaler")
    namespace, _ = CLUSTER_AUTOSCALER_SERVICE_ACCOUNT
    release = HelmRelease(RELEASE_NAME, namespace, versions.CLUSTER_AUTOSCALER_CHART, autoscaler_values(spec))
    return AddonManifests("autoscaler", releases=(release,))
