"""Sample manifests beside each reference workload, like KubeRay's ``ray-operator/config/samples``.

Each workload folder holds the RayJob or RayService that ``park render kind --workloads`` writes for the
shipped kind stack (``stacks/Pulumi.kind.yaml``), so a reader sees the whole custom resource next to the code
it runs, and can ``kubectl apply`` it on a kind cluster set up as in docs/getting-started.md. The files are
generated from the builders, never edited by hand; tests/test_workload_samples.py fails when they drift.

Regenerate after changing a builder or the kind stack::

    .venv/bin/python -m park.workloads.samples
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from park.components.manifests.yaml_writer import to_yaml
from park.components.spec import load_stack_file, project_root
from park.workloads import render_workloads

SAMPLE_STACK = "kind"
WORKLOADS_FOLDER = Path(__file__).resolve().parent


def _workload_folders() -> dict[str, str]:
    """The name each builder (``workloads/<folder>/manifest.py``, its ``NAME``) gives its custom resource ->
    that folder; a new workload gets its sample without a change here."""
    folders = {}
    for manifest in sorted(WORKLOADS_FOLDER.glob("*/manifest.py")):
        folder = manifest.parent.name
        folders[importlib.import_module(f"park.workloads.{folder}.manifest").NAME] = folder
    return folders


FOLDERS = _workload_folders()

HEADER = """\
# {kind} {name}: the {folder} reference workload of the kind stack, exactly as
# `park render kind --workloads` writes it. Generated from {builder} by
# `python -m park.workloads.samples`; do not edit (tests/test_workload_samples.py compares).
#
# On a kind cluster set up as in docs/getting-started.md (the kind stack up with `pulumi up --stack kind`,
# the workload image loaded with `park image load kind`{model_step}):
#
#   kubectl apply -f workloads/{folder}/{file}
#   kubectl get workloads.kueue.x-k8s.io -n {namespace}     # Kueue admits it from LocalQueue {queue}
"""


def sample_path(document: dict) -> Path:
    """``workloads/<folder>/<kind lowercased>.kind.yaml`` for a rendered workload."""
    name = document["metadata"]["name"]
    if name not in FOLDERS:
        raise KeyError(f"no sample folder for workload {name!r}: its builder module needs a NAME")
    return WORKLOADS_FOLDER / FOLDERS[name] / f"{document['kind'].lower()}.{SAMPLE_STACK}.yaml"


def sample_text(document: dict) -> str:
    """The sample file of one rendered workload: a header saying how to use it, then the object."""
    path = sample_path(document)
    folder = FOLDERS[document["metadata"]["name"]]
    builder = f"workloads/{folder}/manifest.py"
    header = HEADER.format(
        kind=document["kind"], name=document["metadata"]["name"], folder=folder, builder=builder,
        file=path.name, namespace=document["metadata"]["namespace"],
        queue=document["metadata"]["labels"]["kueue.x-k8s.io/queue-name"],
        model_step=", the model built with `park tiny-model /mnt/park-storage/models/tiny-llama`"
        if document["kind"] == "RayService" else "")
    body = to_yaml(document, width=1_000)  # one line per command, as a reader types it
    return header + "---\n" + body


def render_samples() -> dict[Path, str]:
    """Every sample file's path and text, from the builders and the shipped kind stack."""
    spec = load_stack_file(project_root() / "stacks" / f"Pulumi.{SAMPLE_STACK}.yaml")
    return {sample_path(document): sample_text(document) for document in render_workloads(spec)}


def main() -> None:
    for path, text in render_samples().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(project_root())}", file=sys.stderr)


if __name__ == "__main__":
    main()
