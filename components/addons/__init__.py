"""Cloud-neutral Kubernetes add-ons as Pulumi components: each applies what its manifest builder returns.

One class per add-on (:data:`ADDONS`, in apply order): it names its builder (``build``) and sets outputs of its
own from what it applies (``Kueue.queue_names``, ``Observability.grafana_service``, ``Storage.claims``...),
besides the ``release_names`` and ``object_count`` every add-on has. All take :class:`AddonArgs`: they are the
same kind of thing (apply a pure builder's output on a cluster), and what one needs from another (the
namespaces first, the CRDs a later one's objects use) arrives there as ``depends_on`` and ``crd_providers``.

An add-on installs its Helm releases (``helm.v3.Release``), then applies its plain objects with one
``yaml.v2.ConfigGroup`` that depends on those releases (operators before their custom resources). The
objects are built inside ``Output.apply`` from the cluster's facts (storage URI, identity annotations),
so the values the cloud adapter computes flow into the manifests; the builder is the same pure function
``park render`` and the tests call, so there is one source of truth.

CRDs and the order around them come from the rendered charts (:func:`park.components.charts.render_release`),
not from a list: a chart's ``crds/`` folder is applied server-side as its own ``ConfigGroup`` and the
release is installed with ``skip_crds`` (Helm installs ``crds/`` once and never upgrades them, so a pinned
version bump would otherwise leave old CRDs behind). Every release and object group that creates a custom
resource waits for what serves its kind (:data:`CrdProviders`): the resource applying the CRD and the
release shipping it. Ordering between add-ons beyond that (namespaces first) is the Platform's job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pulumi
import pulumi_kubernetes as k8s
from park.components.charts import (
    ChartError,
    RenderedRelease,
    crd_kinds,
    custom_resource_kinds,
    render_release,
)
from park.components.manifests import (
    AddonManifests,
    Builder,
    ClusterFacts,
    HelmRelease,
    autoscaler,
    gpu,
    kuberay,
    kueue,
    namespaces,
    observability,
    storage,
)
from park.components.spec import StackSpec

HELM_TIMEOUT_SECONDS = 900
"""kube-prometheus-stack and the operators' webhooks can take several minutes to become ready."""

Kind = tuple[str, str]
"""(API group, kind) of a custom resource."""
CrdProviders = Mapping[Kind, tuple[pulumi.Resource, ...]]
"""Custom resource kind -> what a resource creating one waits for: the resource that applies the CRD and the
release shipping it (its operator serves the kind, and its admission webhooks validate it)."""

PATCH_FORCE_ANNOTATION = "pulumi.com/patchForce"
"""CRDs are owned by this stack alone: server-side apply takes their fields over from any earlier owner
(a Helm install that created them from ``crds/``), so a version bump is not refused as a field conflict."""


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
    crd_providers: CrdProviders = field(default_factory=dict)
    """What earlier add-ons declared to serve custom resource kinds (their :attr:`ManifestAddon.crd_providers`);
    a release or object group creating one of those kinds waits for them. Default: nothing."""


def release_args(release: HelmRelease, skip_crds: bool = False) -> k8s.helm.v3.ReleaseArgs:
    """Pulumi arguments for one Helm release: OCI charts by full URL, others by name in their repository.
    ``skip_crds`` when the chart's ``crds/`` are applied as their own resources."""
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
        skip_crds=skip_crds or None,  # unset, not false, where nothing is skipped: no diff on existing stacks
        timeout=HELM_TIMEOUT_SECONDS,
    )


def owned_crd(crd: dict[str, Any]) -> dict[str, Any]:
    """A chart's CRD as this stack applies it: unchanged but for :data:`PATCH_FORCE_ANNOTATION`."""
    metadata = dict(crd.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), PATCH_FORCE_ANNOTATION: "true"}
    return {**crd, "metadata": metadata}


def crd_manifest(crds: Iterable[dict[str, Any]]) -> str:
    """CRDs as one manifest for ``ConfigGroup(yaml=...)``: each CRD a one-line JSON document (JSON is YAML),
    ``---`` between them. One string rather than nested ``objs``: KubeRay's CRDs are megabytes, and as nested
    inputs the SDK would spend seconds serializing them on every preview."""
    return "---\n".join(json.dumps(owned_crd(crd), sort_keys=True) + "\n" for crd in crds)


def kinds_created(rendered: RenderedRelease) -> frozenset[Kind]:
    """Custom resource kinds a release creates: its objects and every hook Helm may run (not its tests)."""
    return custom_resource_kinds([*rendered.objects, *(h.object for h in rendered.hooks if not h.is_test)])


def _unique(resources: Iterable[pulumi.Resource]) -> list[pulumi.Resource]:
    return list({id(r): r for r in resources}.values())


class ManifestAddon(pulumi.ComponentResource):
    """Base of every add-on: the CRDs of its charts' ``crds/`` folders, its releases (each waiting for what
    serves the custom resources it renders), then one ConfigGroup of objects depending on them.

    A subclass names its builder (``build``, one of :data:`park.components.manifests.BUILDERS`) and turns
    what it applied into its own typed outputs (:meth:`typed_outputs`)."""

    TYPE: ClassVar[str]
    NAME: ClassVar[str]
    """Suffix of the add-on's resource name in a Platform (``park-aws-kueue``); the builder's key."""
    build: ClassVar[Builder]
    """The pure function of (spec, facts) that says what this add-on applies."""

    release_names: pulumi.Output[list[str]]
    """Helm release names, in install order."""
    object_count: pulumi.Output[int]
    """How many of park-stack's own objects the add-on applies (after the releases)."""

    def __init__(self, name: str, args: AddonArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        spec = args.spec
        planned = type(self).build(spec, ClusterFacts.for_spec(spec))
        try:
            rendered = [render_release(release, spec.kubernetes_version) for release in planned.releases]
        except ChartError as err:  # a chart that cannot be pulled or rendered: one line, no traceback
            raise pulumi.RunError(f"add-on {self.NAME}: {err}") from None
        waits_for = list(args.depends_on)
        providers: dict[Kind, tuple[pulumi.Resource, ...]] = dict(args.crd_providers)
        self.crd_providers: dict[Kind, tuple[pulumi.Resource, ...]] = {}
        """What this add-on declares to serve custom resource kinds (see :data:`CrdProviders`)."""
        self.unserved_kinds: set[Kind] = set()
        """Custom resource kinds this add-on creates that nothing declared before it serves (CRDs the
        cluster brings, or an add-on order the Platform rejects)."""

        def child(*after: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=args.provider,
                                          depends_on=_unique([*waits_for, *after]))

        def serving(kinds: Iterable[Kind], own: Sequence[pulumi.Resource] = ()) -> list[pulumi.Resource]:
            found: list[pulumi.Resource] = []
            for kind in sorted(kinds):
                if kind not in providers:
                    self.unserved_kinds.add(kind)
                    continue
                found += [p for p in providers[kind] if all(p is not o for o in own)]
            return found

        def provide(kinds: Iterable[Kind], *resources: pulumi.Resource) -> None:
            for kind in kinds:
                providers[kind] = self.crd_providers[kind] = (*providers.get(kind, ()), *resources)

        # A chart's crds/ folder, applied server-side before anything: Helm would install it once, never upgrade it.
        self.crd_groups: dict[str, k8s.yaml.v2.ConfigGroup] = {}
        for release, chart in zip(planned.releases, rendered, strict=True):
            if chart.chart_crds:
                group = k8s.yaml.v2.ConfigGroup(f"{name}-{release.name}-crds", yaml=crd_manifest(chart.chart_crds),
                                                opts=child())
                self.crd_groups[release.name] = group
                provide(crd_kinds(chart.chart_crds), group)

        self.releases: list[k8s.helm.v3.Release] = []
        for release, chart in zip(planned.releases, rendered, strict=True):
            own = [self.crd_groups[release.name]] if release.name in self.crd_groups else []
            later = {kind for other in rendered[len(self.releases) + 1:] for kind in other.provided_kinds}
            if early := sorted(kinds_created(chart) & later - chart.provided_kinds):
                raise RuntimeError(f"add-on {self.NAME}: release {release.name} creates {early}, whose CRDs a "
                                   f"release declared after it ships; declare that release first")
            installed = k8s.helm.v3.Release(
                f"{name}-{release.name}", release_args(release, skip_crds=bool(chart.chart_crds)),
                opts=child(*own, *serving(kinds_created(chart) - crd_kinds(chart.template_crds), own)))
            self.releases.append(installed)
            provide(chart.provided_kinds, installed)

        def objects_for(facts: ClusterFacts) -> list[dict[str, Any]]:
            built = type(self).build(spec, facts)
            if built.releases != planned.releases:  # releases must not depend on facts: they are declared early
                raise RuntimeError(f"add-on {self.NAME}: Helm releases changed with the cluster facts")
            return [dict(obj) for obj in built.objects]

        facts = args.facts if args.facts is not None else ClusterFacts.for_spec(spec)
        objects = pulumi.Output.from_input(facts).apply(objects_for)
        self.config_group: k8s.yaml.v2.ConfigGroup | None = None
        if planned.objects:
            self.config_group = k8s.yaml.v2.ConfigGroup(
                f"{name}-objects", objs=objects,
                opts=child(*self.releases, *serving(custom_resource_kinds(planned.objects))))

        self.release_names = pulumi.Output.from_input([release.name for release in planned.releases])
        self.object_count = objects.apply(len)
        self.register_outputs({"releaseNames": self.release_names, "objectCount": self.object_count,
                               **self.typed_outputs(spec, planned, objects)})

    def typed_outputs(self, spec: StackSpec, planned: AddonManifests,
                      objects: pulumi.Output[list[dict[str, Any]]]) -> dict[str, pulumi.Output[Any]]:
        """Set this add-on's own outputs as attributes and return them by their exported (camelCase) names.
        ``planned`` is the builder's output from the spec alone; ``objects`` what is applied (cluster facts in)."""
        return {}


def _names_of(kind: str, objects: Iterable[Mapping[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objects if o["kind"] == kind]


class Namespaces(ManifestAddon):
    """Namespaces with Pod Security labels, Ray service accounts, network policies, storage ConfigMaps.
    Every other add-on installs into these namespaces, so the Platform makes them all wait for this one."""

    TYPE = "park:addons:Namespaces"
    NAME = "namespaces"
    build = staticmethod(namespaces.build)

    namespaces: pulumi.Output[list[str]]
    """Every namespace created, platform namespaces first, then the teams'."""

    def typed_outputs(self, spec, planned, objects):
        self.namespaces = pulumi.Output.from_input(_names_of("Namespace", planned.objects))
        return {"namespaces": self.namespaces}


class Storage(ManifestAddon):
    """kind: the host storage folder as PersistentVolumes and claims; every cloud: the shared filesystem
    (FSx for Lustre, Filestore) as one volume and claim per team namespace, where the stack has one."""

    TYPE = "park:addons:Storage"
    NAME = "storage"
    build = staticmethod(storage.build)

    claims: pulumi.Output[list[str]]
    """``namespace/claim`` of every PersistentVolumeClaim, the cloud's shared filesystem address applied."""

    def typed_outputs(self, spec, planned, objects):
        self.claims = objects.apply(lambda objs: [f"{o['metadata']['namespace']}/{o['metadata']['name']}"
                                                  for o in objs if o["kind"] == "PersistentVolumeClaim"])
        return {"claims": self.claims}


class Observability(ManifestAddon):
    """kube-prometheus-stack, dcgm-exporter, Ray and Kueue monitors, Grafana dashboards. Its Prometheus
    Operator CRDs serve the ServiceMonitors of later add-ons (KubeRay's chart renders one)."""

    TYPE = "park:addons:Observability"
    NAME = "observability"
    build = staticmethod(observability.build)

    grafana_service: pulumi.Output[str | None]
    """``namespace/service:port`` of Grafana, None when Grafana is off."""
    prometheus_service: pulumi.Output[str | None]
    """``namespace/service:port`` of Prometheus, None when Prometheus is off."""

    def typed_outputs(self, spec, planned, objects):
        self.grafana_service = pulumi.Output.from_input(observability.grafana_address(spec))
        self.prometheus_service = pulumi.Output.from_input(observability.prometheus_address(spec))
        return {"grafanaService": self.grafana_service, "prometheusService": self.prometheus_service}


class Gpu(ManifestAddon):
    """The NVIDIA device plugin with per-pool time-slicing, where the cloud does not install one."""

    TYPE = "park:addons:Gpu"
    NAME = "gpu"
    build = staticmethod(gpu.build)

    time_sliced_pools: pulumi.Output[list[str]]
    """Pools whose GPUs this device plugin time-slices; empty where no plugin is installed (kind, or GKE,
    which time-slices through its own node pool setting)."""

    def typed_outputs(self, spec, planned, objects):
        pools = [p.name for p in gpu.sharing_pools(spec)] if planned.releases else []
        self.time_sliced_pools = pulumi.Output.from_input(pools)
        return {"timeSlicedPools": self.time_sliced_pools}


class KubeRay(ManifestAddon):
    """The KubeRay operator (RayJob, RayService and RayCluster CRDs)."""

    TYPE = "park:addons:KubeRay"
    NAME = "kuberay"
    build = staticmethod(kuberay.build)

    operator_namespace: pulumi.Output[str]
    """Where the operator runs."""

    def typed_outputs(self, spec, planned, objects):
        self.operator_namespace = pulumi.Output.from_input(kuberay.NAMESPACE)
        return {"operatorNamespace": self.operator_namespace}


class Kueue(ManifestAddon):
    """The Kueue controller, then flavors, cluster and local queues, priority classes."""

    TYPE = "park:addons:Kueue"
    NAME = "kueue"
    build = staticmethod(kueue.build)

    queue_names: pulumi.Output[dict[str, str]]
    """Team -> the LocalQueue its workloads name."""
    cluster_queues: pulumi.Output[list[str]]
    """The ClusterQueues, one per team, in the stack's cohort."""

    def typed_outputs(self, spec, planned, objects):
        self.queue_names = pulumi.Output.from_input(kueue.queue_names(spec))
        self.cluster_queues = pulumi.Output.from_input(_names_of("ClusterQueue", planned.objects))
        return {"queueNames": self.queue_names, "clusterQueues": self.cluster_queues}


class ClusterAutoscaler(ManifestAddon):
    """aws: the cluster autoscaler for the EKS managed node groups (nothing elsewhere)."""

    TYPE = "park:addons:ClusterAutoscaler"
    NAME = "autoscaler"
    build = staticmethod(autoscaler.build)

    service_account: pulumi.Output[str | None]
    """``namespace/name`` the autoscaler runs as (its cloud identity trusts exactly this); None when the cloud
    scales nodes itself."""

    def typed_outputs(self, spec, planned, objects):
        account = None
        for release in planned.releases:  # the service account the chart creates, as its values name it
            account = f"{release.namespace}/{release.values['rbac']['serviceAccount']['name']}"
        self.service_account = pulumi.Output.from_input(account)
        return {"serviceAccount": self.service_account}


ADDONS: tuple[type[ManifestAddon], ...] = (Namespaces, Storage, Observability, Gpu, KubeRay, Kueue, ClusterAutoscaler)
"""Every add-on, in apply order (the order of :data:`park.components.manifests.BUILDERS`)."""
