"""The resource tree of every shipped stack, as ``pulumi stack`` would list it, from the stack program run under
Pulumi's mocks: the Platform holds a few concept components (network, cluster, storage, one per add-on), the
cluster holds one component per node pool, and every cloud resource and every Kubernetes object sits inside the
component of its concept, not loose under the Platform.

docs/resource-tree.md is generated from the same trees and must equal them. Regenerate it with
``.venv/bin/python tests/test_resource_tree.py``.
"""

from __future__ import annotations

import runpy
import sys
from collections import defaultdict
from dataclasses import dataclass

import pulumi
import pytest
from park.components.addons import ADDONS
from park.components.spec import project_root
from pulumi_mocks import GraphMonitor, RecordingMocks
from schemas import provisionable_variant
from test_stacks import PROGRAM, SPECS, stack_config

DOC = project_root() / "docs" / "resource-tree.md"
REGENERATE = "regenerate with: .venv/bin/python tests/test_resource_tree.py"
MAX_PLATFORM_CHILDREN = 12
"""What a reader of ``pulumi stack`` can take in at the top level; node pools and releases go one level down."""
CONCEPTS = {
    "aws": {"pulumi:providers:aws", "park:aws:EksNetwork", "park:aws:EksCluster", "park:aws:EksStorage"},
    "gcp": {"pulumi:providers:gcp", "park:gcp:ProjectApis", "park:gcp:GkeNetwork", "park:gcp:GkeCluster",
            "park:gcp:GkeStorage"},
    "kind": {"park:kind:KindCluster"},
}
"""Each cloud's concepts directly under the Platform, besides the add-ons."""
NODE_POOL = {"aws": ("park:aws:EksCluster", "park:aws:EksNodePool", "aws:eks/nodeGroup:NodeGroup"),
             "gcp": ("park:gcp:GkeCluster", "park:gcp:GkeNodePool", "gcp:container/nodePool:NodePool")}
"""cluster component, node pool component, the cloud's node group resource."""
KUBERNETES_OBJECTS = ("kubernetes:helm.sh/v3:Release", "kubernetes:yaml/v2:ConfigGroup")


@dataclass(frozen=True)
class Node:
    urn: str
    type: str
    name: str
    parent: str
    alias_parents: tuple[str, ...] = ()


STACK = "pulumi:pulumi:Stack"


class Tree:
    """Registered resources by URN, with their children, under the stack resource ``stack``.

    The mocks create the stack resource once per process and later programs' resources name that first one as
    their parent, so the stack node is not taken from the registrations: every resource whose parent was not
    registered by this program is a child of ``stack``."""

    def __init__(self, stack: str, nodes: list[Node]):
        self.stack = Node("", STACK, stack, "")
        self.nodes = {n.urn: n for n in nodes if n.type != STACK}
        self.children: dict[str, list[Node]] = defaultdict(list)
        for node in self.nodes.values():
            self.children[node.parent if node.parent in self.nodes else ""].append(node)
        for siblings in self.children.values():
            siblings.sort(key=lambda n: (n.type, n.name))

    @property
    def roots(self) -> list[Node]:
        """The stack's own children."""
        return self.children[""]

    def of_type(self, type_: str) -> list[Node]:
        return sorted((n for n in self.nodes.values() if n.type == type_), key=lambda n: n.name)

    def parent_of(self, node: Node) -> Node:
        return self.nodes[node.parent]

    def render(self) -> str:
        """``pulumi stack``'s layout: TYPE and NAME columns, children indented under their parent."""
        rows: list[tuple[str, str]] = []

        def walk(node: Node, prefix: str, last: bool, top: bool) -> None:
            rows.append((node.type if top else f"{prefix}{'└─ ' if last else '├─ '}{node.type}", node.name))
            below = prefix if top else prefix + ("   " if last else "│  ")
            kids = self.children.get(node.urn, [])
            for i, kid in enumerate(kids):
                walk(kid, below, i == len(kids) - 1, False)

        walk(self.stack, "", True, True)
        width = max(len(t) for t, _ in [*rows, ("TYPE", "")]) + 2
        return "\n".join(f"{t.ljust(width)}{n}".rstrip() for t, n in [("TYPE", "NAME"), *rows]) + "\n"


def resource_tree(stack: str) -> Tree:
    """Run stacks/__main__.py for ``stack`` under the mocks and read back every registration's parent."""
    mocks = RecordingMocks()
    graph = GraphMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="park", stack=stack, preview=False, monitor=graph)
    pulumi.runtime.set_all_config(stack_config(project_root() / "stacks" / f"Pulumi.{stack}.yaml"))

    @pulumi.runtime.test  # runs the program and waits for every registration
    def run() -> None:
        runpy.run_path(str(PROGRAM))

    try:
        run()
    finally:
        pulumi.runtime.set_all_config({})
    return Tree(f"park-{stack}", [Node(n.urn, n.type, n.name, n.parent, n.alias_parents)
                                      for n in graph.nodes.values()])


def resource_tree_doc(trees: dict[str, Tree]) -> str:
    """docs/resource-tree.md: a short preface, then each shipped stack's tree."""
    parts = [(
        "# Resource tree of each shipped stack\n\n"
        "What `pulumi stack` lists for each stack in `stacks/`, from the stack program run under Pulumi's mocks "
        "(`tests/test_resource_tree.py`, which also asserts this file is current; regenerate it with "
        "`.venv/bin/python tests/test_resource_tree.py`). Siblings are sorted by type, then name. The Platform "
        "holds one component per concept: the cloud's network, cluster and storage (node pools inside the "
        "cluster) and one component per add-on, each holding its Helm releases (`<addon>-<release>`), the CRDs "
        "of their charts (`-crds`) and park-stack's own objects (`-objects`). The concepts are in "
        "[architecture.md](architecture.md#pulumi-components).\n"
    )]
    for stack, tree in sorted(trees.items()):
        parts.append(f"\n## {stack}\n\n```text\n{tree.render()}```\n")
    return "".join(parts)


@pytest.fixture(scope="module")
def trees() -> dict[str, Tree]:
    return {stack: resource_tree(stack) for stack in sorted(SPECS)}


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_the_platform_holds_a_few_concepts_and_every_addon(stack, trees):
    tree = trees[stack]
    (platform,) = tree.roots
    assert platform.type == "park:index:Platform", f"{stack}: the root is {platform.type}"
    children = tree.children[platform.urn]
    assert len(children) <= MAX_PLATFORM_CHILDREN, (
        f"{stack}: {len(children)} resources directly under the Platform:\n{tree.render()}")
    expected = CONCEPTS[SPECS[stack].cloud] | {addon.TYPE for addon in ADDONS}
    assert sorted(c.type for c in children) == sorted(expected), f"{stack}: under the Platform:\n{tree.render()}"


@pytest.mark.parametrize("stack", sorted(s for s in SPECS if SPECS[s].cloud in NODE_POOL))
def test_each_node_pool_is_one_component_inside_the_cluster(stack, trees):
    tree, spec = trees[stack], provisionable_variant(stack)
    cluster_type, pool_type, group_type = NODE_POOL[spec.cloud]
    (cluster,) = tree.of_type(cluster_type)
    pools = tree.of_type(pool_type)
    assert [p.name for p in pools] == sorted(f"{spec.cluster_name}-{p.name}" for p in spec.node_pools)
    for pool in pools:
        assert pool.parent == cluster.urn, f"{pool.urn} is not inside {cluster.urn}"
        assert [c.type for c in tree.children[pool.urn]] == [group_type], f"{pool.urn} holds something else"


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_every_resource_sits_in_the_component_of_its_concept(stack, trees):
    tree = trees[stack]
    cloud = SPECS[stack].cloud
    for node in tree.nodes.values():
        if node.type.startswith(("aws:", "gcp:")):
            owner = tree.parent_of(node)
            assert owner.type.startswith(f"park:{cloud}:"), f"{node.urn} sits under {owner.type}, not a {cloud} concept"
        if node.type in KUBERNETES_OBJECTS:
            owner = tree.parent_of(node)
            assert owner.type in {addon.TYPE for addon in ADDONS}, f"{node.urn} sits under {owner.type}, not an add-on"
        if node.type == "pulumi:providers:kubernetes":
            assert tree.parent_of(node).type in CONCEPTS[cloud], f"{node.urn}: the cluster's provider is not the cluster's"


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_resources_moved_into_a_concept_keep_their_name_and_alias_their_old_parent(stack, trees):
    """Before the concept components, every cloud resource and the cluster's provider sat directly under the
    Platform with the same name; a parent is part of the URN, so each names the Platform in an alias and an
    existing stack maps it to its new place instead of replacing it."""
    tree = trees[stack]
    (platform,) = tree.roots
    for node in tree.nodes.values():
        moved = not node.type.startswith("park:") and tree.parent_of(node).type.startswith("park:") \
            and tree.parent_of(node).type in CONCEPTS[SPECS[stack].cloud] | set(NODE_POOL.get(SPECS[stack].cloud, ()))
        if moved:
            assert node.name.startswith(f"{platform.name}-"), node.urn
            assert node.alias_parents == (platform.urn,), f"{node.urn} aliases {node.alias_parents}, not the Platform"


def test_the_doc_shows_the_current_trees(trees):
    assert DOC.is_file(), f"{DOC} is missing; {REGENERATE}"
    assert DOC.read_text() == resource_tree_doc(trees), f"{DOC} differs from the stacks' resource trees; {REGENERATE}"


if __name__ == "__main__":
    DOC.write_text(resource_tree_doc({stack: resource_tree(stack) for stack in sorted(SPECS)}))
    print(f"wrote {DOC.relative_to(project_root())}", file=sys.stderr)
