"""The workload image and the served model's location are stack settings, with commands that build, push and stage
them (issue 11, item 3).

- ``workloads.image`` / ``workloads.gpuImage`` reach every Ray pod the reference workloads render; unset, the pins
  of components/versions.py (and their ``PARK_WORKLOAD_IMAGE`` overrides) still apply; the stack's setting wins.
- An image that is not a reference (distribution/reference v0.5.0 reference.go grammar), or has no tag or digest,
  stops ``park render`` with exit 2 and its property path.
- A bucket model source must be the stack's own bucket; a hub id gets the hub back in its replicas, although the
  image is offline.
- ``park image build|push|load`` / ``make image`` and ``park stage-model`` run (or, with --dry-run, print) the
  documented commands.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from park.components import versions
from park.components.spec import (
    GPU_RESOURCE,
    SpecError,
    config_from_stack_file,
    parse_spec,
    resolve_stack_file,
)
from park.workloads import render_workloads
from park.workloads.serve import app as serve_app
from park.workloads.serve.config import serve_config
from park_in_process import park_in_process
from schemas import shipped_specs

ROOT = Path(__file__).resolve().parent.parent
PARK = Path(sys.executable).parent / "park"
SPECS = shipped_specs()
ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com/park-workloads:1.2.3"


def stack_config(stack: str, **changes) -> dict:
    return {**config_from_stack_file(resolve_stack_file(stack)), **changes}


def park_script(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script in a fresh process (one test per command uses it)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARK_")}
    return subprocess.run([str(PARK), *args], cwd=cwd or ROOT, env={**clean, **(env or {})}, capture_output=True,
                          text=True, timeout=120, check=False)


def park(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    """The same command in this process (no start-up of its own); an unhandled exception shows on stderr."""
    return park_in_process(*args, cwd=cwd or ROOT, env=env)


def pod_images(document: dict) -> list[tuple[bool, str]]:
    """(asks for a GPU, image) of every container in every pod template of a rendered workload."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for container in node.get("containers", []) if isinstance(node.get("containers"), list) else []:
                limits = container.get("resources", {}).get("limits", {})
                found.append((int(limits.get(GPU_RESOURCE, 0)) > 0, container["image"]))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(document)
    return found


# --- the stack setting reaches every pod -------------------------------------------------------------------


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_the_stacks_workload_image_reaches_every_ray_pod(stack):
    """Heads and CPU workers run workloads.image, GPU workers workloads.gpuImage, in every RayJob and RayService."""
    spec = parse_spec(stack_config(stack, workloads={"image": ECR, "gpuImage": "registry.example.com/gpu:7"}))
    documents = render_workloads(spec)
    assert len(documents) == (4 if spec.models else 3)  # train, batch, posttrain (+ serve)
    for document in documents:
        images = pod_images(document)
        assert images, f"{document['kind']} has no pod template"
        for gpu, image in images:
            assert image == ("registry.example.com/gpu:7" if gpu else ECR), (document["kind"], gpu, image)
    if spec.has_gpus:
        assert any(gpu for doc in documents for gpu, _ in pod_images(doc)), "no GPU pod rendered on a GPU stack"


def test_the_gpu_image_defaults_to_the_image_with_gpu_appended_to_its_tag():
    spec = parse_spec(stack_config("aws", workloads={"image": ECR}))
    images = {image for doc in render_workloads(spec) for _, image in pod_images(doc)}
    assert images == {ECR, f"{ECR}-gpu"}


@contextlib.contextmanager
def versions_reloaded():
    """components/versions.py read again under the environment as it is now, then put back as it was, the same
    objects: reloading it once more would make a new ``Chart`` class, and the pins other modules compare with
    ``==`` (test_schemas.py) would no longer equal the releases' charts."""
    saved = dict(vars(versions))
    try:
        yield importlib.reload(versions)
    finally:
        vars(versions).clear()
        vars(versions).update(saved)


def test_unset_the_pins_apply_and_their_environment_override_still_works(monkeypatch):
    """Stacks that set nothing keep today's behaviour: the pins, overridable by PARK_WORKLOAD_IMAGE; a stack that
    sets workloads.image wins over the variable."""
    unset, pinned = SPECS["aws"], parse_spec(stack_config("aws", workloads={"image": ECR}))
    assert unset.workloads.reference(gpu=False) == versions.WORKLOAD_IMAGE
    monkeypatch.setenv("PARK_WORKLOAD_IMAGE", "team.example/park:2")
    with versions_reloaded():
        assert unset.workloads.reference(gpu=False) == "team.example/park:2"
        assert unset.workloads.reference(gpu=True) == "team.example/park:2-gpu"
        assert pinned.workloads.reference(gpu=False) == ECR


def test_an_empty_override_variable_is_no_override(monkeypatch):
    """A CI variable left unset arrives as an empty string; it must not become an empty image name."""
    monkeypatch.setenv("PARK_WORKLOAD_IMAGE", "")
    with versions_reloaded():
        assert versions.WORKLOAD_IMAGE == versions.UNPUBLISHED_WORKLOAD_IMAGE


# --- invalid image references ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "words"), [
    ("Team/Park:1", "not a container image reference"),         # upper case in the path
    ("park workloads:1", "not a container image reference"),
    ("registry.example.com/park:", "not a container image reference"),
    ("registry.example.com/park@sha256:abc", "not a container image reference"),  # digest too short
    ("registry.example.com/park", "names no tag or digest"),
])
def test_an_invalid_image_stops_park_render_with_its_path(value, words, tmp_path):
    """Grammar: distribution/reference v0.5.0 reference.go (path components lower case, tag [\\w][\\w.-]{0,127},
    digest algorithm:hex of 32 or more)."""
    config = yaml.safe_load(resolve_stack_file("kind").read_text())
    config["config"]["park:workloads"] = {"image": value}
    stack = tmp_path / "Pulumi.mine.yaml"
    stack.write_text(yaml.safe_dump(config))
    result = park("render", str(stack))
    assert result.returncode == 2, result.stdout[-500:] + result.stderr
    assert "Traceback" not in result.stderr
    # a line `workloads.image: reason`, perhaps after the file (and line) it is in
    line = next(line for line in result.stderr.splitlines() if re.search(r"(^|: )workloads\.image: ", line))
    assert words in line


@pytest.mark.parametrize("value", [
    ECR,
    "us-central1-docker.pkg.dev/my-project/park/workloads:0.1.0",
    "localhost:5000/park-workloads:dev_1",
    "park-stack/workloads:0.1.0",
    "registry.example.com/park@sha256:" + "a" * 64,
])
def test_real_registry_references_are_accepted(value):
    spec = parse_spec(stack_config("kind", workloads={"image": value}))
    assert spec.workloads.reference(gpu=False) == value


def test_a_digest_pinned_image_needs_an_explicit_gpu_image_on_a_gpu_stack():
    digest = "registry.example.com/park@sha256:" + "b" * 64
    with pytest.raises(SpecError) as err:
        parse_spec(stack_config("aws", workloads={"image": digest}))
    assert [p.path for p in err.value.problems] == ["workloads.gpuImage"]
    assert "pinned by digest" in str(err.value)
    spec = parse_spec(stack_config("aws", workloads={"image": digest, "gpuImage": digest + "0"}))
    assert spec.workloads.reference(gpu=True) == digest + "0"
    parse_spec(stack_config("kind", workloads={"image": digest}))  # no GPU pool: nothing to derive


def test_an_invalid_override_variable_is_reported_at_the_setting_it_replaces():
    # a fresh process: components/versions.py reads the override variables when it is imported
    result = park_script("render", "kind", env={"PARK_WORKLOAD_IMAGE": "Not An Image"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.search(r"(^|: )workloads\.image: .*from PARK_WORKLOAD_IMAGE", result.stderr, re.MULTILINE), result.stderr


def test_unknown_keys_under_workloads_get_a_suggestion():
    with pytest.raises(SpecError) as err:
        parse_spec(stack_config("kind", workloads={"imag": ECR}))
    assert str(err.value.problems[0]) == "workloads.imag: unknown key; did you mean 'image'?"


# --- where the served model comes from ---------------------------------------------------------------------


@pytest.mark.parametrize("stack", sorted(SPECS))
def test_every_shipped_model_source_is_readable_by_an_offline_image(stack):
    """The image sets HF_HUB_OFFLINE=1 (workloads/Dockerfile). Each shipped model is either in the stack's own
    bucket or storage folder (nothing to download from the hub), or a hub id whose replicas get the hub back."""
    spec = SPECS[stack]
    assert "HF_HUB_OFFLINE=1" in (ROOT / "workloads" / "Dockerfile").read_text()
    args = serve_app.parse_args(serve_config(spec)["applications"][0]["args"])
    for model in args.models:
        location = serve_app.locate_model(model.source)
        if location.kind == "hub":
            env = serve_app.llm_config_dict(model, args)["runtime_env"]["env_vars"]
            assert env["HF_HUB_OFFLINE"] == "0", f"{stack}: hub model {model.source} would start offline"
        else:
            assert model.source.startswith(spec.storage_uri + "/"), (
                f"{stack}: {model.source} is outside the stack's storage {spec.storage_uri}")


def test_the_aws_stack_serves_from_its_own_bucket():
    """Issue 11: the aws stack named a hub id while the image is offline; it now serves a staged copy."""
    source = SPECS["aws"].models[0].source
    assert source == f"{SPECS['aws'].storage_uri}/models/{SPECS['aws'].models[0].name}"


@pytest.mark.parametrize(("stack", "source", "words"), [
    ("aws", "s3://someone-elses-bucket/models/qwen", "not in the stack's bucket s3://park-aws-park-data"),
    ("aws", "gs://park-aws-park-data/models/qwen", "not in the stack's bucket s3://park-aws-park-data"),
    ("gcp", "s3://park-gcp-park-data/models/qwen", "not in the stack's bucket gs://park-gcp-park-data"),
    ("kind", "s3://bucket/models/tiny", "kind has no bucket"),
    ("kind", "hf://Qwen/Qwen2.5-0.5B-Instruct", "unsupported scheme 'hf'"),
])
def test_a_model_source_its_pods_cannot_read_is_a_config_error(stack, source, words):
    """Ray pods may read only the stack's bucket: components/clouds/aws.py ray_bucket_policy, gcp.py
    RAY_BUCKET_ROLE granted on the stack's bucket alone."""
    models = [{**SPECS[stack].models[0].model_dump(by_alias=True, exclude_none=True), "source": source}]
    with pytest.raises(SpecError) as err:
        parse_spec(stack_config(stack, models=models))
    problems = {p.path: p.reason for p in err.value.problems}
    assert words in problems["models[0].source"], problems


def test_a_renamed_bucket_names_the_source_to_use():
    models = [SPECS["aws"].models[0].model_dump(by_alias=True, exclude_none=True)]
    with pytest.raises(SpecError, match=r"s3://my-org-data/models/qwen2.5-0.5b-instruct"):
        parse_spec(stack_config("aws", storage={"bucket": "my-org-data"}, models=models))


def test_a_hub_model_gets_the_hub_back_and_a_bucket_model_stays_offline():
    args = serve_app.ServeAppArgs(models=[
        serve_app.ServedModelArgs(name="hub", source="Qwen/Qwen2.5-0.5B-Instruct", gpus=1),
        serve_app.ServedModelArgs(name="bucket", source="s3://b/models/q", gpus=1)])
    hub, bucket = (serve_app.llm_config_dict(m, args)["runtime_env"]["env_vars"] for m in args.models)
    assert hub["HF_HUB_OFFLINE"] == "0" and bucket["HF_HUB_OFFLINE"] == "1"


# --- park image, make image --------------------------------------------------------------------------------


def dry_run_lines(*args: str) -> list[list[str]]:
    result = park(*args, "--dry-run")
    assert result.returncode == 0, result.stderr
    return [shlex.split(line.removeprefix("DOCKER_BUILDKIT=1 ")) for line in result.stdout.splitlines()]


def test_park_image_build_tags_from_the_stack_and_builds_from_the_pinned_ray_images(tmp_path):
    config = yaml.safe_load(resolve_stack_file("aws").read_text())
    config["config"]["park:workloads"] = {"image": ECR}
    stack = tmp_path / "Pulumi.mine.yaml"
    stack.write_text(yaml.safe_dump(config))
    cpu, gpu = dry_run_lines("image", "build", str(stack))
    for argv, ray, extra, tag in ((cpu, versions.RAY_IMAGE_CPU, "cpu", ECR), (gpu, versions.RAY_IMAGE_GPU, "gpu",
                                                                              f"{ECR}-gpu")):
        assert argv[:4] == ["docker", "build", "-f", "workloads/Dockerfile"] and argv[-1] == "."
        assert f"RAY_IMAGE={ray}" in argv and f"EXTRA={extra}" in argv
        assert argv[argv.index("-t") + 1] == tag
        assert argv[argv.index("--platform") + 1] == "linux/amd64"
    assert dry_run_lines("image", "push", str(stack)) == [["docker", "push", ECR], ["docker", "push", f"{ECR}-gpu"]]
    # ... and workloads/Dockerfile takes those build args; EXTRA names extras of pyproject.toml
    dockerfile = (ROOT / "workloads" / "Dockerfile").read_text()
    assert re.search(r"^ARG RAY_IMAGE\nFROM \$\{RAY_IMAGE\}$", dockerfile, re.MULTILINE)
    assert re.search(r"^ARG EXTRA=cpu$", dockerfile, re.MULTILINE)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"cpu", "gpu"} <= set(extras)


def test_a_kind_stack_builds_one_cpu_image_for_the_host_and_loads_it():
    (build,) = dry_run_lines("image", "build", "kind")
    assert "--platform" not in build and "EXTRA=cpu" in build
    assert dry_run_lines("image", "load", "kind") == [
        ["kind", "load", "docker-image", versions.WORKLOAD_IMAGE, "--name", SPECS["kind"].cluster_name]]
    result = park("image", "load", "aws", "--dry-run")
    assert result.returncode == 2 and "park image push" in result.stderr


def test_make_image_runs_park_image_build_for_the_chosen_stack():
    # Under `make test` the parent make's MAKEFLAGS / MAKELEVEL would add "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(["make", "-n", "-o", ".venv/.park-installed", "image", "image-push", "STACK=aws"],
                            cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    assert result.stdout.splitlines() == [".venv/bin/park image build aws", ".venv/bin/park image push aws"]


def test_park_image_without_docker_says_so_in_one_line(tmp_path):
    result = park_script("image", "build", "kind", env={"PATH": str(tmp_path)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "docker is not installed or not on PATH" in result.stderr


# --- park stage-model --------------------------------------------------------------------------------------


def test_stage_model_downloads_a_hub_id_and_syncs_it_to_the_stacks_bucket():
    lines = dry_run_lines("stage-model", "aws", "Qwen/Qwen2.5-0.5B-Instruct")
    assert lines[0][0].endswith("hf") and lines[0][1:] == [
        "download", "Qwen/Qwen2.5-0.5B-Instruct", "--local-dir", "models/qwen2.5-0.5b-instruct"]
    assert lines[1] == ["aws", "s3", "sync", "models/qwen2.5-0.5b-instruct", SPECS["aws"].models[0].source]


def test_stage_model_copies_a_local_folder_to_gcs_or_kinds_host_folder(tmp_path):
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert dry_run_lines("stage-model", "gcp", str(folder)) == [
        ["gcloud", "storage", "rsync", "--recursive", str(folder), SPECS["gcp"].models[0].source]]
    target = SPECS["kind"].models[0].source.removeprefix("file://")
    assert dry_run_lines("stage-model", "kind", str(folder)) == [["mkdir", "-p", target],
                                                                 ["cp", "-R", f"{folder}/.", target]]


@pytest.mark.parametrize(("args", "words"), [
    (["aws", "no-such-folder/"], "does not exist"),
    (["aws", "Qwen/Qwen2.5-0.5B-Instruct", "--model", "llama"], "serves no model 'llama'"),
])
def test_stage_model_refuses_what_it_cannot_stage(args, words):
    result = park("stage-model", *args, "--dry-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert words in result.stderr


def test_stage_model_of_a_hub_source_says_there_is_nothing_to_stage(tmp_path):
    config = yaml.safe_load(resolve_stack_file("aws").read_text())
    config["config"]["park:models"][0]["source"] = "Qwen/Qwen2.5-0.5B-Instruct"
    stack = tmp_path / "Pulumi.mine.yaml"
    stack.write_text(yaml.safe_dump(config))
    result = park_script("stage-model", str(stack), "Qwen/Qwen2.5-0.5B-Instruct", "--dry-run")
    assert result.returncode == 2 and "nothing to stage" in result.stderr


# --- the CI example ----------------------------------------------------------------------------------------


def stack_reading_script() -> str:
    workflow = yaml.safe_load((ROOT / "docs" / "ci" / "conformance-workflow.yaml").read_text())
    step = next(s for s in workflow["jobs"]["cluster"]["steps"] if "read cloud" in s.get("name", ""))
    return re.search(r"<<'EOF'\n(.*?)\nEOF", step["run"], re.DOTALL).group(1)


def test_the_ci_cluster_job_stops_on_an_unpublished_image_and_takes_the_stacks_own(tmp_path):
    """The example workflow used to require PARK_WORKLOAD_IMAGE; the stack's setting now serves as well."""
    script = stack_reading_script()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARK_")}

    def run(stack: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-", stack], input=script, cwd=ROOT, env={**clean, **env},
                              capture_output=True, text=True, check=False)

    refused = run("aws")
    assert refused.returncode != 0 and "no registry has" in refused.stderr
    assert run("aws", PARK_WORKLOAD_IMAGE=ECR).returncode == 0
    config = yaml.safe_load(resolve_stack_file("aws").read_text())
    config["config"]["park:workloads"] = {"image": ECR}
    stack = tmp_path / "Pulumi.mine.yaml"
    stack.write_text(yaml.safe_dump(config))
    accepted = run(str(stack))
    assert accepted.returncode == 0, accepted.stderr
    assert "CLOUD=aws" in accepted.stdout
