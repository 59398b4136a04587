"""cluster.yaml (AWS) and cluster-local.yaml (Ray's local provider) are valid cluster
configs for Ray 2.60's launcher, share their setup and start commands, and keep the
dashboard and the head safe."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLOUD = REPO / "cluster.yaml"
LOCAL = REPO / "cluster-local.yaml"
SHARED_KEYS = (
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
    "initialization_commands",
    "file_mounts",
    "rsync_exclude",
    "rsync_filter",
)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(params=[CLOUD, LOCAL], ids=["cluster.yaml", "cluster-local.yaml"])
def config_path(request) -> Path:
    return request.param


def test_validates_against_rays_schema(config_path):
    # What `ray up` does before it talks to any provider: fill defaults (and, for the local
    # provider, the single local node type), then check ray-schema.json and the node types.
    prepared = prepare_config(copy.deepcopy(_load(config_path)))
    validate_config(prepared)


def test_raw_file_already_satisfies_the_json_schema(config_path):
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(_load(config_path), schema)


def test_schema_check_is_not_vacuous():
    broken = _load(CLOUD)
    broken["head_start_ray_commands"] = "ray start --head"  # must be a list
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))
    unknown = _load(CLOUD)
    unknown["gpu_workers"] = 8  # not a cluster-config key
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(unknown))


@pytest.mark.parametrize("key", SHARED_KEYS)
def test_shared_parts_are_identical(key):
    assert _load(CLOUD).get(key) == _load(LOCAL).get(key)


def test_setup_installs_project_and_data():
    setup = "\n".join(_load(CLOUD)["setup_commands"])
    assert "pip install" in setup and "/home/ray/medsweep" in setup
    assert "medsweep data download --dataset all --root /home/ray/medmnist" in setup
    assert "MEDMNIST_ROOT=/home/ray/medmnist" in setup



def test_file_mounts_carry_the_installable_project():
    import tomllib

    mounts = _load(CLOUD)["file_mounts"]
    project = {remote.removeprefix("/home/ray/medsweep/"): local for remote, local in mounts.items() if remote.startswith("/home/ray/medsweep/")}
    for name, local in project.items():
        assert (REPO / local).exists(), local
        assert Path(local).name == name
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert set(packages) <= set(project), "every package pip installs is mounted"
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= set(project)
    assert mounts["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_start_commands():
    cfg = _load(CLOUD)
    head = "\n".join(cfg["head_start_ray_commands"])
    worker = "\n".join(cfg["worker_start_ray_commands"])
    assert cfg["head_start_ray_commands"][0] == "ray stop"
    assert cfg["worker_start_ray_commands"][0] == "ray stop"
    assert "ray start --head --port=6379" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker
    for text in (head, worker):
        assert "MEDMNIST_ROOT=/home/ray/medmnist" in text
        assert "RAY_AUTH_MODE=token" in text


def test_dashboard_bound_to_localhost(config_path):
    text = config_path.read_text()
    head = "\n".join(_load(config_path)["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in text
    assert not re.search(r"--dashboard-host[= ](?!127\.0\.0\.1|localhost)", text)


def test_cloud_head_has_no_gpu_and_workers_autoscale_from_zero():
    cfg = _load(CLOUD)
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}
    assert workers
    for worker in workers.values():
        assert worker["resources"]["GPU"] >= 1
        assert worker["min_workers"] == 0
        assert worker["max_workers"] >= 1
    assert cfg["docker"]["image"] == "rayproject/ray:2.60.0-py311-gpu"


def test_local_provider_runs_on_this_machine():
    cfg = _load(LOCAL)
    assert cfg["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    assert cfg["auth"] == {"ssh_user": "root", "ssh_private_key": "~/.ssh/medsweep_local"}
    assert "docker" not in cfg and "available_node_types" not in cfg
