"""The Platform component: a cluster from the cloud adapter, then every add-on in order.

``Platform(name, spec)`` asks the cloud's adapter for a cluster (``load_adapter(spec.cloud).provision``),
turns the handle's outputs into :class:`ClusterFacts`, and installs the add-ons on the cluster's
provider. Add-ons wait for the adapter's ``depends_on`` (node groups, managed add-ons) and for the add-ons
listed in :data:`ADDON_DEPENDENCIES`: namespaces (with their Pod Security labels and policies) before
anything else; observability before KubeRay, whose chart ships a ServiceMonitor.
"""

from __future__ import annotations

import pulumi
from park.components.addons import ADDONS, AddonArgs, ManifestAddon
from park.components.clouds import ClusterHandle, load_adapter
from park.components.manifests import ClusterFacts, kueue, observability
from park.components.spec import StackSpec

ADDON_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "namespaces": (),
    "storage": ("namespaces",),
    "observability": ("namespaces",),
    "gpu": ("namespaces",),
    "kuberay": ("namespaces", "observability"),
    "kueue": ("namespaces",),
    "autoscaler": ("namespaces",),
}
"""Add-on -> the add-ons it waits for (the Prometheus Operator CRDs come with observability)."""


def cluster_facts(handle: ClusterHandle) -> pulumi.Output[ClusterFacts]:
    """The handle's outputs as the one value the manifest builders take."""
    return pulumi.Output.all(handle.storage_uri, handle.ray_service_account_annotations,
                             handle.shared_filesystem).apply(
        lambda v: ClusterFacts(storage_uri=v[0], ray_service_account_annotations=dict(v[1] or {}),
                               shared_filesystem=dict(v[2]) if v[2] else None))


class Platform(pulumi.ComponentResource):
    """A PARK stack: cluster, node pools, storage and identity from the cloud adapter, then the add-ons."""

    kubeconfig: pulumi.Output[str]
    """Kubeconfig of the cluster (secret)."""
    cluster_name: pulumi.Output[str]
    queue_names: pulumi.Output[dict[str, str]]
    """Team -> LocalQueue name its workloads use."""
    storage_uri: pulumi.Output[str]
    grafana_service: pulumi.Output[str | None]
    """``namespace/service:port`` of Grafana, None when Grafana is off."""
    prometheus_service: pulumi.Output[str | None]
    """``namespace/service:port`` of Prometheus, None when Prometheus is off."""

    def __init__(self, name: str, spec: StackSpec, opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:index:Platform", name, None, opts)
        self.spec = spec
        self.handle = load_adapter(spec.cloud).provision(name, spec, self)
        facts = cluster_facts(self.handle)

        self.addons: dict[str, ManifestAddon] = {}
        for addon_name, addon_class in ADDONS.items():
            waits_for = [*self.handle.depends_on, *(self.addons[dep] for dep in ADDON_DEPENDENCIES[addon_name])]
            self.addons[addon_name] = addon_class(
                f"{name}-{addon_name}",
                AddonArgs(spec=spec, provider=self.handle.provider, facts=facts, depends_on=waits_for),
                opts=pulumi.ResourceOptions(parent=self, depends_on=waits_for))

        self.kubeconfig = pulumi.Output.secret(self.handle.kubeconfig)
        self.cluster_name = self.handle.cluster_name
        self.queue_names = pulumi.Output.from_input(kueue.queue_names(spec))
        self.storage_uri = self.handle.storage_uri
        self.grafana_service = pulumi.Output.from_input(observability.grafana_address(spec))
        self.prometheus_service = pulumi.Output.from_input(observability.prometheus_address(spec))
        self.register_outputs({
            "kubeconfig": self.kubeconfig,
            "clusterName": self.cluster_name,
            "queueNames": self.queue_names,
            "storageUri": self.storage_uri,
            "grafanaService": self.grafana_service,
            "prometheusService": self.prometheus_service,
        })
