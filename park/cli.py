"""The ``park`` command. Each sub-command lives with the code it drives; this file only wires them."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="park-stack: the PARK stack (PyTorch, AI models, Ray, Kubernetes) as code.")
