"""Optional extras of park-stack at the command boundary.

The base install is what ``pulumi up`` and ``park render`` need; the workloads (Ray, PyTorch, transformers),
the vLLM engines and the conformance suite are extras (pyproject.toml). A command that needs one calls
:func:`require_extra` before importing it, so a platform team on the base install reads which extra to
install, in one line and exit 2, instead of a ModuleNotFoundError traceback.
"""

from __future__ import annotations

import importlib.util
import sys

MISSING_EXTRA_EXIT = 2
"""The command cannot run on this install: like a usage error, nothing was started."""


def missing_modules(*modules: str) -> list[str]:
    """Those of ``modules`` (import names) that cannot be imported here, found without importing them."""
    missing = []
    for module in modules:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a dotted name whose parent is missing, or a broken entry
            spec = None
        # A bare folder of that name on sys.path is a namespace package, not the distribution: Ray's session
        # folder /tmp/ray passes for `ray` when a command runs in /tmp.
        if spec is None or spec.origin is None:
            missing.append(module)
    return missing


def require_extra(extra: str, *modules: str, command: str, alternative: str | None = None) -> None:
    """Exit with :data:`MISSING_EXTRA_EXIT` and one line naming ``extra`` (and an ``alternative`` extra that
    brings the same modules, such as gpu for cpu) when any of ``modules`` is missing; return quietly
    otherwise."""
    missing = missing_modules(*modules)
    if missing:
        other = f" (or 'park-stack[{alternative}]')" if alternative else ""
        print(f"error: {command} needs the {extra} extra (missing: {', '.join(missing)}); install it with "
              f"pip install 'park-stack[{extra}]'{other}", file=sys.stderr)
        raise SystemExit(MISSING_EXTRA_EXIT)
