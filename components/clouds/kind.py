"""The kind adapter: a local, CPU-only cluster the user creates with ``kind``; the stack only uses it.

Decision: the stack does not create the kind cluster. No Pulumi kind provider is pinned (the community
ones lag kind releases and would put the Docker daemon inside ``pulumi up``), so the flow is::

    park kind-config kind --out kind.yaml     # this module's kind_cluster_config(spec), as YAML
    kind create cluster --config kind.yaml    # creates context kind-<clusterName>
    pulumi up --stack kind                    # add-ons through pulumi_kubernetes.Provider(context=...)

The kind config has a control-plane node plus one worker per ``minNodes`` of each pool (kind has no
autoscaler), each worker labeled like the cloud nodes (``spec.node_labels``, including
``park-stack.io/pool``) and tainted through a kubeadm ``JoinConfiguration`` patch; ``storage.localPath``
on the host is mounted at the same path into every node, which is the stack's ``file://`` storage.
Node images are pinned by digest in :mod:`park.components.versions`. There is no cloud identity.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml
from park.components import versions
from park.components.clouds import CAPABILITIES, ClusterHandle, ray_identity_annotations
from park.components.clouds.component import CloudComponent
from park.components.spec import Problem, SpecError, StackSpec, load_stack_file, resolve_stack_file

KIND_API_VERSION = "kind.x-k8s.io/v1alpha4"


def kind_cluster_config(spec: StackSpec) -> dict[str, Any]:
    """The kind cluster config for a kind stack; raises :class:`SpecError` if the stack cannot run on kind."""
    if spec.cloud != "kind":
        raise SpecError([Problem("cloud", f"this stack is for {spec.cloud}, not kind")])
    image = versions.kind_node_image(spec.kubernetes_version)
    mount = {"hostPath": spec.storage.local_path, "containerPath": spec.storage.local_path}
    nodes: list[dict[str, Any]] = [{"role": "control-plane", "image": image, "extraMounts": [mount]}]
    for pool in spec.node_pools:
        worker: dict[str, Any] = {
            "role": "worker",
            "image": image,
            "labels": spec.node_labels(pool),
            "extraMounts": [mount],
        }
        taints = spec.node_taints(pool)
        if taints:
            patch = {"kind": "JoinConfiguration", "nodeRegistration": {"taints": taints}}
            worker["kubeadmConfigPatches"] = [yaml.safe_dump(patch, sort_keys=False)]
        # separate copies, so the YAML has no anchors and each node can be edited on its own
        nodes.extend(copy.deepcopy(worker) for _ in range(pool.min_nodes))
    return {"kind": "Cluster", "apiVersion": KIND_API_VERSION, "name": spec.cluster_name, "nodes": nodes}


def kind_cluster_config_yaml(spec: StackSpec) -> str:
    header = (
        f"# kind cluster for stack {spec.cluster_name!r}, written by `park kind-config` "
        f"(kind {versions.KIND_VERSION}).\n# Create it with: kind create cluster --config <this file>\n"
    )
    return header + yaml.safe_dump(kind_cluster_config(spec), sort_keys=False)


def kubeconfig_files() -> list[Path]:
    """The kubeconfig files kubectl would read: $KUBECONFIG (path list) or ~/.kube/config."""
    listed = os.environ.get("KUBECONFIG")
    if listed:
        return [Path(p) for p in listed.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def kubeconfig_for_context(context: str, files: list[Path]) -> str:
    """A standalone kubeconfig holding only ``context`` (and its cluster and user), as YAML; ``""`` when no
    file has that context. The first file naming an entry wins, as with kubectl's merge."""
    merged: dict[str, dict[str, dict[str, Any]]] = {"contexts": {}, "clusters": {}, "users": {}}
    for path in files:
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        for section, entries in merged.items():
            for entry in document.get(section) or []:
                if isinstance(entry, dict) and "name" in entry:
                    entries.setdefault(entry["name"], entry)
    ctx = merged["contexts"].get(context)
    if ctx is None:
        return ""
    cluster = merged["clusters"].get(ctx.get("context", {}).get("cluster"))
    user = merged["users"].get(ctx.get("context", {}).get("user"))
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context,
        "contexts": [ctx],
        "clusters": [cluster] if cluster else [],
        "users": [user] if user else [],
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class KindClusterArgs:
    cluster_name: str
    """``spec.cluster_name``: what ``kind create cluster`` names the cluster."""
    context: str
    """The kubeconfig context kind writes (``kind-<clusterName>``); the provider uses it."""
    kubeconfig: str
    """That context alone as a kubeconfig (:func:`kubeconfig_for_context`), ``""`` before the cluster exists."""


class KindCluster(CloudComponent):
    """A kind cluster the user created (``park kind-config``, then ``kind create cluster``), reached through
    its kubeconfig context: only a Kubernetes provider is declared."""

    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    """Secret: client keys of the local cluster."""
    provider: k8s.Provider

    def __init__(self, name: str, args: KindClusterArgs, prefix: str, moved_from: pulumi.Resource | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("park:kind:KindCluster", name, prefix, None, moved_from, opts)
        self.provider = k8s.Provider(f"{prefix}-k8s", context=args.context, enable_server_side_apply=True,
                                     opts=self.provider_opts())
        self.cluster_name = pulumi.Output.from_input(args.cluster_name)
        self.kubeconfig = pulumi.Output.secret(args.kubeconfig)
        self.register_outputs({"clusterName": self.cluster_name, "kubeconfig": self.kubeconfig})


class KindAdapter:
    name = "kind"
    capabilities = CAPABILITIES["kind"]

    def provision(self, name: str, spec: StackSpec, parent: pulumi.Resource) -> ClusterHandle:
        kubeconfig = kubeconfig_for_context(spec.context_name, kubeconfig_files())
        if not kubeconfig:
            pulumi.log.warn(
                f"no kubeconfig context {spec.context_name!r} yet; create the cluster first: "
                f"park kind-config STACK --out kind.yaml && kind create cluster --config kind.yaml"
            )
        cluster = KindCluster(
            f"{name}-cluster",
            KindClusterArgs(cluster_name=spec.cluster_name, context=spec.context_name, kubeconfig=kubeconfig),
            name, parent, pulumi.ResourceOptions(parent=parent))
        return ClusterHandle(
            provider=cluster.provider,
            kubeconfig=cluster.kubeconfig,
            cluster_name=cluster.cluster_name,
            storage_uri=pulumi.Output.from_input(spec.storage_uri),
            ray_service_account_annotations=pulumi.Output.from_input(ray_identity_annotations(spec)),
            depends_on=[],
        )


ADAPTER = KindAdapter()


def kind_config_command(stack: str, out: Path | None) -> None:
    """``park kind-config STACK [--out FILE]``: print or write the kind config; bad config exits 2."""
    import typer

    try:
        text = kind_cluster_config_yaml(load_stack_file(resolve_stack_file(stack)))
    except SpecError as err:
        for problem in err.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(2) from None
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text)
    typer.echo(f"wrote {out}; create the cluster with: kind create cluster --config {out}", err=True)
