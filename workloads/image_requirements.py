"""The requirements the workload image installs: an extra of park-stack (``cpu`` or ``gpu``) and the extras it
includes (``park-stack[workloads]``), without the base dependencies.

The base is what ``pulumi up`` and ``park render`` need (Pulumi, its Kubernetes provider, the Helm SDK): Ray
pods never run those, so workloads/Dockerfile installs park-stack with ``--no-deps`` and then exactly these
requirements (``python workloads/image_requirements.py cpu``, one per line). The ``workloads`` extra repeats
the few base dependencies the workloads import (pydantic, PyYAML, typer, kubernetes) for that reason.

Runs before park-stack is installed, in the Ray image's Python: standard library plus ``packaging`` (a
dependency of Ray).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def extra_requirements(pyproject: Path, extra: str) -> list[str]:
    """The requirement strings of ``extra`` and, recursively, of the extras of this project it names, in
    order and without repeats; references to the project itself (``park-stack[workloads]``) are followed,
    not returned. An unknown extra is a ``KeyError`` naming the known ones."""
    project = tomllib.loads(pyproject.read_text())["project"]
    name, extras = canonicalize_name(project["name"]), project.get("optional-dependencies", {})
    found: list[str] = []
    seen: set[str] = set()

    def visit(current: str) -> None:
        if current in seen:
            return
        if current not in extras:
            raise KeyError(f"no extra {current!r} in {pyproject}; known: {', '.join(sorted(extras))}")
        seen.add(current)
        for text in extras[current]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == name:
                for included in sorted(requirement.extras):
                    visit(included)
            elif text not in found:
                found.append(text)

    visit(extra)
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python workloads/image_requirements.py EXTRA  (run in the folder of pyproject.toml)",
              file=sys.stderr)
        return 2
    try:
        print("\n".join(extra_requirements(Path("pyproject.toml"), argv[0])))
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
