"""The sample manifests beside each workload (workloads/<name>/<kind>.kind.yaml) are what the builders render
for the shipped kind stack today, are valid custom resources, and cover every workload ``park render
--workloads`` writes. Regenerate them with ``.venv/bin/python -m park.workloads.samples``."""

from __future__ import annotations

import pytest
import yaml
from park.components.spec import project_root
from park.workloads import samples
from schemas import assert_valid_custom_resource

RENDERED = samples.render_samples()
REGENERATE = "regenerate with: .venv/bin/python -m park.workloads.samples"


def test_every_sample_file_is_a_rendered_workload():
    """No stale sample of a workload the kind stack no longer renders lies beside the code."""
    on_disk = set(samples.WORKLOADS_FOLDER.glob(f"*/*.{samples.SAMPLE_STACK}.yaml"))
    assert on_disk == set(RENDERED), f"sample files differ from the rendered workloads; {REGENERATE}"


@pytest.mark.parametrize("path", sorted(RENDERED), ids=lambda path: str(path.relative_to(project_root())))
def test_sample_matches_its_builder(path):
    assert path.is_file(), f"{path} is missing; {REGENERATE}"
    assert path.read_text() == RENDERED[path], f"{path} differs from what its builder renders; {REGENERATE}"


@pytest.mark.parametrize("path", sorted(RENDERED), ids=lambda path: str(path.relative_to(project_root())))
def test_sample_is_one_valid_custom_resource(path):
    """What a reader applies with ``kubectl apply -f`` parses to one object that its CRD (KubeRay v1.7.0,
    ../shared/schemas) accepts, in the namespace and LocalQueue its header names."""
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert len(documents) == 1, f"{path}: {len(documents)} documents"
    document = documents[0]
    assert_valid_custom_resource(document)
    header = path.read_text().split("---\n", 1)[0]
    assert f"-n {document['metadata']['namespace']} " in header
    assert document["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] in header
