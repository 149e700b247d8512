"""Stack configs a platform team gets wrong on its first try: the same answer from ``pulumi up`` (the stack
program under Pulumi's mocks) and ``park render`` (the console script), every problem with its property path
and the offending value, exit 2 for ``park render``, never a traceback."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
import yaml
from park.components.spec import project_root
from pulumi_mocks import install

PROGRAM = project_root() / "stacks" / "__main__.py"
PARK = Path(sys.executable).parent / "park"


def shipped_config(stack: str) -> dict[str, object]:
    return yaml.safe_load((project_root() / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]


def as_engine_config(config: dict[str, object]) -> dict[str, str]:
    """What the Pulumi engine hands a program: structured values as JSON text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def run_pulumi_program(config: dict[str, object]) -> str:
    """Run stacks/__main__.py under the mocks; the RunError text it stops with (fails if it does not stop)."""
    install(stack="first-contact")
    pulumi.runtime.set_all_config(as_engine_config(config))
    try:
        with pytest.raises(pulumi.RunError) as failure:
            runpy.run_path(str(PROGRAM))
    finally:
        pulumi.runtime.set_all_config({})
    return str(failure.value)


def run_park_render(tmp_path: Path, config: dict[str, object]) -> subprocess.CompletedProcess[str]:
    stack_file = tmp_path / "Pulumi.mine.yaml"
    stack_file.write_text(yaml.safe_dump({"config": config}))
    return subprocess.run([str(PARK), "render", str(stack_file)], capture_output=True, text=True, timeout=120)


TYPO_CASES = {
    # key as typed -> the line both entry points must print
    "park:modles": "modles: unknown key; did you mean 'models'?",
    "park:observabilty": "observabilty: unknown key; did you mean 'observability'?",
}


@pytest.mark.parametrize("typo", sorted(TYPO_CASES))
def test_a_typod_top_level_key_stops_pulumi_up_as_it_stops_park_render(typo, tmp_path):
    """Before: the stack program read the spec's fields one by one, so `park:modles` vanished under
    `pulumi up` while `park render` rejected the same file."""
    config = shipped_config("kind")
    config[typo] = [] if typo.endswith("les") else {"prometheus": False}
    expected = TYPO_CASES[typo]

    message = run_pulumi_program(config)
    assert expected in message, f"pulumi up did not report {typo}: {message}"

    rendered = run_park_render(tmp_path, config)
    assert rendered.returncode == 2, rendered.stderr
    assert expected in rendered.stderr.splitlines(), rendered.stderr
    assert "Traceback" not in rendered.stderr


def test_a_stack_without_park_keys_says_so(tmp_path):
    """Before: four `required` lines (cloud, clusterName, nodePools, teams) that did not say why."""
    config = {"aws:region": "us-west-2"}
    rendered = run_park_render(tmp_path, config)
    assert rendered.returncode == 2
    lines = rendered.stderr.splitlines()
    assert len(lines) == 1, lines
    assert "has no park:* keys" in lines[0] and "Pulumi.mine.yaml" in lines[0], lines
    assert "Traceback" not in rendered.stderr
    assert "has no park:* keys" in run_pulumi_program(config)


def test_an_unknown_cloud_echoes_the_value_given(tmp_path):
    config = shipped_config("kind")
    config["park:cloud"] = "azure"
    rendered = run_park_render(tmp_path, config)
    assert rendered.returncode == 2
    assert "cloud: Input should be 'aws', 'gcp' or 'kind' (got 'azure')" in rendered.stderr.splitlines(), \
        rendered.stderr
    assert "Traceback" not in rendered.stderr
    assert "(got 'azure')" in run_pulumi_program(config)


def test_the_program_reads_structured_values_set_as_real_json(tmp_path):
    """`pulumi config set --path` stores lists and maps as JSON text; both entry points read the same spec."""
    config = shipped_config("kind")
    config["park:teams"] = [{"name": "research", "quotas": [{"pool": "gpu"}]}]
    message = run_pulumi_program(config)
    assert "teams[0].quotas[0].pool: unknown pool 'gpu'" in message


def test_an_unquoted_kubernetes_version_says_to_quote_it(tmp_path):
    """Issue 11: YAML reads `kubernetesVersion: 1.30` as 1.3; the message used to be "Input should be a valid
    string", which does not tell the user what to change."""
    config = shipped_config("kind")
    config["park:kubernetesVersion"] = 1.30
    rendered = run_park_render(tmp_path, config)
    assert rendered.returncode == 2
    line = next(x for x in rendered.stderr.splitlines() if x.startswith("kubernetesVersion:"))
    assert 'quoted string, e.g. "1.30"' in line and "1.3" in line, line


def test_an_unknown_stack_name_says_where_it_looked():
    """Issue 11: the message named the known stacks but not the folder it searched."""
    done = subprocess.run([str(PARK), "render", "no-such-stack"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    expected = str(project_root() / "stacks" / "Pulumi.no-such-stack.yaml")
    assert expected in done.stderr and "aws, gcp, kind" in done.stderr, done.stderr


def test_a_misspelled_park_namespace_is_reported_not_dropped(tmp_path):
    """Issue 11: `parks:models` is not a `park:` key, so both entry points ignored it and served nothing."""
    config = shipped_config("kind")
    config["parks:models"] = config.pop("park:models")
    expected = "parks:models: unknown config namespace 'parks'; did you mean 'park:models'?"
    rendered = run_park_render(tmp_path, config)
    assert rendered.returncode == 2
    assert expected in rendered.stderr.splitlines(), rendered.stderr
    assert expected in run_pulumi_program(config)
