"""benchmarks/device_rehearsal.py: each GPU check's command in its CPU form, the tree a device
call brings (no git checkout, the carried wheels), and bad arguments in one line."""

from __future__ import annotations

import pytest

from benchmarks import device_rehearsal
from benchmarks.device_carry import CHECKS
from benchmarks.device_rehearsal import copy_tree, rehearsal_command
from test_device_carry import fake_repo


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_every_check_is_rehearsed_on_the_cpu_at_its_quick_size(check):
    command = rehearsal_command(check)
    assert "--device cuda" not in command and command.count("--device cpu") == 1 and command.endswith(" --quick")
    assert "--records" not in command  # the GPU's records are not of the quick size: the plan would refuse them
    assert command.startswith("bash ") and "--out $OUT" in command and "/tmp/" not in command


def test_the_copied_tree_is_what_a_device_call_brings(tmp_path):
    repo, _ = fake_repo(tmp_path)
    (repo / "untracked.txt").write_text("x")
    (repo / ".whl" / "medmnist").mkdir()
    (repo / ".whl" / "medmnist" / "retinamnist.npz").write_bytes(b"d")
    (repo / "ignored.log").write_text("x")
    (repo / ".gitignore").write_text("/.whl/\n/.whl-all/\n*.log\n")
    dest = tmp_path / "copy"
    copy_tree(repo, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == sorted(
        [".gitignore", "records.jsonl", "untracked.txt", ".whl/medmnist/retinamnist.npz",
         *(f".whl/{p.name}" for p in (repo / ".whl").glob("*.whl"))])


def test_a_missing_python_is_one_line_with_exit_2(capsys):
    assert device_rehearsal.main(["protocol", "--python", "no-such-python3.12", "--torch", "2.11.0"]) == 2
    err = capsys.readouterr().err
    assert err == "device_rehearsal: --python: no-such-python3.12 not found\n"


def test_a_venv_built_for_another_torch_is_refused(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".medsweep-ready").write_text("torch==2.11.0\n")
    with pytest.raises(device_rehearsal.CarryError, match=r"^--venv: .* holds torch==2.11.0, not torch==2.12.0; give another --venv$"):
        device_rehearsal.environment(venv, "python3", "2.12.0")
    assert device_rehearsal.environment(venv, "python3", "2.11.0") == venv / "bin" / "python"
