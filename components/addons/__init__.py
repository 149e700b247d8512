"""Cloud-neutral Kubernetes add-ons as Pulumi components: each applies what its manifest builder returns.

An add-on installs its Helm releases (``helm.v3.Release``), then applies its plain objects with one
``yaml.v2.ConfigGroup`` that depends on those releases (operators before their custom resources). The
objects are built inside ``Output.apply`` from the cluster's facts (storage URI, identity annotations),
so the values the cloud adapter computes flow into the manifests; the builder is the same pure function
``park render`` and the tests call, so there is one source of truth.

Ordering between add-ons (namespaces first, ...) is the Platform's job, through ``depends_on``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi
import pulumi_kubernetes as k8s
from park.components.manifests import BUILDERS, ClusterFacts, HelmRelease
from park.components.spec import StackSpec

HELM_TIMEOUT_SECONDS = 900
"""kube-prometheus-stack and the operators' webhooks can take several minutes to become ready."""


@dataclass(frozen=True)
class AddonArgs:
    """Inputs every add-on takes."""

    spec: StackSpec
    """The validated stack spec."""
    provider: k8s.Provider
    """Kubernetes provider of the target cluster; every child resource uses it."""
    facts: pulumi.Input[ClusterFacts] | None = None
    """Cluster facts from the cloud adapter (usually an Output). Default: ``ClusterFacts.for_spec(spec)``."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What every child waits for (node groups, earlier add-ons). Pulumi does not pass a component's own
    ``depends_on`` down to its children, so add-ons take it here. Default: nothing."""


def release_args(release: HelmRelease) -> k8s.helm.v3.ReleaseArgs:
    """Pulumi arguments for one Helm release: OCI charts by full URL, others by name in their repository."""
    if release.is_oci:
        chart, repository_opts = release.chart.repo, None
    else:
        chart, repository_opts = release.chart.name, k8s.helm.v3.RepositoryOptsArgs(repo=release.chart.repo)
    return k8s.helm.v3.ReleaseArgs(
        name=release.name,
        namespace=release.namespace,
        chart=chart,
        version=release.chart.version,
        repository_opts=repository_opts,
        values=release.values,
        create_namespace=False,  # the namespaces add-on creates them, with Pod Security labels
        timeout=HELM_TIMEOUT_SECONDS,
    )


class ManifestAddon(pulumi.ComponentResource):
    """Base of every add-on: releases first, then one ConfigGroup of objects depending on them."""

    TYPE: ClassVar[str]
    ADDON: ClassVar[str]
    """Key of the add-on's builder in :data:`park.components.manifests.BUILDERS`."""

    release_names: pulumi.Output[list[str]]
    object_count: pulumi.Output[int]

    def __init__(self, name: str, args: AddonArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        build = BUILDERS[self.ADDON]
        spec = args.spec
        planned = build(spec, ClusterFacts.for_spec(spec))
        waits_for = list(args.depends_on)

        def child(*after: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*waits_for, *after])

        self.releases = [k8s.helm.v3.Release(f"{name}-{release.name}", release_args(release), opts=child())
                         for release in planned.releases]

        def objects_for(facts: ClusterFacts) -> list[dict[str, Any]]:
            built = build(spec, facts)
            if built.releases != planned.releases:  # releases must not depend on facts: they are declared early
                raise RuntimeError(f"add-on {self.ADDON}: Helm releases changed with the cluster facts")
            return [dict(obj) for obj in built.objects]

        facts = args.facts if args.facts is not None else ClusterFacts.for_spec(spec)
        objects = pulumi.Output.from_input(facts).apply(objects_for)
        self.config_group: k8s.yaml.v2.ConfigGroup | None = None
        if planned.objects:
            self.config_group = k8s.yaml.v2.ConfigGroup(
                f"{name}-objects", objs=objects, opts=child(*self.releases))

        self.release_names = pulumi.Output.from_input([release.name for release in planned.releases])
        self.object_count = objects.apply(len)
        self.register_outputs({"releaseNames": self.release_names, "objectCount": self.object_count})


class Namespaces(ManifestAddon):
    """Namespaces with Pod Security labels, Ray service accounts, network policies, storage ConfigMaps."""

    TYPE = "park:addons:Namespaces"
    ADDON = "namespaces"


class Storage(ManifestAddon):
    """kind: the host storage folder as PersistentVolumes and claims (nothing on clouds)."""

    TYPE = "park:addons:Storage"
    ADDON = "storage"


class Observability(ManifestAddon):
    """kube-prometheus-stack, dcgm-exporter, Ray and Kueue monitors, Grafana dashboards."""

    TYPE = "park:addons:Observability"
    ADDON = "observability"


class Gpu(ManifestAddon):
    """The NVIDIA device plugin with per-pool time-slicing, where the cloud does not install one."""

    TYPE = "park:addons:Gpu"
    ADDON = "gpu"


class KubeRay(ManifestAddon):
    """The KubeRay operator."""

    TYPE = "park:addons:KubeRay"
    ADDON = "kuberay"


class Kueue(ManifestAddon):
    """The Kueue controller, then flavors, cluster and local queues, priority classes."""

    TYPE = "park:addons:Kueue"
    ADDON = "kueue"


class ClusterAutoscaler(ManifestAddon):
    """aws: the cluster autoscaler for the EKS managed node groups (nothing elsewhere)."""

    TYPE = "park:addons:ClusterAutoscaler"
    ADDON = "autoscaler"


ADDONS: dict[str, type[ManifestAddon]] = {cls.ADDON: cls for cls in (Namespaces, Storage, Observability, Gpu,
                                                                     KubeRay, Kueue, ClusterAutoscaler)}
"""Add-on name -> component class, in apply order (same keys and order as the builders)."""
