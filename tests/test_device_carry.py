"""benchmarks/device_carry.py: each GPU check carries the wheels and data it needs, and what
travels stays under the 64 MiB a device call may take (a call over it is refused before it runs)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks import device_carry
from benchmarks.device_carry import CHECKS, LIMIT_BYTES, NEVER, RAY_FREE, CarryError, mend_record, prepare, size, tree_files

FULL_SET = [f"{name}-1.0-py3-none-any.whl" for name in
            (*RAY_FREE, *NEVER, "ray", "optuna", "colorlog", "tensorboardx", "grad_cam", "ttach")]


def write_wheel(path: Path, record_tail: bytes = b"", vendored_record: bytes = b"") -> None:
    """A pure-Python wheel pip installs: METADATA, WHEEL, RECORD (plus ``record_tail``) and a
    module; with ``vendored_record``, also a package vendored inside it with a RECORD of its own."""
    name, version = path.name.split("-")[:2]
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": b"",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    if vendored_record:
        files[f"{name}/vendor/dep-1.0.dist-info/RECORD"] = vendored_record
    record = "".join(f"{file},,\n" for file in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as wheel:
        for file, data in files.items():
            wheel.writestr(file, data)
        wheel.writestr(f"{info}/RECORD", record.encode() + record_tail)


def fake_repo(tmp_path: Path, wheels=FULL_SET, big_file_bytes: int = 0) -> tuple[Path, Path]:
    """A git checkout with a tracked file (of big_file_bytes, sparse), .whl/ as device-wheels.sh
    leaves it, and a data folder with both MedMNIST files."""
    repo, data = tmp_path / "repo", tmp_path / "data"
    (repo / ".whl").mkdir(parents=True)
    data.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".gitignore").write_text("/.whl/\n/.whl-all/\n")
    with open(repo / "records.jsonl", "wb") as f:
        f.truncate(big_file_bytes or 1000)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    for name in wheels:
        write_wheel(repo / ".whl" / name)
    for name in (device_carry.RETINA, device_carry.PNEUMONIA):
        (data / name).write_bytes(b"d" * 10)
    return repo, data


def carried(repo: Path) -> set[str]:
    return {p.name for p in (repo / ".whl").glob("*.whl")}


def test_ray_free_checks_carry_pydantic_and_medmnist_only(tmp_path):
    repo, data = fake_repo(tmp_path)
    lines = prepare("protocol", repo, data)
    assert {name.split("-")[0] for name in carried(repo)} == set(RAY_FREE)
    assert sorted(p.name for p in (repo / ".whl" / "medmnist").iterdir()) == ["pneumoniamnist.npz", "retinamnist.npz"]
    assert len(list((repo / ".whl-all").glob("*.whl"))) == len(FULL_SET)  # the full set kept aside
    assert "fits" in lines[-1] and lines[0] == f"protocol: {CHECKS['protocol'].command}"


def test_ray_checks_carry_everything_but_the_database_storage(tmp_path):
    repo, data = fake_repo(tmp_path)
    prepare("protocol", repo, data)
    prepare("sweep", repo, data)  # from the stash, after another check emptied .whl
    names = {name.split("-")[0] for name in carried(repo)}
    assert "ray" in names and "optuna" in names and not names & set(NEVER)
    assert [p.name for p in (repo / ".whl" / "medmnist").iterdir()] == ["retinamnist.npz"]


def test_the_working_tree_counts_tracked_and_untracked_files_but_not_ignored_ones(tmp_path):
    repo, _ = fake_repo(tmp_path)
    (repo / "new.txt").write_text("x" * 50)
    assert {p.name for p in tree_files(repo)} == {".gitignore", "records.jsonl", "new.txt"}


def test_over_the_limit_is_one_line_naming_the_largest_file(tmp_path):
    repo, data = fake_repo(tmp_path, big_file_bytes=LIMIT_BYTES)
    with pytest.raises(CarryError, match=r"over the 67.11 MB a device call may carry; largest files of the tree: records.jsonl"):
        prepare("sweep", repo, data)


@pytest.mark.parametrize(("wheels", "data_files", "match"), [
    ([], ("retinamnist.npz", "pneumoniamnist.npz"), "no wheels in .whl/ or .whl-all/"),
    ([w for w in FULL_SET if not w.startswith("medmnist")], ("retinamnist.npz", "pneumoniamnist.npz"), "no wheel of medmnist"),
    (FULL_SET, ("retinamnist.npz",), "--data-root: no pneumoniamnist.npz"),
])
def test_what_is_missing_is_named(tmp_path, wheels, data_files, match):
    repo, data = fake_repo(tmp_path, wheels=wheels)
    for file in data.iterdir():
        if file.name not in data_files:
            file.unlink()
    with pytest.raises(CarryError, match=match):
        prepare("protocol", repo, data)


def test_typing_extensions_is_fetched_once_when_device_wheels_left_it_out(tmp_path, monkeypatch):
    fetched = []

    def fake_fetch(requirement, folder):
        fetched.append(requirement)
        write_wheel(folder / "typing_extensions-4.16.0-py3-none-any.whl")

    monkeypatch.setattr(device_carry, "fetch", fake_fetch)
    repo, data = fake_repo(tmp_path, wheels=[w for w in FULL_SET if not w.startswith("typing_extensions")])
    prepare("protocol", repo, data)
    prepare("protocol", repo, data)
    assert fetched == ["typing-extensions>=4.16.0"]
    assert "typing_extensions-4.16.0-py3-none-any.whl" in carried(repo)


def pip_install(wheel: Path, target: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--target", str(target), str(wheel)], capture_output=True, text=True)


def test_a_blank_line_in_a_wheels_record_is_mended_so_that_pip_installs_it(tmp_path):
    # device-wheels.sh's Ray wheel ends its RECORDs with a blank line, on which pip 23.2-26.3
    # stops the install with an IndexError and importlib.metadata raises a TypeError (found
    # rehearsing gpu_sweep.sh with the device's Python and torch); whether this pip or Python
    # still does is not the test's business. Each RECORD lists only files the wheel installs:
    # from Python 3.12 on, importlib.metadata's `files` leaves out those that do not exist.
    wheel = tmp_path / "ray-2.60.0-py3-none-any.whl"
    vendored_record = b"dep-1.0.dist-info/RECORD,,\n"
    write_wheel(wheel, record_tail=b"\n", vendored_record=vendored_record + b"\n")
    assert mend_record(wheel) is True
    assert pip_install(wheel, tmp_path / "after").returncode == 0
    assert (tmp_path / "after" / "ray" / "__init__.py").is_file()
    for info in ("ray-2.60.0.dist-info", "ray/vendor/dep-1.0.dist-info"):  # what `import ray` puts on sys.path
        assert importlib.metadata.Distribution.at(tmp_path / "after" / info).files
    with zipfile.ZipFile(wheel) as mended:
        assert b"\n\n" not in mended.read("ray-2.60.0.dist-info/RECORD")
        assert mended.read("ray/vendor/dep-1.0.dist-info/RECORD") == vendored_record  # a vendored package's too
    assert mend_record(wheel) is False


def test_prepare_mends_a_carried_wheel_once_and_says_so(tmp_path):
    repo, data = fake_repo(tmp_path)
    write_wheel(repo / ".whl" / "ray-1.0-py3-none-any.whl", record_tail=b"\n")
    lines = prepare("sweep", repo, data)
    assert lines[0] == "mended ray-1.0-py3-none-any.whl: blank lines in its RECORD files, on which pip and importlib.metadata fail"
    assert not any(line.startswith("mended") for line in prepare("sweep", repo, data))  # the stash keeps the mended one
    with zipfile.ZipFile(repo / ".whl" / "ray-1.0-py3-none-any.whl") as wheel:
        assert not wheel.read("ray-1.0.dist-info/RECORD").endswith(b"\n\n")


def test_a_failed_download_is_one_line(tmp_path):
    # pip refuses a malformed requirement before it reaches the network (pip 23.2 took ">=>4")
    with pytest.raises(CarryError, match=r"^pip could not download typing-extensions>=4;;: \S") as error:
        device_carry.fetch("typing-extensions>=4;;", tmp_path)
    assert "\n" not in str(error.value) and not list(tmp_path.iterdir())


def test_two_versions_of_a_wheel_are_refused(tmp_path):
    # what device-wheels.sh leaves after a version bump: it adds to .whl/ and removes nothing
    repo, data = fake_repo(tmp_path, wheels=[*FULL_SET, "ray-2.0-py3-none-any.whl"])
    with pytest.raises(CarryError, match="two versions of ray: remove the older wheel"):
        prepare("sweep", repo, data)
    prepare("protocol", repo, data)  # the Ray-free wheels are single: that check goes on


def test_cli_prints_the_sizes_or_refuses_in_one_line_with_exit_2(tmp_path, monkeypatch, capsys):
    repo, data = fake_repo(tmp_path)
    monkeypatch.setattr(device_carry, "REPO", repo)
    assert device_carry.main(["check", "--data-root", str(data)]) == 0
    assert "total (limit 64 MiB = 67.11 MB)" in capsys.readouterr().out
    assert device_carry.main(["protocol", "--data-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("device_carry: --data-root: no retinamnist.npz")


def test_the_projects_tree_leaves_room_for_the_largest_carry(real_root):
    # gpu_sweep's step (a): the Ray wheels and both MedMNIST files beside the working tree. The
    # shipped records are gzipped for this; an example report or a record file that pushes the
    # tree over fails here, not on the GPU machine's first call.
    data = size([real_root / f for f in CHECKS["sweep-tests"].data])
    tree = size(tree_files(device_carry.REPO))
    assert tree + device_carry.RAY_WHEELS_BYTES + data <= LIMIT_BYTES, f"working tree {tree / 1e6:.2f} MB"
