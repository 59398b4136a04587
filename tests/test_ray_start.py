"""Ray started by `medsweep sweep` on a machine whose temporary folder has a long path (HPC
schedulers give each job one): Ray's sockets live under it, and Linux allows a socket path 107
bytes. Ray's own error is a traceback from deep in its node start-up."""

import os
import subprocess
import sys

from sweep_helpers import retina_spec


def test_a_temporary_folder_too_long_for_ray_sockets_is_one_error_line_naming_ray_tmpdir(real_root, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(retina_spec(tmp_path / "storage", "long", num_samples=1, train={"epochs": 1}).to_yaml())
    long_tmp = tmp_path / ("a-temporary-folder-as-a-job-scheduler-names-it-" + "x" * 40)
    long_tmp.mkdir()
    env = {**os.environ, "MEDMNIST_ROOT": str(real_root), "TMPDIR": str(long_tmp)}
    env.pop("RAY_TMPDIR", None)
    ran = subprocess.run([sys.executable, "-m", "medsweep", "sweep", str(spec_file)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert ran.returncode == 2, ran.stderr[-3000:]
    assert "Traceback" not in ran.stderr
    error = ran.stderr.strip().splitlines()[-1]
    assert error.startswith(f"medsweep: error: RAY_TMPDIR: Ray cannot start here: its socket path {long_tmp}/ray/")
    assert error.endswith("more than the 107 Linux allows; allowed: a short RAY_TMPDIR (or TMPDIR), e.g. RAY_TMPDIR=/tmp")
    assert not (tmp_path / "storage").exists()  # the sweep folder its lock made is taken back
