"""`ray up cluster-local.yaml` for real: the launcher SSHes to an sshd on 127.0.0.1, runs the
setup and start commands that cluster.yaml runs on AWS, a smoke sweep goes through
`--address auto`, and `ray down` tears it down.

Ray's start commands and `ray down` run `ray stop`, which stops every Ray process it can see,
so everything runs in namespaces of its own (`unshare`, as root): a PID namespace (`ray stop`
sees only this test's processes, and they all die with it), a network namespace (sshd on
127.0.0.1:22 and Ray's ports collide with nothing), and a mount namespace with a private /tmp
(Ray's session files) and a private home for root (the SSH key, the token, ~/.bashrc,
~/medsweep). The home starts from /etc/skel, as a new user's does, and sees the machine's
Python toolchain and pip configuration.

The cluster venv ~/medsweep/venv is seeded before the network goes away: a venv whose
packages come from the environment the tests run in (a .pth line; pip counts them as
installed; the launcher's `ray` is that environment's too), plus what
the `cluster` extra adds. Setup then finds every dependency present, as it does in the
Dockerfile's image, and only installs the project copied in by the file mounts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyproject_data import pyproject

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("unshare", "ip", "ssh", "ssh-keygen", "rsync")
SSHD = "/usr/sbin/sshd"
# Under root's real home, needed inside the private one: the Python the venvs link to, pip's
# cache and configuration (index mirrors).
TOOLCHAIN = (".pyenv", ".cache/pip", ".config/pip")

# In a mount namespace: private home and /tmp, the seeded cluster venv (network still on),
# then the rest in new PID and network namespaces.
PREPARE = r"""
set -euo pipefail
T=$1 REPO=$2 DATA=$3 VENV=$4
shift 4
EXTRA=("$@")  # the cluster extra of pyproject.toml
mkdir -p "$T/home" "$T/tmp"
cp -a /etc/skel/. "$T/home/"
for sub in TOOLCHAIN; do
  if [ -d "/root/$sub" ]; then mkdir -p "$T/home/$sub"; mount --bind "/root/$sub" "$T/home/$sub"; fi
done
# A checkout, data folder or environment under /tmp would vanish under the private /tmp: hold
# each one in the private home first, then bind it back at the same path.
REPO=$(realpath "$REPO") DATA=$(realpath "$DATA") VENV=$(realpath "$VENV")
held=()
for p in "$REPO" "$DATA" "$VENV"; do
  case "$p/" in /tmp/*)
    mkdir -p "$T/home/.held${#held[@]}"; mount --bind "$p" "$T/home/.held${#held[@]}"; held+=("$p");;
  esac
done
cp "$T/up.sh" "$T/home/up.sh"
mount --rbind "$T/home" /root
mount --bind "$T/tmp" /tmp
for i in "${!held[@]}"; do mkdir -p "${held[$i]}"; mount --bind "/root/.held$i" "${held[$i]}"; done
python=$("$VENV/bin/python" -c 'import os, sys; print(os.path.realpath(sys.executable))')
"$python" -m venv /root/medsweep/venv
"$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
  > "$(/root/medsweep/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/project-venv.pth"
/root/medsweep/venv/bin/pip install -q 'setuptools>=68' "${EXTRA[@]}"
# ray itself is counted as installed, so pip writes no `ray` command: the same two lines pip would.
printf '#!/root/medsweep/venv/bin/python\nimport sys\nfrom ray.scripts.scripts import main\nsys.exit(main())\n' \
  > /root/medsweep/venv/bin/ray
chmod +x /root/medsweep/venv/bin/ray
exec unshare --pid --fork --mount-proc --net bash /root/up.sh "$REPO" "$DATA" "$VENV"
"""

UP = r"""
set -euo pipefail
REPO=$1 DATA=$2 VENV=$3
stamp() { echo "STAMP $1 $(date +%s.%N)"; }
ip link set lo up
mount -t tmpfs tmpfs /run && mkdir -p /run/sshd
mkdir -p -m 700 /root/.ssh
ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/medsweep_local
cat /root/.ssh/medsweep_local.pub >> /root/.ssh/authorized_keys
ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/host_key
/usr/sbin/sshd -h /root/.ssh/host_key -o ListenAddress=127.0.0.1 -o PidFile=/run/sshd.pid
cd "$REPO"
ray=$VENV/bin/ray
$ray get-auth-token --generate > /dev/null
# The one edit a user with the files already on disk makes: MEDMNIST_ROOT (nothing is downloaded).
sed "s#MEDMNIST_ROOT=\$HOME/medsweep/medmnist#MEDMNIST_ROOT=$DATA#" cluster-local.yaml > /root/cluster-local.yaml
grep -q "MEDMNIST_ROOT=$DATA" /root/cluster-local.yaml
stamp up
$ray up /root/cluster-local.yaml -y --no-config-cache
stamp head-ready
$ray exec /root/cluster-local.yaml "ray status"
$ray exec /root/cluster-local.yaml "ray list nodes --format json > ~/nodes.json"
$ray exec /root/cluster-local.yaml "medsweep sweep retinamnist --smoke --address auto --storage ~/results --name smoke"
stamp sweep-done
$ray down /root/cluster-local.yaml -y
sleep 2
# Zombies (state Z) are dead children nobody reaped yet, not survivors.
if ps -eo stat=,comm= | awk '$1 !~ /^Z/ {print $2}' | grep -E '^(raylet|gcs_server)$'; then echo RAY-LEFT; else echo RAY-GONE; fi
"""


def why_not_possible() -> str | None:
    if os.geteuid() != 0:
        return "needs root for unshare's PID, network and mount namespaces"
    missing = [tool for tool in TOOLS if not shutil.which(tool)] + ([SSHD] if not Path(SSHD).exists() else [])
    if missing:
        return f"missing {', '.join(missing)} (apt-get install openssh-server rsync iproute2)"
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare --pid --fork --mount-proc --net fails here: {probe.stderr.strip()}"
    return None


def cluster_extra() -> list[str]:
    return pyproject()["project"]["optional-dependencies"]["cluster"]


def real_data_root() -> Path:
    env = os.environ.get("MEDMNIST_ROOT")
    return Path(env) if env else (REPO.parent / "shared" / "medmnist").resolve()


def test_ray_up_local_runs_a_smoke_sweep_and_tears_down(tmp_path):
    reason = why_not_possible()
    if reason:
        pytest.skip(reason)
    data = real_data_root()
    if not (data / "retinamnist.npz").is_file():
        pytest.skip(f"no retinamnist.npz in {data} (set MEDMNIST_ROOT)")
    (tmp_path / "up.sh").write_text(UP)
    prepare = PREPARE.replace("TOOLCHAIN", " ".join(TOOLCHAIN))
    run = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", prepare, "prepare",
         str(tmp_path), str(REPO), str(data), sys.prefix, *cluster_extra()],
        capture_output=True, text=True, timeout=1500, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    log = run.stdout + run.stderr
    (tmp_path / "log.txt").write_text(log)
    assert run.returncode == 0, log[-6000:]

    home = tmp_path / "home"
    # Token auth reached the login shell of `ray exec`, and the dashboard's HTTP server runs.
    assert "Active:" in log and "InvalidAuthToken" not in log
    nodes = json.loads((home / "nodes.json").read_text())
    assert [n["state"] for n in nodes] == ["ALIVE"]
    # The project ran from the copy in ~/medsweep/src, in the cluster's own venv.
    assert (home / "medsweep" / "src" / "sweeps" / "storage.py").is_file()
    assert re.search(r"^\. ~/medsweep/env.sh$", (home / ".bashrc").read_text(), re.M)
    sweep = home / "results" / "smoke"
    trials = sorted(p for p in sweep.iterdir() if (p / "params.json").exists())
    assert len(trials) == 2 and all((t / "result.json").read_text().strip() for t in trials)
    assert (sweep / "best_config.yaml").is_file()
    assert "RAY-GONE" in log

    stamps = {k: float(v) for k, v in re.findall(r"^STAMP (\S+) (\S+)$", log, re.M)}
    first_trial = min((t / "params.json").stat().st_mtime for t in trials)
    print(f"\nray up -> head ready {stamps['head-ready'] - stamps['up']:.0f} s; "
          f"ray up -> first trial running {first_trial - stamps['up']:.0f} s; "
          f"ray up -> sweep done {stamps['sweep-done'] - stamps['up']:.0f} s", file=sys.stderr)
