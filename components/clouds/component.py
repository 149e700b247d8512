"""The base of every cloud concept component (network, cluster, node pool, storage) the adapters declare.

A concept is a ``pulumi.ComponentResource`` with typed args and outputs, the way pulumi-eks and awsx shape
theirs; what one concept needs from another arrives as an argument (subnet ids, cluster name), not as state
set by an earlier method. Two things all of them share live here:

- the explicit cloud provider every child uses (``provider``; one per stack, for the spec's region/project);
- the names and the alias of the children. Before these components existed each child was declared directly
  under the Platform, with the same name. A child keeps that name (``{prefix}-vpc``), and carries
  ``Alias(parent=moved_from)`` so that on a stack created before, Pulumi recognises it under its new parent
  instead of replacing it (a parent is part of the URN).
"""

from __future__ import annotations

from typing import Any

import pulumi


class CloudComponent(pulumi.ComponentResource):
    """A cloud concept: children named ``{prefix}-...``, using ``provider``, aliased to ``moved_from``."""

    def __init__(self, type_: str, name: str, prefix: str, provider: pulumi.ProviderResource | None,
                 moved_from: pulumi.Resource | None, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_, name, None, opts)
        self.prefix = prefix
        """What the children's names start with: the Platform's name."""
        self._provider = provider
        self._aliases = [pulumi.Alias(parent=moved_from)] if moved_from is not None else None

    def child_opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a cloud resource of this component: parent, the explicit provider, the alias."""
        return pulumi.ResourceOptions(parent=self, provider=self._provider, aliases=self._aliases, **kwargs)

    def provider_opts(self) -> pulumi.ResourceOptions:
        """Options for a provider resource of this component (a provider takes no provider)."""
        return pulumi.ResourceOptions(parent=self, aliases=self._aliases)
