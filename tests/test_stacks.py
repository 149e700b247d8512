"""The stack program (stacks/__main__.py) for every shipped stack, with the real cloud adapters, under Pulumi's
mock engine: config in, a Platform out, the add-ons applying exactly what the builders produce."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from park.components.manifests import BUILDERS, ClusterFacts
from park.components.spec import project_root
from pulumi_mocks import RecordingMocks, install
from schemas import provisionable_stack_config, provisionable_variant, shipped_specs

SPECS = shipped_specs()
PROGRAM = project_root() / "stacks" / "__main__.py"
RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"


def stack_config(path: Path) -> dict[str, str]:
    """A Pulumi.<stack>.yaml's config as the engine hands it to a program: structured values as JSON text,
    with what a team sets before `pulumi up` where the file has a stand-in (schemas.provisionable)."""
    config = provisionable_stack_config(yaml.safe_load(path.read_text())["config"])
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


@pytest.fixture(autouse=True)
def _clear_config():
    """Pulumi's config is process-global: leave none behind for other tests."""
    yield
    pulumi.runtime.set_all_config({})


def run_program(stack: str, config: dict[str, str]) -> tuple[RecordingMocks, dict[str, Any]]:
    mocks = install(stack=stack)
    pulumi.runtime.set_all_config(config)
    return mocks, runpy.run_path(str(PROGRAM))


def registered(mocks: RecordingMocks, type_: str) -> dict[str, dict[str, Any]]:
    return {name: reg.inputs for (typ, name), reg in mocks.registrations.items() if typ == type_}


@pytest.mark.parametrize("stack", sorted(SPECS))
@pulumi.runtime.test
def test_stack_program_applies_the_builders_output(stack):
    spec = provisionable_variant(stack)  # the config stack_config hands the program
    mocks, program = run_program(stack, stack_config(project_root() / "stacks" / f"Pulumi.{stack}.yaml"))
    platform = program["platform"]

    def check(values: list[Any]) -> None:
        cluster_name, storage_uri, queues, kubeconfig_is_secret = values
        assert cluster_name == spec.cluster_name
        assert queues == {team.name: team.local_queue for team in spec.teams}
        assert kubeconfig_is_secret is True
        facts = ClusterFacts.for_spec(spec)
        assert storage_uri == facts.storage_uri, "the adapter's storage must be the one render shows"
        groups = registered(mocks, CONFIG_GROUP)
        for addon, build in BUILDERS.items():
            built = build(spec, facts)
            name = f"{spec.cluster_name}-{addon}-objects"
            if built.objects:
                assert groups[name]["objs"] == [dict(o) for o in built.objects], f"{stack}: {addon} objects differ"
            else:
                assert name not in groups
        releases = {inputs["name"]: inputs for inputs in registered(mocks, RELEASE).values()}
        expected = {r.name: r for build in BUILDERS.values() for r in build(spec, facts).releases}
        assert set(releases) == set(expected), f"{stack}: releases differ"
        for name, rel in expected.items():
            assert releases[name]["values"] == rel.values

    # wait until every release and object group is registered, then check
    children = [r.urn for addon in platform.addons.values()
                for r in [*addon.releases, *([addon.config_group] if addon.config_group else [])]]
    return pulumi.Output.all(platform.cluster_name, platform.storage_uri, platform.queue_names,
                             pulumi.Output.from_input(platform.kubeconfig.is_secret()), *children
                             ).apply(lambda v: check(v[:4]))


def test_invalid_config_stops_the_program_with_every_problem():
    config = stack_config(project_root() / "stacks" / "Pulumi.kind.yaml")
    config["park:nodePools"] = json.dumps([{"name": "cpu", "maxNodes": 2}])
    config["park:teams"] = json.dumps([{"name": "research", "quotas": [{"pool": "gpu"}]}])
    with pytest.raises(pulumi.RunError) as failure:
        run_program("kind", config)
    message = str(failure.value)
    assert "nodePools: needs a pool with role 'system'" in message
    assert "teams[0].quotas[0].pool (team research): unknown pool 'gpu'" in message


@pytest.mark.parametrize(("stack", "source_key"), [("aws", "csi"), ("gcp", "nfs")])
@pulumi.runtime.test
def test_shared_filesystem_address_flows_from_the_adapter_into_the_volumes(stack, source_key):
    config = stack_config(project_root() / "stacks" / f"Pulumi.{stack}.yaml")
    shared = {"capacityGib": 2400 if stack == "aws" else 2560, "mountPath": "/mnt/shared"}
    config["park:storage"] = json.dumps({**json.loads(config["park:storage"]), "sharedFilesystem": shared})
    mocks, program = run_program(stack, config)
    storage = program["platform"].addons["storage"]

    def check(_: Any) -> None:
        objects = registered(mocks, CONFIG_GROUP)[f"{SPECS[stack].cluster_name}-storage-objects"]["objs"]
        volumes = [o for o in objects if o["kind"] == "PersistentVolume"]
        assert len(volumes) == len(SPECS[stack].teams), "one volume per team namespace"
        source = volumes[0]["spec"][source_key]
        text = json.dumps(source)
        assert "<" not in text, f"placeholder left in {source}: the adapter's address did not arrive"
        claims = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
        assert {c["metadata"]["namespace"] for c in claims} == {t.namespace_name for t in SPECS[stack].teams}

    assert storage.config_group is not None
    return storage.config_group.urn.apply(check)
