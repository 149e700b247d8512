"""Stack configs a platform team gets wrong on its first try: the same answer from ``pulumi up`` (the stack
program under Pulumi's mocks) and ``park render`` (in this process through typer's CliRunner, an unhandled
exception shown as the console script shows it; the console script itself runs for an unknown stack name and
an empty file), every problem with its property path and the offending value, exit 2 for ``park render``,
never a traceback."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
import yaml
from park.components.spec import project_root
from park_in_process import park_in_process
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
    return park_in_process("render", str(stack_file))


def without_location(stderr: str) -> list[str]:
    """The lines `park render` printed, without the `FILE:LINE: ` each problem of a stack file starts with."""
    return [re.sub(r"^\S+?\.yaml(:\d+)?: ", "", line) for line in stderr.splitlines()]


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
    assert expected in without_location(rendered.stderr), rendered.stderr
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
    assert "cloud: Input should be 'aws', 'gcp' or 'kind' (got 'azure')" in without_location(rendered.stderr), \
        rendered.stderr
    assert "Traceback" not in rendered.stderr
    assert "(got 'azure')" in run_pulumi_program(config)


def test_the_program_reads_structured_values_set_as_real_json(tmp_path):
    """`pulumi config set --path` stores lists and maps as JSON text; both entry points read the same spec."""
    config = shipped_config("kind")
    config["park:teams"] = [{"name": "research", "quotas": [{"pool": "gpu"}]}]
    message = run_pulumi_program(config)
    assert "teams[0].quotas[0].pool (team research): unknown pool 'gpu'" in message


def test_an_unquoted_kubernetes_version_says_to_quote_it(tmp_path):
    """Issue 11: YAML reads `kubernetesVersion: 1.30` as 1.3; the message used to be "Input should be a valid
    string", which does not tell the user what to change."""
    config = shipped_config("kind")
    config["park:kubernetesVersion"] = 1.30
    rendered = run_park_render(tmp_path, config)
    assert rendered.returncode == 2
    line = next(x for x in without_location(rendered.stderr) if x.startswith("kubernetesVersion:"))
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
    assert expected in without_location(rendered.stderr), rendered.stderr
    assert expected in run_pulumi_program(config)


def test_park_render_names_the_file_line_and_items_of_each_problem(tmp_path):
    """Issue 11: lines carried list positions only (`teams[0].quotas[1].cpu`) and no file or line; now
    `FILE:LINE: path (names): reason`, the path still exactly what `pulumi config set --path` takes."""
    config = shipped_config("aws")
    config["park:teams"][0]["quotas"][1]["cpu"] = 4000
    rendered = run_park_render(tmp_path, config)
    assert rendered.returncode == 2
    stack_file = tmp_path / "Pulumi.mine.yaml"
    line = next(n for n, text in enumerate(stack_file.read_text().splitlines(), 1) if "cpu: 4000" in text)
    expected = (f"{stack_file}:{line}: teams[0].quotas[1].cpu (team research, pool h100-spot): 4000 CPUs is above "
                "what pool 'h100-spot' can supply (2 nodes x 192 vCPUs)")
    assert rendered.stderr.splitlines() == [expected], rendered.stderr
    assert "teams[0].quotas[1].cpu (team research, pool h100-spot): 4000 CPUs" in run_pulumi_program(config)


def test_a_missing_key_points_at_the_line_of_its_parent(tmp_path):
    config = shipped_config("kind")
    del config["park:teams"][1]["name"]
    rendered = run_park_render(tmp_path, config)
    stack_file = tmp_path / "Pulumi.mine.yaml"
    lines = stack_file.read_text().splitlines()
    item = next(n for n, text in enumerate(lines, 1) if text.lstrip().startswith("- defaultPriority: high"))
    assert f"{stack_file}:{item}: teams[1].name: required" in rendered.stderr.splitlines(), rendered.stderr


def test_an_empty_stack_file_is_one_line(tmp_path):
    """Issue 11: an empty file gave four `required` lines."""
    stack_file = tmp_path / "Pulumi.empty.yaml"
    stack_file.write_text("# nothing here yet\n")
    done = subprocess.run([str(PARK), "render", str(stack_file)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [(
        f"{stack_file}: the file is empty; a stack needs at least park:cloud, :clusterName, :nodePools and :teams "
        "under 'config:' (see docs/stack-config.md, or start from stacks/Pulumi.kind.yaml)")], done.stderr


@pytest.mark.parametrize(("stack", "key", "value"), [
    ("aws", "aws:region", "eu-west-1"), ("gcp", "gcp:region", "europe-west4"), ("gcp", "gcp:project", "other-project")])
def test_a_provider_key_that_disagrees_with_its_park_key_is_an_error(stack, key, value, tmp_path):
    """Issue 11: `aws:region` / `gcp:region` / `gcp:project` were ignored in favour of the park: keys, so editing
    one moved nothing. The adapters build their providers from the park: keys; a disagreeing key now stops both
    entry points, saying which key counts."""
    config = shipped_config(stack)
    config[key] = value
    park_key = "region" if key.endswith("region") else "project"
    expected = f"{key}: {value!r} differs from park:{park_key} {config[f'park:{park_key}']!r}"
    rendered = run_park_render(tmp_path, config)
    assert rendered.returncode == 2
    assert any(expected in line for line in rendered.stderr.splitlines()), rendered.stderr
    assert expected in run_pulumi_program(config)


def test_the_adapters_build_their_providers_from_the_park_keys():
    """What the provider-key check relies on: the region (and project) every resource goes to is park:'s."""
    import inspect

    from park.components.clouds import aws, gcp

    assert "region=spec.region" in inspect.getsource(aws.aws_provider)
    gke = inspect.getsource(gcp.gcp_provider)
    assert "project=spec.project" in gke and "region=spec.region" in gke


def test_pulumi_up_of_the_shipped_gcp_stack_asks_for_a_project_and_bucket_of_ones_own(tmp_path):
    """Issue 11: `park-stack-demo` was a stand-in nothing asked to change, and the default bucket
    `park-gcp-park-data` (S3 alike: `park-aws-park-data`) is global, so the second adopter collides.
    `park render gcp` keeps working; `pulumi up` stops before declaring anything, saying what to set."""
    config = shipped_config("gcp")
    assert park_in_process("render", "gcp").returncode == 0
    message = run_pulumi_program(config)
    assert "project: 'park-stack-demo' is the shipped example's stand-in, not your project" in message, message
    assert "storage.bucket: required before `pulumi up`: Cloud Storage bucket names are global" in message, message

    config["park:project"] = config["gcp:project"] = "my-own-project"
    config["park:storage"] = {**config["park:storage"], "bucket": "my-own-project-park-gcp"}
    config["park:models"] = []  # a model source must be in the stack's bucket; none here
    message = run_pulumi_program_until_done(config)
    assert message is None, message


def test_pulumi_up_of_the_shipped_aws_stack_asks_for_a_bucket_of_ones_own():
    config = shipped_config("aws")
    config["park:security"] = {"allowedCidrs": ["198.18.0.1/32"]}
    message = run_pulumi_program(config)
    assert "storage.bucket: required before `pulumi up`: S3 bucket names are global" in message, message
    assert "aws sts get-caller-identity --query Account" in message
    assert "project" not in message.split("storage.bucket")[0].splitlines()[-1]


def run_pulumi_program_until_done(config: dict[str, object]) -> str | None:
    """Run stacks/__main__.py under the mocks: the RunError text it stops with, or None when it does not."""
    install(stack="first-contact")
    pulumi.runtime.set_all_config(as_engine_config(config))
    try:
        runpy.run_path(str(PROGRAM))
    except pulumi.RunError as err:
        return str(err)
    finally:
        pulumi.runtime.set_all_config({})
    return None
