"""The cloud-neutral, typed, frozen stack spec and its validation.

A stack config (``park:*`` keys in ``stacks/Pulumi.<stack>.yaml``) becomes a :class:`StackSpec`
through :func:`parse_spec`. Validation runs in two passes and reports every problem at once,
each as ``property.path: reason`` in the config's own camelCase names:

1. structure — types, ranges, unknown keys (pydantic, every field at once);
2. meaning — cross-field checks that need the whole spec (quotas against pool supply, kind
   without GPUs, clashing names, versions, model placement).

This module never imports a cloud SDK nor a cloud adapter: what each cloud allows and offers comes from the
registry in ``park.components.cloud_rules`` (``spec.capabilities``, ``cloud_problems``), never from testing the
cloud's name. Pulumi is imported lazily, only by :func:`spec_from_pulumi_config`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import types
import typing
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import yaml
from kubernetes.utils.quantity import parse_quantity
from park.components import catalog, versions
from park.components.cloud_rules import CloudCapabilities, cloud_problems, rules_for

# The conventions every layer shares live in their own leaf; these names stay importable from the spec.
from park.components.conventions import DEVICE_PLUGIN_CONFIG_LABEL as DEVICE_PLUGIN_CONFIG_LABEL
from park.components.conventions import GPU_RESOURCE as GPU_RESOURCE
from park.components.conventions import GPU_TAINT as GPU_TAINT
from park.components.conventions import POOL_LABEL as POOL_LABEL
from park.components.conventions import RAY_SERVICE_ACCOUNT as RAY_SERVICE_ACCOUNT
from park.components.conventions import STORAGE_CONFIGMAP as STORAGE_CONFIGMAP
from park.components.conventions import SYSTEM_NAMESPACES as SYSTEM_NAMESPACES
from park.components.problems import Problem as Problem
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

CONFIG_NAMESPACE = "park"

DnsLabel = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
Cloud = Literal["aws", "gcp", "kind"]
_QUALIFIED_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                             r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              use_attribute_docstrings=True)


# --- the spec ----------------------------------------------------------------------------------


class Taint(_Model):
    key: str
    """Taint key, e.g. ``dedicated``."""
    value: str = ""
    """Taint value (may be empty)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"
    """What happens to pods that do not tolerate the taint."""


class GpuSharing(_Model):
    """Share each physical GPU between several pods by time-slicing (NVIDIA device plugin)."""

    strategy: Literal["time-slicing"] = "time-slicing"
    """Only time-slicing is supported (MPS and MIG are not managed by park-stack)."""
    replicas: int = Field(ge=2, le=48)
    """How many pods may share one GPU; the node then advertises gpus x replicas ``nvidia.com/gpu``."""


class NodePool(_Model):
    name: DnsLabel
    """Pool name (DNS label); every node carries it as the ``park-stack.io/pool`` label."""
    role: Literal["system", "workers"] = "workers"
    """``system`` pools run the operators and monitoring; at least one is required."""
    accelerator: str | None = None
    """A catalog accelerator (``nvidia-l4``, ...) or none for a CPU pool."""
    gpus_per_node: int | None = Field(default=None, ge=1)
    """Default: the smallest node shape the cloud offers for the accelerator. Conflicts with a CPU pool."""
    instance_type: str | None = None
    """EC2 instance / GCE machine type. Default: from the catalog (GPU) or a general-purpose shape (CPU). A CPU
    pool's must be a catalog CPU shape of the cloud (its vCPUs and memory size the quotas)."""
    min_nodes: int = Field(default=0, ge=0, le=1000)
    """Autoscaler lower bound (the desired size at creation)."""
    max_nodes: int = Field(default=1, ge=1, le=1000)
    """Autoscaler upper bound; quotas are checked against it."""
    spot: bool = False
    """Spot / preemptible capacity. Not on kind."""
    disk_gib: int = Field(default=100, ge=20, le=16384)
    """Root disk per node, GiB (container images of GPU workloads are large)."""
    labels: dict[str, str] = {}
    """Extra node labels."""
    taints: list[Taint] = []
    """Extra taints. GPU pools always get ``nvidia.com/gpu=present:NoSchedule`` as well."""
    gpu_sharing: GpuSharing | None = None
    """Time-slicing; GPU pools only."""

    @property
    def has_gpus(self) -> bool:
        return self.accelerator is not None


class PoolQuota(_Model):
    pool: str
    """A node pool name."""
    cpu: str | int | float = 0
    """Nominal CPU quota on that pool (Kubernetes quantity)."""
    memory: str | int = 0
    """Nominal memory quota on that pool (Kubernetes quantity, e.g. ``64Gi``)."""
    gpus: int = Field(default=0, ge=0)
    """Nominal ``nvidia.com/gpu`` quota (time-sliced GPUs count once per slice)."""

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | int | float) -> str:
        try:
            parse_quantity(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 16, 500m, 64Gi)") from None
        return str(value)


class Team(_Model):
    name: DnsLabel
    """Team name; names its ClusterQueue ``<name>-cq`` and LocalQueue ``<name>-queue``."""
    namespace: DnsLabel | None = None
    """Default: the team name."""
    quotas: list[PoolQuota] = []
    """Nominal quota per pool in the team's ClusterQueue; unused quota is lent within the cohort."""
    default_priority: str | None = None
    """Priority class given to this team's workloads unless they name one."""

    @property
    def namespace_name(self) -> str:
        return self.namespace or self.name

    @property
    def cluster_queue(self) -> str:
        return f"{self.name}-cq"

    @property
    def local_queue(self) -> str:
        return f"{self.name}-queue"


class PriorityClass(_Model):
    name: DnsLabel
    """Kueue WorkloadPriorityClass name."""
    value: int = Field(ge=-(2**31), le=1_000_000_000)
    """Higher wins admission and may preempt lower."""
    description: str = ""
    """Shown to users of the class."""


DEFAULT_PRIORITY_CLASSES = (
    PriorityClass(name="high", value=1000, description="Interactive and production serving; preempts lower."),
    PriorityClass(name="normal", value=100, description="Default for training and batch."),
    PriorityClass(name="low", value=10, description="Opportunistic work; first to be preempted."),
)


class Observability(_Model):
    prometheus: bool = True
    """kube-prometheus-stack (Prometheus Operator, Prometheus, node exporter)."""
    grafana: bool = True
    """Needs prometheus."""
    dcgm_exporter: bool = True
    """GPU metrics; only installed where the stack has GPU pools."""
    ray_metrics: bool = True
    """PodMonitors scraping Ray heads and workers in team namespaces."""
    kueue_metrics: bool = True
    """ServiceMonitor for the Kueue controller."""
    retention: Annotated[str, StringConstraints(pattern=r"^[0-9]+[hdwy]$")] = "15d"
    """How long Prometheus keeps metrics (``15d``, ``2w``)."""


class SharedFilesystem(_Model):
    """FSx for Lustre on AWS, Filestore on GCP; mounted into Ray pods at ``mountPath``."""

    capacity_gib: int = Field(default=1200, ge=1024, le=102400)
    """Size in GiB (FSx for Lustre and Filestore have minimums near 1.2 TiB / 1 TiB)."""
    mount_path: str = "/mnt/shared"
    """Where Ray pods see it."""


class Storage(_Model):
    bucket: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")] | None = None
    """The S3 / GCS bucket. Bucket names are global, so `pulumi up` on aws and gcp requires one of your own (e.g.
    with your account or project id in it); ``park render`` shows ``<clusterName>-park-data`` until it is set.
    Not on kind (storage there is ``localPath``)."""
    retention_days: int = Field(default=30, ge=1, le=3650)
    """Objects under ``scratch/`` and noncurrent versions expire after this many days."""
    shared_filesystem: SharedFilesystem | None = None
    """Optional shared POSIX filesystem (aws and gcp)."""
    local_path: str = "/mnt/park-storage"
    """kind only: the host folder mounted into every kind node as the storage location."""


DOCUMENTATION_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))
"""Address ranges reserved for documentation (RFC 5737 TEST-NET-1/2/3, RFC 3849): copied from an example,
they would let nobody (or somebody else's lab) reach the cluster."""


class Security(_Model):
    private_endpoint: bool = False
    """Serve the Kubernetes API on private addresses only."""
    allowed_cidrs: list[str] = []
    """CIDRs allowed to reach the API endpoint. Required by `pulumi up` when the endpoint is public (not on
    kind); documentation ranges (203.0.113.0/24 and the like) are rejected."""


class ServedModel(_Model):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")]
    """The model id clients send in OpenAI requests."""
    source: str
    """A local path, ``s3://`` / ``gs://`` / ``file://`` URI, or a hub id like ``org/name``. A bucket URI must
    be in the stack's bucket (``park stage-model`` copies a model there); a hub id is downloaded by each
    replica (nodes need egress to the hub)."""
    gpu_fraction: float | None = Field(default=None, ge=0, le=8)
    """Physical GPUs per replica; below 1 shares a GPU; on a time-sliced pool at most one slice,
    1 / ``gpuSharing.replicas``; 0 serves on CPU, on a CPU workers pool (the stack needs one). Default: 1 when the
    stack has a GPU pool, else 0 (CPU)."""
    min_replicas: int = Field(default=1, ge=0, le=100)
    """Autoscaling lower bound (0 scales to zero when idle)."""
    max_replicas: int = Field(default=1, ge=1, le=100)
    """Autoscaling upper bound."""
    max_model_len: int | None = Field(default=None, ge=16)
    """Context length cap passed to vLLM (default: the model's)."""


# An image reference as the distribution/reference grammar defines it (distribution/reference v0.5.0
# reference.go: name [":" tag] ["@" digest], lower-case path components, a domain with an optional port); the
# IPv6-literal host form is left out. Kubernetes passes `image` to the runtime unchecked, so a typo would
# otherwise surface as ErrImagePull on the cluster.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?/)?"
    rf"(?P<name>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
IMAGE_NAME_MAX = 255
"""distribution/reference NameTotalLengthMax: domain and path together."""


def image_reference_problem(image: str) -> str | None:
    """Why ``image`` is not a pinned container image reference, or None. A tag or digest is required: an
    untagged name means ``:latest``, which Kubernetes pulls anew on every pod start and which moves under a
    running cluster."""
    match = IMAGE_REFERENCE.match(image)
    if match is None:
        return (f"{image!r} is not a container image reference ([registry[:port]/]path[:tag][@digest], "
                "path in lower case), e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com/park-workloads:0.1.0")
    if match.end("name") > IMAGE_NAME_MAX:
        return f"{image!r}: the image name is longer than {IMAGE_NAME_MAX} characters"
    if not match["tag"] and not match["digest"]:
        return f"{image!r} names no tag or digest (that means ':latest', which moves): add one, e.g. {image}:0.1.0"
    return None


def _image_reference(value: str) -> str:
    problem = image_reference_problem(value)
    if problem:
        raise ValueError(problem)
    return value


ImageReference = Annotated[str, AfterValidator(_image_reference)]


def gpu_variant(image: str) -> str | None:
    """The GPU image beside a CPU image: its tag with ``-gpu`` appended (``park-workloads:0.1.0`` ->
    ``park-workloads:0.1.0-gpu``), as ``make image`` tags them; None for a digest, which has no tag to extend."""
    match = IMAGE_REFERENCE.match(image)
    if match is None or match["digest"] or not match["tag"]:
        return None
    return f"{image}-gpu"


class WorkloadImages(_Model):
    """The container images of the reference RayJobs and RayService (Ray head and worker pods), built from
    ``workloads/Dockerfile`` and pushed to a registry the cluster pulls from (``make image``,
    docs/getting-started.md)."""

    image: ImageReference | None = None
    """CPU pods: Ray heads, CPU workers, every pod on kind. Default: the ``WORKLOAD_IMAGE`` pin of
    components/versions.py (``PARK_WORKLOAD_IMAGE`` overrides it), a name in no registry: build the image
    (``make image``), push it and set its name here."""
    gpu_image: ImageReference | None = None
    """GPU workers, built from the CUDA Ray image. Default: ``image`` with ``-gpu`` appended to its tag (the pin
    ``WORKLOAD_IMAGE_GPU`` when ``image`` is unset); required when ``image`` is pinned by digest."""

    def reference(self, gpu: bool) -> str:
        """The image GPU or CPU pods run: the stack's setting, else the pins of components/versions.py (read at
        call time, so ``PARK_WORKLOAD_IMAGE`` still overrides a stack that sets nothing)."""
        if not gpu:
            return self.image or versions.WORKLOAD_IMAGE
        if self.gpu_image:
            return self.gpu_image
        if self.image is None:
            return versions.WORKLOAD_IMAGE_GPU
        derived = gpu_variant(self.image)
        if derived is None:
            raise SpecError([Problem("workloads.gpuImage", f"required: workloads.image {self.image!r} is pinned "
                                                           "by digest, so no GPU tag can be derived from it")])
        return derived


class StackSpec(_Model):
    cloud: Cloud
    """Where the cluster runs."""
    cluster_name: Annotated[str, StringConstraints(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=40)]
    """Cluster name; prefixes cloud resources and names the Kueue cohort."""
    region: str | None = None
    """Cloud region; required on aws and gcp."""
    zones: list[str] = []
    """aws: at least two zones of the region. gcp: node locations (default: the region's zones)."""
    project: str | None = None
    """GCP project id; required on gcp."""
    kube_context: str | None = None
    """kind only: kubeconfig context of the cluster (default ``kind-<clusterName>``)."""
    kubernetes_version: Annotated[str, StringConstraints(pattern=r"^1\.[0-9]{1,2}$")] = (
        versions.DEFAULT_KUBERNETES_VERSION
    )
    """Kubernetes minor version as a quoted string; must be supported by the pinned KubeRay and Kueue."""

    @field_validator("kubernetes_version", mode="before")
    @classmethod
    def _version_is_quoted(cls, value: Any) -> Any:
        """YAML reads an unquoted ``1.30`` as the number 1.3, which cannot be told from ``1.3``: say so."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"write the version as a quoted string, e.g. \"1.30\" (YAML read {value!r} as a "
                             f"number, and 1.30 and 1.3 are the same number)")
        return value
    node_pools: list[NodePool] = Field(min_length=1)
    """Node pools; at least one with role ``system``."""
    teams: list[Team] = Field(min_length=1)
    """Teams; the first is the default for reference workloads and conformance."""
    priority_classes: list[PriorityClass] = list(DEFAULT_PRIORITY_CLASSES)
    """Workload priority classes. Default: high (1000), normal (100), low (10)."""
    observability: Observability = Observability()
    """Monitoring add-ons."""
    storage: Storage = Storage()
    """Bucket (or host folder on kind) for checkpoints, outputs and models."""
    security: Security = Security()
    """API endpoint exposure."""
    models: list[ServedModel] = []
    """Models the serving workload deploys."""
    workloads: WorkloadImages = WorkloadImages()
    """Container images of the Ray pods that run the reference workloads."""

    # -- derived facts, used by the adapters, the manifest builders and the workloads --

    def pool(self, name: str) -> NodePool:
        return next(p for p in self.node_pools if p.name == name)

    @property
    def gpu_pools(self) -> list[NodePool]:
        return [p for p in self.node_pools if p.has_gpus]

    @property
    def has_gpus(self) -> bool:
        return bool(self.gpu_pools)

    def offering(self, pool: NodePool) -> catalog.Offering | None:
        """The catalog node shape of a GPU pool; None for a CPU pool."""
        if pool.accelerator is None:
            return None
        return catalog.find_offering(pool.accelerator, self.cloud, pool.gpus_per_node, pool.instance_type)

    def instance_type(self, pool: NodePool) -> str:
        offering = self.offering(pool)
        if offering is not None:
            return offering.instance_type
        return pool.instance_type or catalog.DEFAULT_CPU_INSTANCE[self.cloud]

    def gpus_per_node(self, pool: NodePool) -> int:
        """Physical GPUs on one node of the pool."""
        offering = self.offering(pool)
        return offering.gpus_per_node if offering else 0

    def gpu_slots_per_node(self, pool: NodePool) -> int:
        """``nvidia.com/gpu`` a node advertises: physical GPUs times the time-slicing replicas."""
        sharing = pool.gpu_sharing.replicas if pool.gpu_sharing else 1
        return self.gpus_per_node(pool) * sharing

    def node_labels(self, pool: NodePool) -> dict[str, str]:
        """Labels every node of the pool carries (what Kueue flavors and workloads select on)."""
        labels = {**pool.labels, POOL_LABEL: pool.name}
        if pool.gpu_sharing is not None:
            labels[DEVICE_PLUGIN_CONFIG_LABEL] = pool.name
        return labels

    def node_taints(self, pool: NodePool) -> list[dict[str, str]]:
        """Taints every node of the pool carries, as Kubernetes taint dicts."""
        taints = [t.model_dump() for t in pool.taints]
        if pool.has_gpus and not any(t["key"] == GPU_TAINT["key"] for t in taints):
            taints.append(dict(GPU_TAINT))
        return taints

    def model_gpus(self, model: ServedModel) -> float:
        if model.gpu_fraction is not None:
            return model.gpu_fraction
        return 1.0 if self.has_gpus else 0.0

    @property
    def bucket_name(self) -> str:
        return self.storage.bucket or f"{self.cluster_name}-park-data"

    @property
    def storage_uri(self) -> str:
        """Where workloads keep checkpoints and outputs."""
        scheme = self.capabilities.bucket_scheme
        if scheme is None:
            return f"file://{self.storage.local_path}"
        return f"{scheme}://{self.bucket_name}"

    @property
    def capabilities(self) -> CloudCapabilities:
        """What the cloud offers (``park.components.cloud_rules``): what the checks and builders branch on."""
        return rules_for(self.cloud).capabilities

    @property
    def context_name(self) -> str:
        return self.kube_context or f"kind-{self.cluster_name}"

    @property
    def default_team(self) -> Team:
        return self.teams[0]

    @property
    def priority_class_names(self) -> list[str]:
        return [p.name for p in self.priority_classes]


# --- errors ------------------------------------------------------------------------------------


class SpecError(ValueError):
    """The stack config is invalid; ``problems`` lists every problem with its property path."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --- parsing -----------------------------------------------------------------------------------


STACK_NEEDS = (f"a stack needs at least {CONFIG_NAMESPACE}:cloud, :clusterName, :nodePools and :teams under "
               f"'config:' (see docs/stack-config.md, or start from stacks/Pulumi.kind.yaml)")
NO_PARK_KEYS = f"the stack config has no {CONFIG_NAMESPACE}:* keys; {STACK_NEEDS}"


def parse_spec(config: dict[str, Any]) -> StackSpec:
    """Validate a mapping of ``park`` config keys (without the ``park:`` prefix) into a spec.

    Raises :class:`SpecError` listing every problem; never another exception for bad input.
    """
    if not isinstance(config, dict):
        raise SpecError([Problem("", f"stack config must be a mapping of park:* keys, not {type(config).__name__}")])
    if not config:
        raise SpecError([Problem("", NO_PARK_KEYS)])
    try:
        spec = StackSpec.model_validate(config)
    except ValidationError as err:
        raise SpecError(named(_structural_problems(err, config), config)) from None
    problems = check_spec(spec)
    if not problems:
        problems = cloud_problems(spec)
    if problems:
        raise SpecError(named(problems, config))
    return spec


_NAMED_LISTS = {"nodePools": ("name", "pool"), "teams": ("name", "team"), "quotas": ("pool", "pool"),
                "models": ("name", "model"), "priorityClasses": ("name", "priority class")}
"""Lists whose items carry a name: the key that holds it, and the word for an item."""
_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def path_parts(path: str) -> list[str | int]:
    """``teams[0].quotas[1].cpu`` -> ``['teams', 0, 'quotas', 1, 'cpu']``."""
    return [int(index) if index else key for index, key in _PATH_PART.findall(path)]


def _names_along(path: str, config: Any) -> str:
    """``team research, pool h100-spot`` for ``teams[0].quotas[1].cpu``: the names of the list items the path
    passes through, read from the config as given (structural problems get them too). An item's name is left
    out where the path goes on into the name key itself (``teams[1].name: duplicate team 'research'``)."""
    parts, names, node, key = path_parts(path), [], config, None
    for i, part in enumerate(parts):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                break
            node = node[part]
            name_key, word = _NAMED_LISTS.get(key, (None, None))
            value = node.get(name_key) if isinstance(node, dict) and name_key else None
            if isinstance(value, str) and value and parts[i + 1:i + 2] != [name_key]:
                names.append(f"{word} {value}")
        elif isinstance(node, dict) and part in node:
            node, key = node[part], part
        else:
            break
    return ", ".join(names)


def named(problems: list[Problem], config: Any) -> list[Problem]:
    """``problems`` with the names of the pools, teams and models their list positions stand for."""
    return [replace(p, names=_names_along(p.path, config)) if p.path else p for p in problems]


def _field_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The config path in a pydantic error location, without the tags pydantic adds for union branches
    (``cpu: str | int | float`` reports ``('cpu', 'str')``). Walks the model so a user key that happens to
    be called ``str`` is kept."""
    path: list[Any] = []
    annotation: Any = StackSpec
    for part in loc:
        annotation = _unwrap(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) > 1:
            annotation = None  # `part` names the union branch that failed, not a config key
            continue
        path.append(part)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = next((f for n, f in annotation.model_fields.items() if part in (f.alias, n)), None)
            annotation = field.annotation if field else None
        elif typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            annotation = None
    return tuple(path)


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] around a single type."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """camelCase keys allowed at the object that holds ``loc``'s last element."""
    model: Any = StackSpec
    for part in loc[:-1]:
        model = _unwrap(model)
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = next((f for n, f in model.model_fields.items() if part in (f.alias, n)), None)
            model = field.annotation if field else None
        elif typing.get_origin(model) in (list, dict):
            model = typing.get_args(model)[-1]
        else:
            return []
    model = _unwrap(model)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _structural_problems(err: ValidationError, config: dict[str, Any]) -> list[Problem]:
    problems = []
    for e in err.errors(include_url=False):
        loc = _field_path(e["loc"])
        if e["type"] == "extra_forbidden":
            known = _known_keys(loc)
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            reason = f"unknown key; did you mean {hint[0]!r}?" if hint else f"unknown key; known: {', '.join(known)}"
        elif e["type"] == "missing":
            reason = "required"
        else:
            reason = e["msg"].removeprefix("Value error, ")
            given = e.get("input")
            if isinstance(given, str | int | float | bool) and repr(given) not in reason:
                reason = f"{reason} (got {given!r})"  # echo the offending value, e.g. cloud: 'azure'
        problems.append(Problem(_path(loc), reason))
    # one line per path: unions report one error per branch, keep the first
    unique: dict[str, Problem] = {}
    for p in problems:
        unique.setdefault(p.path, p)
    return list(unique.values())


def check_spec(spec: StackSpec) -> list[Problem]:
    """Cross-field checks on a structurally valid spec; returns every problem found."""
    problems: list[Problem] = []
    add = lambda path, reason: problems.append(Problem(path, reason))  # noqa: E731
    cloud = spec.capabilities

    # cluster location
    if cloud.needs_region and not spec.region:
        add("region", f"required on {spec.cloud}")
    if cloud.needs_project and not spec.project:
        add("project", f"required on {spec.cloud} (the GCP project id)")
    if len(set(spec.zones)) < cloud.min_zones:
        add("zones", cloud.min_zones_reason)
    for i, zone in enumerate(spec.zones):
        if spec.region and not zone.startswith(spec.region):
            add(f"zones[{i}]", f"{zone!r} is not a zone of region {spec.region!r}")
    if not cloud.takes_kube_context and spec.kube_context:
        add("kubeContext", "only for kind; cloud clusters get their kubeconfig from the stack")

    # Kubernetes version against what the pinned operators support
    minor = tuple(int(x) for x in spec.kubernetes_version.split("."))
    if not versions.KUBERNETES_MIN <= minor <= versions.KUBERNETES_MAX:
        lo, hi = (".".join(map(str, v)) for v in (versions.KUBERNETES_MIN, versions.KUBERNETES_MAX))
        add("kubernetesVersion", f"{spec.kubernetes_version} is outside {lo}-{hi}, the range supported by "
                                 f"KubeRay {versions.KUBERAY_VERSION} and Kueue {versions.KUEUE_VERSION}")

    # node pools
    pool_names = Counter(p.name for p in spec.node_pools)
    if not any(p.role == "system" for p in spec.node_pools):
        add("nodePools", "needs a pool with role 'system' to run the operators and monitoring")
    for i, pool in enumerate(spec.node_pools):
        at = f"nodePools[{i}]"
        if pool_names[pool.name] > 1:
            add(f"{at}.name", f"duplicate pool name {pool.name!r}")
        if pool.min_nodes > pool.max_nodes:
            add(f"{at}.minNodes", f"{pool.min_nodes} is above maxNodes {pool.max_nodes}")
        if pool.role == "system" and pool.min_nodes < 1:
            add(f"{at}.minNodes", "a system pool needs at least one node")
        if pool.role == "system" and pool.has_gpus:
            add(f"{at}.accelerator", "a system pool runs operators; put GPUs in a workers pool")
        if pool.spot and not cloud.supports_spot:
            add(f"{at}.spot", f"{spec.cloud} has no spot capacity")
        if pool.accelerator is None:
            if pool.gpus_per_node is not None:
                add(f"{at}.gpusPerNode", "set on a CPU pool; name an accelerator too")
            if pool.gpu_sharing is not None:
                add(f"{at}.gpuSharing", "GPU sharing on a CPU pool; name an accelerator or remove gpuSharing")
        elif not cloud.supports_gpu:
            add(f"{at}.accelerator",
                f"{spec.cloud} clusters have no GPUs; remove the accelerator (workloads fall back to CPU)")
        elif pool.accelerator not in catalog.ACCELERATORS:
            hint = difflib.get_close_matches(pool.accelerator, catalog.ACCELERATORS, n=1)
            suggestion = f"did you mean {hint[0]!r}? " if hint else ""
            add(f"{at}.accelerator", f"unknown {pool.accelerator!r}; {suggestion}known: {', '.join(catalog.ACCELERATORS)}")
        else:
            try:
                catalog.find_offering(pool.accelerator, spec.cloud)
            except catalog.CatalogError as err:
                add(f"{at}.accelerator", str(err))
            else:
                try:
                    catalog.find_offering(pool.accelerator, spec.cloud, instance_type=pool.instance_type)
                except catalog.CatalogError as err:
                    add(f"{at}.instanceType", str(err))
                else:
                    try:
                        spec.offering(pool)
                    except catalog.CatalogError as err:
                        add(f"{at}.gpusPerNode", str(err))
        if cloud.fixed_node_shape and pool.instance_type not in (None, catalog.DEFAULT_CPU_INSTANCE[spec.cloud]):
            add(f"{at}.instanceType", f"{cloud.fixed_node_shape}; remove instanceType")
        elif (not cloud.fixed_node_shape and pool.accelerator is None and pool.instance_type is not None
              and (reason := catalog.cpu_instance_problem(spec.cloud, pool.instance_type))):
            add(f"{at}.instanceType", reason)  # an unknown shape: its supply could not be checked
        for key, value in pool.labels.items():
            if not _QUALIFIED_NAME.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
                add(f"{at}.labels.{key}", "not a valid label key")
            if not _LABEL_VALUE.match(value) or len(value) > 63:
                add(f"{at}.labels.{key}", f"{value!r} is not a valid label value")
            if key in (POOL_LABEL, DEVICE_PLUGIN_CONFIG_LABEL):
                add(f"{at}.labels.{key}", "set by park-stack from the pool; remove it")
        for j, taint in enumerate(pool.taints):
            if not _QUALIFIED_NAME.match(taint.key):
                add(f"{at}.taints[{j}].key", f"{taint.key!r} is not a valid taint key")
    known_pools = {p.name: p for p in spec.node_pools}

    # priority classes
    priority_names = Counter(p.name for p in spec.priority_classes)
    for i, pc in enumerate(spec.priority_classes):
        if priority_names[pc.name] > 1:
            add(f"priorityClasses[{i}].name", f"duplicate priority class {pc.name!r}")

    # teams and quotas
    team_names = Counter(t.name for t in spec.teams)
    namespaces = Counter(t.namespace_name for t in spec.teams)
    claims: dict[tuple[str, str], list[tuple[str, Any]]] = defaultdict(list)  # (pool, resource): [(team, amount)]
    over: set[tuple[str, str]] = set()  # (pool, resource) where one quota alone is above the supply
    for i, team in enumerate(spec.teams):
        at = f"teams[{i}]"
        if team_names[team.name] > 1:
            add(f"{at}.name", f"duplicate team name {team.name!r}")
        ns_field = f"{at}.namespace" if team.namespace else f"{at}.name"
        if team.namespace_name in SYSTEM_NAMESPACES:
            add(ns_field, f"namespace {team.namespace_name!r} is reserved for the platform; choose another")
        elif namespaces[team.namespace_name] > 1:
            add(ns_field, f"namespace {team.namespace_name!r} is used by another team")
        if team.default_priority is not None and team.default_priority not in priority_names:
            add(f"{at}.defaultPriority", f"unknown priority class {team.default_priority!r}; "
                                         f"known: {', '.join(spec.priority_class_names)}")
        quota_pools = Counter(q.pool for q in team.quotas)
        for j, quota in enumerate(team.quotas):
            qat = f"{at}.quotas[{j}]"
            pool = known_pools.get(quota.pool)
            if pool is None:
                add(f"{qat}.pool", f"unknown pool {quota.pool!r}; known: {', '.join(known_pools)}")
                continue
            if quota_pools[quota.pool] > 1:
                add(f"{qat}.pool", f"pool {quota.pool!r} appears twice in this team's quotas")
            if any(p.path.startswith(f"nodePools[{spec.node_pools.index(pool)}]") for p in problems):
                continue  # the pool itself is broken; its supply is unknown
            supply = _pool_supply(spec, pool)
            for resource, amount in _quota_amounts(quota).items():
                if resource not in supply:
                    continue  # no node shape to size it against
                total, how = supply[resource]
                claims[(pool.name, resource)].append((team.name, amount))
                if amount > total:
                    over.add((pool.name, resource))
                    given = {"gpus": f"{quota.gpus} GPUs", "cpu": f"{quota.cpu} CPUs", "memory": quota.memory}
                    add(f"{qat}.{resource}", f"{given[resource]} is above what pool {pool.name!r} can supply ({how})")
    for (name, resource), shares in claims.items():
        total, how = _pool_supply(spec, known_pools[name])[resource]
        claimed = sum(amount for _, amount in shares)
        if claimed > total and (name, resource) not in over:
            each = ", ".join(f"{team} {_show_amount(resource, amount)}" for team, amount in shares)
            add("teams", f"{_QUOTA_WORDS[resource]} quotas on pool {name!r} add up to "
                         f"{_show_amount(resource, claimed)} ({each}), above the {_show_amount(resource, total)} "
                         f"it can supply ({how})")

    # observability, security
    if spec.observability.grafana and not spec.observability.prometheus:
        add("observability.grafana", "needs observability.prometheus (Grafana reads from it)")
    for i, cidr in enumerate(spec.security.allowed_cidrs):
        try:
            network = ipaddress.ip_network(cidr)
        except ValueError:
            add(f"security.allowedCidrs[{i}]", f"{cidr!r} is not a CIDR")
            continue
        documentation = next((d for d in DOCUMENTATION_NETWORKS
                              if d.version == network.version and network.subnet_of(d)), None)
        if documentation is not None:
            add(f"security.allowedCidrs[{i}]", f"{cidr!r} is in {documentation}, a range reserved for "
                                               "documentation (RFC 5737/3849) that no real client has; "
                                               "use your own egress address, e.g. <your-egress-ip>/32")
    # A public endpoint with no allowedCidrs is refused when `pulumi up` provisions, not here: `park render`
    # creates no cloud resource (park.components.clouds.checks.endpoint_access_problems).
    if spec.storage.shared_filesystem is not None and not cloud.supports_shared_filesystem:
        add("storage.sharedFilesystem", f"not on {spec.cloud}; storage.localPath is already shared by every node")

    # served models
    model_names = Counter(m.name for m in spec.models)
    usable_gpu_pools = [p for p in spec.gpu_pools if cloud.supports_gpu and not _pool_broken(problems, spec, p)]
    cpu_workers = [p.name for p in spec.node_pools if p.role == "workers" and not p.has_gpus]
    max_gpus = max((spec.gpus_per_node(p) for p in usable_gpu_pools), default=0)
    for i, model in enumerate(spec.models):
        at = f"models[{i}]"
        if model_names[model.name] > 1:
            add(f"{at}.name", f"duplicate model name {model.name!r}")
        if model.min_replicas > model.max_replicas:
            add(f"{at}.minReplicas", f"{model.min_replicas} is above maxReplicas {model.max_replicas}")
        gpus = spec.model_gpus(model)
        if model.gpu_fraction == 0 and not cpu_workers:
            # served on CPU, a CPU pool must exist: else the server lands on a GPU pool and holds a GPU node
            add(f"{at}.gpuFraction", "0 serves the model on CPU, but the stack has no CPU workers pool (role "
                                     "workers, no accelerator); set the share of a GPU a replica needs (e.g. "
                                     "0.25), or add a CPU workers pool")
        elif gpus > 0 and not usable_gpu_pools:
            add(f"{at}.gpuFraction", f"{gpus:g} GPU per replica fits no pool: the stack has no GPU pool")
        elif gpus > 1 and gpus != math.floor(gpus):
            add(f"{at}.gpuFraction", f"{gpus:g}: above one GPU a replica takes whole GPUs")
        elif gpus > max_gpus > 0:
            add(f"{at}.gpuFraction", f"{gpus:g} GPUs per replica fits no pool (the largest has {max_gpus} per node)")
    problems += _time_slice_problems(spec, usable_gpu_pools, problems)
    problems += _model_source_problems(spec) + _workload_image_problems(spec)
    return problems


def _model_source_problems(spec: StackSpec) -> list[Problem]:
    """A bucket model source must be the stack's own bucket: the Ray pods' cloud identity may read that bucket
    and no other (``ray_bucket_policy`` in components/clouds/aws.py, ``RAY_BUCKET_ROLE`` on the bucket in
    components/clouds/gcp.py), and kind has no bucket at all. Hub ids, paths and ``file://`` are left to the
    serving workload (workloads/serve/README.md, "Offline, except for hub ids")."""
    problems = []
    for i, model in enumerate(spec.models):
        scheme, sep, rest = model.source.partition("://")
        if not sep:
            continue
        at, bucket = f"models[{i}].source", rest.split("/", 1)[0]
        want = spec.capabilities.bucket_scheme  # a model source may use the scheme of the stack's own bucket
        if scheme not in ("file", "s3", "gs"):
            problems.append(Problem(at, f"unsupported scheme {scheme!r} in {model.source!r}; use a path, file://, "
                                        "s3:// or gs://, or a hub id"))
        elif scheme in ("s3", "gs") and want is None:
            problems.append(Problem(at, f"{model.source!r}: {spec.cloud} has no bucket; put the model under "
                                        f"storage.localPath ({spec.storage.local_path}) and use file://"))
        elif scheme in ("s3", "gs") and (scheme != want or bucket != spec.bucket_name):
            suggested = f"{spec.storage_uri}/models/{model.name}"
            problems.append(Problem(at, f"{model.source!r} is not in the stack's bucket {spec.storage_uri} "
                                        "(storage.bucket), the only one its Ray pods may read; stage the model "
                                        f"there and use e.g. {suggested} (park stage-model)"))
    return problems


def _workload_image_problems(spec: StackSpec) -> list[Problem]:
    """The images the Ray pods will run, with the pins' environment overrides applied: each a valid reference,
    and a GPU image wherever GPU pools need one."""
    problems = []
    for gpu, key, pin in ((False, "image", "PARK_WORKLOAD_IMAGE"), (True, "gpuImage", "PARK_WORKLOAD_IMAGE_GPU")):
        if gpu and not spec.has_gpus:
            continue
        try:
            image = spec.workloads.reference(gpu)
        except SpecError as err:
            problems += err.problems
            continue
        problem = image_reference_problem(image)
        if problem:  # only a pin can be invalid here: the stack's own settings were checked when parsed
            problems.append(Problem(f"workloads.{key}", f"{problem} (from {pin}; set workloads.{key} instead)"))
    return problems


def time_slices(pool: NodePool) -> int:
    """Pods that time-share each physical GPU of the pool (``gpuSharing.replicas``); 1 without sharing."""
    return pool.gpu_sharing.replicas if pool.gpu_sharing is not None else 1


def serving_gpu_pool(spec: StackSpec, pools: list[NodePool] | None = None) -> NodePool | None:
    """The GPU workers pool the serving workload puts its models on, or None (no GPU model, or no pool fits).

    The pool's nodes must hold a replica's GPUs; on-demand before spot (a server runs for long), then the
    fewest GPUs per node (the least idle hardware for small models). One rule for the spec check here and
    for ``park.workloads.serve`` (which cannot be imported from here). ``pools``: the candidates (default:
    every GPU pool; the spec check passes the ones that are not broken)."""
    need = max((spec.model_gpus(m) for m in spec.models), default=0.0)
    if need <= 0:
        return None
    candidates = spec.gpu_pools if pools is None else pools
    fits = [p for p in candidates if p.role == "workers" and spec.gpus_per_node(p) >= math.ceil(need)]
    return min(fits, key=lambda p: (p.spot, spec.gpus_per_node(p)), default=None)


def _time_slice_problems(spec: StackSpec, pools: list[NodePool], found: list[Problem]) -> list[Problem]:
    """A replica on a time-sliced pool must fit one slice: ``gpuFraction <= 1 / gpuSharing.replicas``.

    ``gpuFraction`` is a fraction of a physical GPU. Time-slicing gives each of the R pods on a GPU the whole
    device and all of its memory, and vLLM's ``gpu_memory_utilization`` is a share of that whole device
    (vLLM 0.32.0 ``vllm/config/cache.py``: "a per-instance limit"); so only if each pod's replicas keep to
    1/R of the GPU do all R pods together stay within the 0.9 the serving app gives vLLM."""
    pool = serving_gpu_pool(spec, pools)
    if pool is None or time_slices(pool) == 1:
        return []
    slices, j = time_slices(pool), spec.node_pools.index(pool)
    problems = []
    for i, model in enumerate(spec.models):
        gpus, at = spec.model_gpus(model), f"models[{i}].gpuFraction"
        if gpus * slices <= 1 + 1e-9 or any(p.path == at for p in found):
            continue
        given = f"{gpus:g} GPU per replica" + ("" if model.gpu_fraction is not None else " (the default)")
        fewer = math.floor(1 / gpus + 1e-9)
        other = (f"lower nodePools[{j}].gpuSharing.replicas to {fewer}" if fewer >= 2
                 else f"remove nodePools[{j}].gpuSharing")
        problems.append(Problem(at, (
            f"{given} oversubscribes time-sliced pool {pool.name!r}: nodePools[{j}].gpuSharing.replicas is "
            f"{slices}, so {slices} pods share each GPU, each seeing all of its memory, and a replica must fit "
            f"one pod's slice (1/{slices} of a GPU); set gpuFraction to {1 / slices:.4g} or less, or {other}")))
    return problems


def _pool_broken(problems: list[Problem], spec: StackSpec, pool: NodePool) -> bool:
    return any(p.path.startswith(f"nodePools[{spec.node_pools.index(pool)}]") for p in problems)


_QUOTA_WORDS = {"gpus": "GPU", "cpu": "CPU", "memory": "memory"}


def _quota_amounts(quota: PoolQuota) -> dict[str, Any]:
    """GPUs, CPUs (cores) and memory (bytes) a quota claims on its pool."""
    return {"gpus": quota.gpus, "cpu": parse_quantity(quota.cpu), "memory": parse_quantity(quota.memory)}


def _pool_supply(spec: StackSpec, pool: NodePool) -> dict[str, tuple[Any, str]]:
    """What a pool can supply at ``maxNodes``, per quota resource, with how that is reckoned (in the units of
    :func:`_quota_amounts`); CPU and memory only where the catalog knows the node shape."""
    nodes, slots = pool.max_nodes, spec.gpu_slots_per_node(pool)
    supply: dict[str, tuple[Any, str]] = {"gpus": (slots * nodes, f"{nodes} nodes x {slots} = {slots * nodes}")}
    shape = _node_shape(spec, pool)
    if shape is not None:
        vcpus, mem_gib = shape
        supply["cpu"] = (vcpus * nodes, f"{nodes} nodes x {vcpus} vCPUs")
        supply["memory"] = (mem_gib * nodes * 2**30, f"{nodes} nodes x {mem_gib}Gi")
    return supply


def _show_amount(resource: str, amount: Any) -> str:
    """An amount in the units of :func:`_quota_amounts`, as a quota would write it."""
    return f"{amount / 2**30:g}Gi" if resource == "memory" else f"{amount:g}"


def _node_shape(spec: StackSpec, pool: NodePool) -> tuple[int, int] | None:
    offering = spec.offering(pool)
    if offering is not None:
        return offering.vcpus, offering.memory_gib
    return catalog.cpu_shape(spec.instance_type(pool))


# --- where config comes from -------------------------------------------------------------------


def stack_file_config(path: Path) -> dict[str, Any]:
    """Every key of a ``Pulumi.<stack>.yaml``'s ``config:`` mapping (``park:``, ``aws:``, ...)."""
    return _read_stack_file(path)[0]


KeyLines = dict[tuple[Any, ...], int]
"""Line (1-based) of every key and list item under ``config:``, by path: ``('park:nodePools', 1, 'spot')``."""


def _read_stack_file(path: Path) -> tuple[dict[str, Any], KeyLines]:
    try:
        text = path.read_text()
        document, root = yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError) as err:
        raise SpecError([Problem("", f"cannot read {path}: {err}")]) from None
    if document is None:
        raise SpecError([Problem("", f"the file is empty; {STACK_NEEDS}", file=str(path))])
    if not isinstance(document, dict) or not isinstance(document.get("config") or {}, dict):
        raise SpecError([Problem("", "expected a mapping with a 'config:' mapping", file=str(path))])
    config_node = next((v for k, v in root.value if k.value == "config"), None)
    return document.get("config") or {}, _key_lines(config_node)


def _key_lines(node: yaml.Node | None, at: tuple[Any, ...] = ()) -> KeyLines:
    """PyYAML's node marks, walked: where each key (and each list item) of the config starts."""
    lines: KeyLines = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(*at, key.value)] = key.start_mark.line + 1
            lines |= _key_lines(value, (*at, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*at, i)] = item.start_mark.line + 1
            lines |= _key_lines(item, (*at, i))
    return lines


def _located(problem: Problem, file: str, lines: KeyLines) -> Problem:
    """``problem`` with the file and the line of its key, or of the nearest parent key the file has (where a
    missing key would go)."""
    parts = path_parts(problem.path)
    if parts and ":" not in str(parts[0]):
        parts[0] = f"{CONFIG_NAMESPACE}:{parts[0]}"  # a park key; provider keys (aws:region) are named in full
    found = (lines.get(tuple(parts[:n])) for n in range(len(parts), 0, -1))
    return replace(problem, file=file, line=next((line for line in found if line), None))


def park_keys(config: dict[str, Any]) -> dict[str, Any]:
    """The ``park:*`` entries of a whole stack config, prefix removed."""
    prefix = f"{CONFIG_NAMESPACE}:"
    return {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}


def config_from_stack_file(path: Path) -> dict[str, Any]:
    """The ``park:*`` keys of a ``Pulumi.<stack>.yaml``, prefix removed."""
    return park_keys(stack_file_config(path))


OTHER_CONFIG_NAMESPACES = frozenset({"aws", "gcp", "kubernetes", "pulumi"})
"""Config namespaces a park stack may carry besides ``park`` (providers' own settings)."""


def misspelled_namespaces(keys: list[str]) -> list[Problem]:
    """``parks:models`` would be dropped silently (it is not a ``park:`` key): report keys whose namespace
    looks like a typo of ``park``."""
    problems = []
    for key in keys:
        namespace, _, name = key.partition(":")
        if namespace in (CONFIG_NAMESPACE, *OTHER_CONFIG_NAMESPACES) or not name:
            continue
        if difflib.get_close_matches(namespace, [CONFIG_NAMESPACE], n=1, cutoff=0.6):
            problems.append(Problem(key, f"unknown config namespace {namespace!r}; did you mean "
                                         f"'{CONFIG_NAMESPACE}:{name}'?"))
    return problems


PROVIDER_KEYS = {"aws:region": "region", "gcp:region": "region", "gcp:project": "project"}
"""Provider settings a stack file may carry beside the ``park:`` key the stack really uses: every resource goes
through a provider the adapter builds from ``park:region`` / ``park:project``, so these must agree with them."""


def provider_key_problems(everything: dict[str, Any], config: dict[str, Any]) -> list[Problem]:
    """An ``aws:region`` / ``gcp:region`` / ``gcp:project`` that differs from its ``park:`` key: editing it would
    move nothing, so say which one counts."""
    problems = []
    for key, park_key in PROVIDER_KEYS.items():
        theirs, ours = everything.get(key), config.get(park_key)
        if theirs is not None and ours is not None and theirs != ours:
            problems.append(Problem(key, (
                f"{theirs!r} differs from {CONFIG_NAMESPACE}:{park_key} {ours!r}; the stack goes where "
                f"{CONFIG_NAMESPACE}:{park_key} says (its providers are built from it): set both to the same "
                f"value, e.g. `pulumi config set {CONFIG_NAMESPACE}:{park_key} VALUE` and `pulumi config set "
                f"{key} VALUE`")))
    return problems


def parse_spec_checking_keys(config: dict[str, Any], everything: dict[str, Any]) -> StackSpec:
    """:func:`parse_spec` plus the problems only the whole stack config (``everything``, every namespace)
    shows: no ``park:`` keys at all, misspelled namespaces, provider keys that disagree with the park keys."""
    problems = misspelled_namespaces(list(everything)) + provider_key_problems(everything, config)
    if not config:
        raise SpecError([*problems, Problem("", NO_PARK_KEYS)])
    try:
        spec = parse_spec(config)
    except SpecError as err:
        raise SpecError([*problems, *err.problems]) from None
    if problems:
        raise SpecError(problems)
    return spec


def load_stack_file(path: Path) -> StackSpec:
    """The spec of a ``Pulumi.<stack>.yaml``; its problems carry the file and the line of their key."""
    everything, lines = _read_stack_file(path)
    try:
        return parse_spec_checking_keys(park_keys(everything), everything)
    except SpecError as err:
        raise SpecError([_located(p, str(path), lines) for p in err.problems]) from None


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``Pulumi.yaml``: searched upward from ``start`` (default: the working folder),
    then beside this installed package (an editable install lives in the checkout)."""
    for base in (start or Path.cwd(), Path(__file__).resolve().parent):
        for folder in (base, *base.parents):
            if (folder / "Pulumi.yaml").is_file() and (folder / "stacks").is_dir():
                return folder
    raise SpecError([Problem("", "cannot find the park-stack project (a folder with Pulumi.yaml and stacks/)")])


def shared_folder(name: str) -> Path:
    """``../shared/<name>`` beside the checkout (pinned charts and CRDs); it may not exist."""
    try:
        root = project_root()
    except SpecError:
        root = Path(__file__).resolve().parents[1]
    return root.parent / "shared" / name


def user_cache_dir(name: str, override_env: str) -> Path:
    """Where park-stack caches downloads of one kind: ``$<override_env>``, else
    ``$XDG_CACHE_HOME/park-stack/<name>`` (default ``~/.cache``)."""
    configured = os.environ.get(override_env)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "park-stack" / name


def resolve_stack_file(stack: str) -> Path:
    """``stack`` is a path to a ``Pulumi.<name>.yaml`` or the name of a stack under ``stacks/``."""
    as_path = Path(stack)
    if as_path.is_file():
        return as_path
    candidate = project_root() / "stacks" / f"Pulumi.{stack}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml")
                   for p in (project_root() / "stacks").glob("Pulumi.*.yaml"))
    raise SpecError([Problem("", f"no stack {stack!r}: no such file, and no {candidate} "
                                 f"(stacks there: {', '.join(known) or 'none'})")])


INVALID_CONFIG_EXIT = 2
"""Exit code of every ``park`` command given an invalid stack config."""


def print_problems(err: SpecError, stream: TextIO) -> None:
    """One ``path: reason`` line per problem: what every command prints for invalid config."""
    for problem in err.problems:
        print(str(problem), file=stream)


def load_stack_for_command(stack: str, stderr: TextIO) -> StackSpec | None:
    """A stack by name or path for a CLI command; for invalid config, prints the problems to ``stderr``
    and returns None (the command then exits :data:`INVALID_CONFIG_EXIT`)."""
    try:
        return load_stack_file(resolve_stack_file(stack))
    except SpecError as err:
        print_problems(err, stderr)
        return None


_STRING_KEYS = frozenset({"cloud", "clusterName", "region", "project", "kubeContext", "kubernetesVersion"})


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pulumi_config() -> dict[str, Any]:
    from pulumi.runtime import config as runtime_config  # start-up time: 0.7 s that park render never needs

    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


def pulumi_park_config() -> dict[str, Any]:
    """Every ``park:*`` key of the current Pulumi stack, prefix removed, known or not.

    ``pulumi.Config`` can only look keys up by name, so reading the spec's fields one by one would drop a
    typo'd key (``park:modles``) that ``park render`` rejects. The language host hands the program its whole
    config as the ``PULUMI_CONFIG`` JSON bag (``pulumi.runtime.get_config_env``); tests and the Automation
    API set it with ``pulumi.runtime.set_all_config``. Both are read here.
    """
    # Pulumi keeps structured values as JSON text; plain strings (cloud, kubernetesVersion) stay strings.
    return {key: text if key in _STRING_KEYS or not isinstance(text, str) else _json_or_text(text)
            for key, text in park_keys(_pulumi_config()).items() if text is not None}


def spec_from_pulumi_config() -> StackSpec:
    """Read the current Pulumi stack's ``park:*`` config; bad config ends in ``pulumi.RunError``
    listing every problem, before any resource is declared."""
    import pulumi  # start-up time: 0.7 s that park render never needs

    try:
        return parse_spec_checking_keys(pulumi_park_config(), _pulumi_config())
    except SpecError as err:
        raise pulumi.RunError(f"invalid stack config ({len(err.problems)} problems):\n{err}") from None
