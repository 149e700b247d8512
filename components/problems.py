"""One problem of a stack config with its property path: what the spec's checks and each cloud's rules report.

A leaf, so that the per-cloud rules (``park.components.cloud_rules``) can report problems without importing the
spec that asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem of a stack config. ``path`` is the exact property path, as ``pulumi config set --path
    'park:<path>'`` takes it; ``names`` says which pool / team / model its list positions are; ``file`` and
    ``line`` where the stack file has the key (or its nearest parent), when the config came from a file."""

    path: str
    reason: str
    names: str = ""
    file: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else f"{self.file}: " if self.file else ""
        path = f"{self.path} ({self.names})" if self.path and self.names else self.path
        return f"{where}{path}: {self.reason}" if path else f"{where}{self.reason}"
