"""cluster.yaml (AWS) and cluster-local.yaml (Ray's local provider) are valid cluster
configs for Ray 2.60's launcher, share their setup and start commands, and keep the
dashboard and the head safe."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from pyproject_data import pyproject

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


def _commands(cfg: dict, *keys: str) -> list[str]:
    return [c for key in keys for c in cfg.get(key) or []]


def test_setup_installs_into_its_own_venv():
    cfg = _load(CLOUD)
    pips = [c for c in _commands(cfg, "setup_commands", "head_setup_commands", "worker_setup_commands")
            if "pip" in c]
    assert pips
    # Every pip is the venv's own: never whatever Python the login shell finds first.
    for command in pips:
        assert re.findall(r"\S*pip\b", command) == ["~/medsweep/venv/bin/pip"] * command.count("pip ")
    assert any('-e "$HOME/medsweep/src[cluster]"' in c for c in pips)
    assert any(c.startswith("test -x ~/medsweep/venv/bin/python || ") and "-m venv ~/medsweep/venv" in c
               for c in cfg["setup_commands"])


def venv_command() -> str:
    return next(c for c in _load(CLOUD)["setup_commands"] if "-m venv ~/medsweep/venv" in c)


@pytest.mark.parametrize("installed, chosen", [(("3.11", "3.12"), "3.12"), (("3.10",), "3.10"),
                                               (("3.9", "3.15"), None), ((), None)])
def test_the_venv_takes_the_newest_python_the_project_installs_on(tmp_path, installed, chosen):
    """The setup line run for real in a scratch home, beside fake interpreters that note being
    asked for a venv: the newest of 3.10-3.14 (pyproject.toml's range), else one line."""
    from test_makefile import supported_pythons

    assert re.search(r"for v in ([\d. ]+); do", venv_command()).group(1).split() == supported_pythons()
    bin_dir = tmp_path / "bin"  # the node's commands: the fakes, and the few tools the line calls
    bin_dir.mkdir()
    for tool in ("hostname", "mkdir", "touch", "chmod"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for version in installed:
        fake = bin_dir / f"python{version}"
        fake.write_text(f'#!/bin/sh\necho {version} > "$HOME/chosen"\n'
                        'mkdir -p "$3/bin" && touch "$3/bin/python" && chmod +x "$3/bin/python"\n')
        fake.chmod(0o755)
    env = {"HOME": str(tmp_path), "PATH": str(bin_dir)}
    run = subprocess.run([shutil.which("bash"), "-c", venv_command()], env=env, capture_output=True, text=True)
    if chosen is None:
        assert run.returncode == 1 and run.stderr.count("\n") == 1
        assert "medsweep setup found no python3.10 to python3.14 on " in run.stderr
        assert not (tmp_path / "medsweep").exists()
    else:
        assert run.returncode == 0, run.stderr
        assert (tmp_path / "chosen").read_text().strip() == chosen
        assert (tmp_path / "medsweep" / "venv" / "bin" / "python").exists()
        # a second `ray up` finds the venv and asks no Python again
        (tmp_path / "chosen").unlink()
        assert subprocess.run([shutil.which("bash"), "-c", venv_command()], env=env).returncode == 0
        assert not (tmp_path / "chosen").exists()


def pinned_ray() -> str:
    """The Ray version pyproject.toml pins (ray[tune]==X)."""
    return next(d for d in pyproject()["project"]["dependencies"] if d.startswith("ray[")).split("==")[1]


def test_cluster_extra_brings_the_dashboard():
    assert f"ray[default]=={pinned_ray()}" in pyproject()["project"]["optional-dependencies"]["cluster"]


def test_data_is_fetched_on_the_head_only_and_only_what_is_named():
    cfg = _load(CLOUD)
    assert not any("data download" in c for c in _commands(cfg, "setup_commands", "worker_setup_commands"))
    head = "\n".join(cfg["head_setup_commands"])
    assert "medsweep data download --dataset $dataset --data-root \"$MEDMNIST_ROOT\"" in head
    assert "--dataset all" not in head and "for dataset in retinamnist;" in head


def test_no_path_assumes_a_user_called_ray(config_path):
    # The Dockerfile may: inside the image the user is ray. The YAMLs must work for any user.
    assert "/home/ray" not in config_path.read_text()


def test_env_file_turns_on_token_auth_and_the_venv(tmp_path):
    # Run the two environment lines of setup for real, in a scratch home.
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for command in _load(CLOUD)["setup_commands"][:2]:
        subprocess.run(["bash", "-c", command], env=env, check=True)
    out = subprocess.run(["bash", "-c", "bash -i -c 'echo $RAY_AUTH_MODE $MEDMNIST_ROOT $PATH' 2>/dev/null"],
                         env=env, check=True, capture_output=True, text=True).stdout.split()
    assert out == ["token", f"{tmp_path}/medsweep/medmnist", f"{tmp_path}/medsweep/venv/bin:/usr/bin:/bin"]
    # Setup runs on every `ray up`: the ~/.bashrc line is added once.
    subprocess.run(["bash", "-c", _load(CLOUD)["setup_commands"][1]], env=env, check=True)
    assert (tmp_path / ".bashrc").read_text().count("medsweep/env.sh") == 1


def test_file_mounts_carry_the_installable_project():
    mounts = _load(CLOUD)["file_mounts"]
    src = "~/medsweep/src/"
    project = {remote.removeprefix(src): local for remote, local in mounts.items() if remote.startswith(src)}
    for name, local in project.items():
        assert (REPO / local).exists(), local
        assert Path(local).name == name
    declared = pyproject()
    packages = [p.rstrip("*") for p in declared["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert set(packages) <= set(project), "every package pip installs is mounted"
    assert {"pyproject.toml", declared["project"]["readme"]} <= set(project)
    assert mounts["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_start_commands():
    cfg = _load(CLOUD)
    head, worker = cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]
    assert head[0] == worker[0] == ". ~/medsweep/env.sh && ray stop"
    assert head[1].startswith(". ~/medsweep/env.sh && ray start --head --port=6379 ")
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head[1]
    assert worker[1].startswith(". ~/medsweep/env.sh && ray start --address=$RAY_HEAD_IP:6379 ")
    # Every Ray command runs with env.sh: token auth on, the venv's ray.
    for command in head + worker + cfg["head_setup_commands"]:
        assert command.startswith(". ~/medsweep/env.sh && ")


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


def test_cloud_nodes_are_reachable_only_as_documented():
    cfg = _load(CLOUD)
    types = cfg["available_node_types"]
    groups = {str(t["node_config"].get("SecurityGroupIds")) for t in types.values()}
    # One user-made group on every node: Ray's own would open SSH to the world.
    assert len(groups) == 1 and "None" not in groups
    for name, node_type in types.items():
        if name != cfg["head_node_type"]:
            # Ray's default instance profile goes to the head only; s3:// storage needs this.
            assert node_type["node_config"]["IamInstanceProfile"]["Arn"].endswith("instance-profile/medsweep-worker")


def test_image_is_the_dockerfile_with_the_venv_setup_expects():
    dockerfile = (REPO / "Dockerfile").read_text()
    version = pinned_ray()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(version)}-py311-gpu$", dockerfile, re.M)
    # The image's user is ray: its ~/medsweep/venv is where setup looks.
    assert "python3.11 -m venv /home/ray/medsweep/venv" in dockerfile
    assert "-e '/home/ray/medsweep/src[cluster]'" in dockerfile
    assert _load(CLOUD)["docker"]["image"].endswith(f":ray{version}-py311-gpu")


def test_local_provider_runs_on_this_machine():
    cfg = _load(LOCAL)
    assert cfg["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    assert cfg["auth"] == {"ssh_user": "root", "ssh_private_key": "~/.ssh/medsweep_local"}
    assert "docker" not in cfg and "available_node_types" not in cfg
