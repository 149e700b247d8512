"""The KubeRay operator: one Helm release in ``kuberay-system`` on the system pool, metrics on.

The chart's ``crds/`` holds the RayCluster / RayJob / RayService / RayCronJob CRDs (up to 1.4 MB each); the
Pulumi add-on applies them server-side as their own resources (no client-side apply annotation limit, and
they upgrade with the chart) and installs the release with ``skip_crds``. The operator's own ServiceMonitor
is enabled when Prometheus is installed; the release then waits for the Prometheus Operator CRDs, an order
derived from the rendered chart (``park.components.addons``).
"""

from __future__ import annotations

from typing import Any

from park.components import versions
from park.components.manifests import observability
from park.components.manifests.common import (
    KUBERAY_NAMESPACE,
    AddonManifests,
    ClusterFacts,
    HelmRelease,
    system_pool_selector,
)
from park.components.spec import StackSpec

NAMESPACE = KUBERAY_NAMESPACE
RELEASE_NAME = "kuberay-operator"


def operator_values(spec: StackSpec) -> dict[str, Any]:
    return {
        "nodeSelector": system_pool_selector(spec),
        # The chart hardens the container only; the same rules at pod level (checkov CKV_K8S_29)
        "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "metrics": {"enabled": True, "serviceMonitor": {"enabled": observability.installs_prometheus(spec)}},
    }


def build(spec: StackSpec, facts: ClusterFacts) -> AddonManifests:
    del facts
    release = HelmRelease(RELEASE_NAME, NAMESPACE, versions.KUBERAY_CHART, operator_values(spec))
    return AddonManifests("kuberay", releases=(release,))
