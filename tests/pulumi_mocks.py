"""Pulumi's mock engine, wrapped for tests: record every declared resource and assert on it by URN.

Pulumi mocks are process-global, so each test installs a fresh :class:`RecordingMocks` (see
:func:`install`) and declares its resources under a :class:`Harness` parent. ``harness.settled()`` is
an ``Output`` that resolves once every resource under the harness is registered, to a
:class:`DeclaredList`; a test decorated with ``@pulumi.runtime.test`` returns
``harness.settled().apply(check)`` so the engine awaits its assertions::

    @pytest.fixture
    def mocks():
        return install(stack="aws")

    @pulumi.runtime.test
    def test_bucket_is_private(mocks):
        harness = Harness(mocks)
        build_something(parent=harness.parent)
        def check(declared):
            block = declared.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
            assert block.inputs["blockPublicAcls"], f"{block.urn} lets public ACLs in"
        return harness.settled().apply(check)

The mock answers each resource with its inputs plus a few plausible outputs per type (ids, ARNs,
endpoints, certificate data, service-account emails), derived from the inputs and from the explicit
provider the resource names (region, project). Invokes are answered from :data:`CALL_RESULTS`.
Inputs are recorded as the engine sees them: camelCase property names, nested dicts, numbers as
floats, provider inputs that are not strings as JSON text (``"true"``), secrets unwrapped (their names
are in ``Declared.secret_inputs``). Resources created inside an ``apply`` callback are not collected.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks
from pulumi.runtime.mocks import MockMonitor

ACCOUNT_ID = "123456789012"
# How Pulumi's wire format marks a secret value (pulumi.runtime.rpc); provider inputs arrive wrapped in it.
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
FAKE_CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMOCK\n-----END CERTIFICATE-----\n").decode()

CALL_RESULTS: dict[str, dict[str, Any]] = {
    "aws:index/getPartition:getPartition": {
        "id": "aws",
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "reverseDnsPrefix": "com.amazonaws",
    },
    "aws:index/getCallerIdentity:getCallerIdentity": {
        "id": ACCOUNT_ID,
        "accountId": ACCOUNT_ID,
        "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/test",
        "userId": "TEST",
    },
    "aws:index/getRegion:getRegion": {"id": "us-west-2", "name": "us-west-2", "region": "us-west-2"},
}


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Declared:
    """One resource as the engine received it."""

    urn: str
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    provider: str
    """The provider reference (``urn::id``) the resource was registered with; empty for the default one."""
    state: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    """Names of the resources named in its ``depends_on`` option (explicit ordering, not data flow)."""
    secret_inputs: frozenset[str] = frozenset()
    """Top-level input names that arrived as secrets (their values above are unwrapped)."""
    parent: str = ""
    """URN of its parent resource (recorded by :class:`Harness`; the mock monitor's URNs name only the
    immediate parent's type, so a URN alone does not show the whole ancestry)."""


class DeclaredList:
    """The resources a test declared, with lookups that fail with a message naming what is missing.

    Not a ``list`` subclass on purpose: Pulumi rebuilds lists passing through ``Output.all``."""

    def __init__(self, declared: Iterable[Declared]):
        self.all = list(declared)

    def __iter__(self) -> Iterator[Declared]:
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)

    def of_type(self, type_: str) -> list[Declared]:
        return [d for d in self if d.type == type_]

    def one(self, type_: str, name: str | None = None) -> Declared:
        found = [d for d in self.of_type(type_) if name is None or d.name == name]
        names = ", ".join(d.name for d in self.of_type(type_)) or "none"
        assert len(found) == 1, f"expected one {type_}{f' named {name}' if name else ''}, found {names}"
        return found[0]

    def named(self, name: str) -> list[Declared]:
        return [d for d in self if d.name == name]

    def ancestors(self, resource: Declared) -> list[str]:
        """URNs of its parent, grandparent... up to the first one outside this list (the harness)."""
        by_urn = {d.urn: d for d in self}
        chain = [resource.parent]
        while chain[-1] in by_urn:
            chain.append(by_urn[chain[-1]].parent)
        return chain

    @property
    def types(self) -> set[str]:
        return {d.type for d in self}


@dataclass
class _Registration:
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    provider: str
    state: dict[str, Any]
    secret_inputs: frozenset[str]


def _is_secret_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_SIG_KEY) == _SECRET_SIG


def _unwrap_secrets(value: Any) -> Any:
    if _is_secret_envelope(value):
        return _unwrap_secrets(value.get("value"))
    if isinstance(value, dict):
        return {k: _unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(v) for v in value]
    return value


class RecordingMocks(Mocks):
    """Answers resources with inputs + plausible outputs and remembers every registration."""

    def __init__(self, calls: dict[str, dict[str, Any]] | None = None):
        self.calls = {**CALL_RESULTS, **(calls or {})}
        self.registrations: dict[tuple[str, str], _Registration] = {}
        self.providers: dict[str, dict[str, Any]] = {}
        """Inputs of each provider resource, by the id the mock gave it."""
        self.invoked: list[MockCallArgs] = []

    # -- engine callbacks --

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # Provider inputs keep Pulumi's secret envelope; unwrap it and remember which inputs were secret.
        secret_inputs = frozenset(k for k, v in args.inputs.items() if _is_secret_envelope(v))
        inputs = {k: _unwrap_secrets(v) for k, v in args.inputs.items()}
        provider = self.providers.get(args.provider.rsplit("::", 1)[-1], {}) if args.provider else {}
        outputs = _OUTPUTS.get(args.typ, _no_outputs)(args.name, inputs, provider)
        resource_id = outputs.pop("id", None) or args.resource_id or f"{args.name}-{_short_hash(args.typ)}"
        if args.typ.startswith("aws:") and "arn" not in outputs and "arn" not in inputs:
            outputs["arn"] = (
                f"arn:aws:{args.typ.split(':')[1].split('/')[0]}:{provider.get('region', 'us-west-2')}:"
                f"{ACCOUNT_ID}:{args.name}"
            )
        state = {**inputs, **outputs}
        if args.typ.startswith("pulumi:providers:"):
            self.providers[resource_id] = inputs
        self.registrations[(args.typ, args.name)] = _Registration(
            args.typ, args.name, resource_id, inputs, args.provider or "", state, secret_inputs
        )
        return resource_id, state

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        self.invoked.append(args)
        if args.token not in self.calls:
            raise NotImplementedError(f"no mock result for invoke {args.token}; add it to CALL_RESULTS")
        return self.calls[args.token]

    # -- lookups --

    def declared(self, urn: str, depends_on: tuple[str, ...] = (), parent: str = "") -> Declared:
        qualified_type, name = urn.split("::")[2:4]
        type_ = qualified_type.rsplit("$", 1)[-1]
        reg = self.registrations[(type_, name)]
        return Declared(
            urn, type_, name, reg.id, reg.inputs, reg.provider, reg.state, depends_on, reg.secret_inputs, parent
        )


def install(
    stack: str = "test", project: str = "park", calls: dict[str, dict[str, Any]] | None = None
) -> RecordingMocks:
    """Install fresh mocks for one test (Pulumi's runtime settings are process-global)."""
    mocks = RecordingMocks(calls)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
    return mocks


@dataclass
class Harness:
    """A parent component that sees every resource declared beneath it, at any depth."""

    mocks: RecordingMocks
    name: str = "harness"
    resources: list[pulumi.Resource] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    dependencies: dict[int, list[Any]] = field(default_factory=dict)
    parents: dict[int, pulumi.Resource | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parent = pulumi.ComponentResource(
            "test:index:Harness", self.name, None, pulumi.ResourceOptions(transformations=[self._collect])
        )

    def _collect(self, args: pulumi.ResourceTransformationArgs) -> None:
        # A legacy transformation runs in-process for this component and every descendant; it only
        # records the resource object and changes nothing.
        self.resources.append(args.resource)
        self.names[id(args.resource)] = args.name
        depends_on = args.opts.depends_on if args.opts is not None else None
        self.dependencies[id(args.resource)] = (
            list(depends_on) if isinstance(depends_on, (list, tuple)) else []
        )
        self.parents[id(args.resource)] = args.opts.parent if args.opts is not None else None

    def settled(self) -> pulumi.Output[DeclaredList]:
        """Resolves once every collected resource has been registered with the mock engine."""
        declared = [r for r in self.resources if r is not self.parent]

        def depends_on(resource: pulumi.Resource) -> tuple[str, ...]:
            return tuple(self.names.get(id(d), repr(d)) for d in self.dependencies.get(id(resource), []))

        def parent_urn(resource: pulumi.Resource) -> pulumi.Output[str]:
            parent = self.parents.get(id(resource))
            return parent.urn if parent is not None else pulumi.Output.from_input("")

        count = len(declared)
        return pulumi.Output.all(*[r.urn for r in declared], *[parent_urn(r) for r in declared]).apply(
            lambda urns: DeclaredList(
                self.mocks.declared(urn, depends_on(r), parent)
                for urn, parent, r in zip(urns[:count], urns[count:], declared)
            )
        )


# --- plausible outputs per resource type (only what the code under test reads) ------------------------

OutputsFn = Callable[[str, dict[str, Any], dict[str, Any]], dict[str, Any]]


def _no_outputs(name: str, inputs: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    return {}


def _aws_region(provider: dict[str, Any]) -> str:
    return provider.get("region", "us-west-2")


def _eks_cluster(name: str, inputs: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    cluster = inputs.get("name", name)
    region = _aws_region(provider)
    return {
        "name": cluster,
        "arn": f"arn:aws:eks:{region}:{ACCOUNT_ID}:cluster/{cluster}",
        "endpoint": f"https://{_short_hash(cluster).upper()}.gr7.{region}.eks.amazonaws.com",
        "certificateAuthority": {"data": FAKE_CA},
        "status": "ACTIVE",
    }


def _iam_role(name: str, inputs: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    role = inputs.get("name", f"{name}-{_short_hash(name)[:7]}")
    return {"id": role, "name": role, "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{role}"}


def _s3_bucket(name: str, inputs: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    bucket = inputs.get("bucket", f"{name}-{_short_hash(name)[:7]}")
    return {"id": bucket, "bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}


def _fsx_lustre(name: str, inputs: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    fs_id = f"fs-{_short_hash(name)}"
    return {
        "id": fs_id,
        "dnsName": f"{fs_id}.fsx.{_aws_region(provider)}.amazonaws.com",
        "mountName": "abcdefgh",
    }


def _gke_cluster(name: str, inputs: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    cluster = inputs.get("name", name)
    project = inputs.get("project", provider.get("project", "mock-project"))
    location = inputs.get("location", provider.get("region", "us-central1"))
    return {
        "id": f"projects/{project}/locations/{location}/clusters/{cluster}",
        "name": cluster,
        "endpoint": "10.0.0.2"
        if inputs.get("privateClusterConfig", {}).get("enablePrivateEndpoint")
        else "34.1.2.3",
        "masterAuth": {"clusterCaCertificate": FAKE_CA},
    }


def _gcp_service_account(name: str, inputs: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    project = inputs.get("project", provider.get("project", "mock-project"))
    email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
    return {
        "id": f"projects/{project}/serviceAccounts/{email}",
        "email": email,
        "name": f"projects/{project}/serviceAccounts/{email}",
        "member": f"serviceAccount:{email}",
    }


def _gcp_named(kind: str) -> OutputsFn:
    def outputs(name: str, inputs: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
        project = inputs.get("project", provider.get("project", "mock-project"))
        resource = inputs.get("name", f"{name}-{_short_hash(name)[:7]}")
        link = f"https://www.googleapis.com/compute/v1/projects/{project}/{kind}/{resource}"
        return {"id": f"projects/{project}/{kind}/{resource}", "name": resource, "selfLink": link}

    return outputs


def _filestore(name: str, inputs: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    networks = [{**n, "ipAddresses": ["10.20.0.2"]} for n in inputs.get("networks", [])]
    return {"networks": networks, "name": inputs.get("name", name)}


def _gcs_bucket(name: str, inputs: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    bucket = inputs.get("name", name)
    return {"id": bucket, "name": bucket, "url": f"gs://{bucket}"}


_OUTPUTS: dict[str, OutputsFn] = {
    "aws:eks/cluster:Cluster": _eks_cluster,
    "aws:iam/role:Role": _iam_role,
    "aws:s3/bucket:Bucket": _s3_bucket,
    "aws:fsx/lustreFileSystem:LustreFileSystem": _fsx_lustre,
    "gcp:container/cluster:Cluster": _gke_cluster,
    "gcp:serviceaccount/account:Account": _gcp_service_account,
    "gcp:compute/network:Network": _gcp_named("global/networks"),
    "gcp:compute/subnetwork:Subnetwork": _gcp_named("regions/subnetworks"),
    "gcp:compute/router:Router": _gcp_named("regions/routers"),
    "gcp:filestore/instance:Instance": _filestore,
    "gcp:storage/bucket:Bucket": _gcs_bucket,
}


# --- the dependency graph the engine receives ---------------------------------------------------------


@dataclass(frozen=True)
class GraphNode:
    """One resource registration as the engine saw it: what it is, where it sits, what it waits for."""

    urn: str
    type: str
    name: str
    parent: str
    waits_for: frozenset[str]
    """URNs the engine must finish first: ``depends_on`` (components already expanded to their children
    by the SDK) and the resources whose outputs flow into its inputs."""
    alias_parents: tuple[str, ...] = ()
    """Parent URNs of its aliases that change only the parent (``Alias(parent=...)``: where the resource was
    declared before); not the type renames the provider SDKs add themselves."""


class GraphMonitor(MockMonitor):
    """The mock monitor, also recording every registration as a :class:`GraphNode`.

    Reads the graph the engine would order by, not the code that built it::

        mocks = RecordingMocks()
        graph = GraphMonitor(mocks)
        pulumi.runtime.set_mocks(mocks, project="park", stack="aws", preview=False, monitor=graph)
    """

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.nodes: dict[str, GraphNode] = {}

    def RegisterResource(self, request):  # the engine's gRPC method name
        response = super().RegisterResource(request)
        waits_for = set(request.dependencies)
        for property_dependencies in request.propertyDependencies.values():
            waits_for.update(property_dependencies.urns)
        alias_parents = tuple(a.spec.parentUrn for a in request.aliases
                              if a.HasField("spec") and not a.spec.name and not a.spec.type)
        self.nodes[response.urn] = GraphNode(response.urn, request.type, request.name, request.parent,
                                             frozenset(waits_for), alias_parents)
        return response

    def closure(self, urn: str) -> set[str]:
        """Every URN ``urn`` waits for, directly or through what it waits for."""
        seen: set[str] = set()
        pending = list(self.nodes[urn].waits_for)
        while pending:
            current = pending.pop()
            if current not in seen:
                seen.add(current)
                pending.extend(self.nodes[current].waits_for if current in self.nodes else ())
        return seen
