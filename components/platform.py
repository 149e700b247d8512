"""The Platform component: a cluster from the cloud adapter, then every add-on in order.

``Platform(name, spec)`` asks the cloud's adapter for a cluster (``load_adapter(spec.cloud).provision``),
turns the handle's outputs into :class:`ClusterFacts`, and installs the add-ons on the cluster's
provider. Add-ons wait for the adapter's ``depends_on`` (node groups, managed add-ons) and for
:data:`FIRST_ADDON`. Everything else about order is derived from the rendered charts: each add-on is given
what earlier add-ons declared to serve custom resource kinds (``ManifestAddon.crd_providers``), so a release
or object group creating a ServiceMonitor waits for the Prometheus Operator CRDs wherever they come from.

The tree under a Platform: the adapter's concept components (network, cluster with its node pools, storage;
docs/architecture.md#pulumi-components) and one component per add-on. docs/resource-tree.md shows it.
"""

from __future__ import annotations

from typing import TypeVar, cast

import pulumi
from park.components.addons import ADDONS, AddonArgs, Kind, Kueue, ManifestAddon, Namespaces, Observability
from park.components.clouds import ClusterHandle, load_adapter
from park.components.manifests import ClusterFacts
from park.components.spec import StackSpec

AddonT = TypeVar("AddonT", bound=ManifestAddon)

FIRST_ADDON = Namespaces.NAME
"""The add-on every other one waits for. Not about CRDs, so not derived: it creates the namespaces the
releases install into (``create_namespace=False``) with their Pod Security labels and NetworkPolicies, which
must be in place before the first pod starts there."""


def check_addon_order(addons: dict[str, ManifestAddon]) -> None:
    """Refuse an add-on that creates custom resources whose CRDs only a later add-on serves: it could not
    wait for them (Pulumi's ``depends_on`` names resources already declared)."""
    for position, (name, addon) in enumerate(addons.items()):
        for later_name, later in list(addons.items())[position + 1:]:
            if early := sorted(addon.unserved_kinds & set(later.crd_providers)):
                raise RuntimeError(f"add-on {name} creates {early}, whose CRDs add-on {later_name} serves; "
                                   f"move {later_name} before {name} in park.components.addons.ADDONS")


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
        """Add-on name (``ManifestAddon.NAME``) -> component, in apply order; :meth:`addon` gives one typed."""
        crd_providers: dict[Kind, tuple[pulumi.Resource, ...]] = {}
        for addon_class in ADDONS:
            first = [self.addons[FIRST_ADDON]] if addon_class.NAME != FIRST_ADDON else []
            waits_for = [*self.handle.depends_on, *first]
            addon = addon_class(
                f"{name}-{addon_class.NAME}",
                AddonArgs(spec=spec, provider=self.handle.provider, facts=facts, depends_on=waits_for,
                          crd_providers=dict(crd_providers)),
                opts=pulumi.ResourceOptions(parent=self, depends_on=waits_for))
            crd_providers.update(addon.crd_providers)
            self.addons[addon_class.NAME] = addon
        check_addon_order(self.addons)

        self.kubeconfig = pulumi.Output.secret(self.handle.kubeconfig)
        self.cluster_name = self.handle.cluster_name
        self.queue_names = self.addon(Kueue).queue_names
        self.storage_uri = self.handle.storage_uri
        self.grafana_service = self.addon(Observability).grafana_service
        self.prometheus_service = self.addon(Observability).prometheus_service
        self.register_outputs({
            "kubeconfig": self.kubeconfig,
            "clusterName": self.cluster_name,
            "queueNames": self.queue_names,
            "storageUri": self.storage_uri,
            "grafanaService": self.grafana_service,
            "prometheusService": self.prometheus_service,
        })

    def addon(self, addon_class: type[AddonT]) -> AddonT:
        """The installed add-on of that class, typed: ``platform.addon(Kueue).queue_names``."""
        return cast(AddonT, self.addons[addon_class.NAME])
