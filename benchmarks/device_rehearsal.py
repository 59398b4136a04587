"""Rehearse a GPU check on this CPU in the lent GPU machine's environment, before a call spends its minutes.

A device call runs a copy of the working tree (no git checkout) on the machine's own Python
3.12 and torch 2.11.0+cu130, with the packages of its image (the device tool's KINDS.md lists
them) and the wheels ``.whl/`` carries. Our own environment (Python 3.11, torch 2.14.1, Ray
from PyPI) hides what differs there. This builds that environment here once, a virtual
environment with the given Python and torch from PyPI (some 5 GB: torch's CUDA libraries come
along, and torch runs on the CPU without a GPU), then does what the device call would: fills
``.whl/`` with ``benchmarks.device_carry``, copies the working tree and ``.whl/`` to a fresh
folder, and runs the check's command there with ``--device cpu --quick``:

    python -m benchmarks.device_rehearsal sweep --python python3.12 --torch 2.11.0

``--torch`` has no default: the device's version is read off the machine (``status``, or the
last GPU run's figures in RESULTS.md), and this project pins no torch but its own. What its
first run found: benchmarks/README.md, "Rehearse a call on this CPU first".
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.device_carry import CHECKS, REPO, CarryError, prepare, tree_files

# What the device image holds that the checks, the suite and their imports need (KINDS.md,
# "Python packages already there"), at PyPI's newest versions for the chosen torch.
IMAGE_PACKAGES = ("torchvision", "numpy", "pandas", "pyarrow", "scikit-learn", "scikit-image", "scipy", "pillow",
                  "matplotlib", "opencv-python-headless", "pyyaml", "tensorboard", "requests", "grpcio", "click",
                  "msgpack", "protobuf", "attrs", "tqdm", "jinja2", "psutil", "packaging", "filelock",
                  "pytest", "pytest-timeout", "pytest-xdist")


def rehearsal_command(check: str) -> str:
    """The check's device command in its CPU form: ``--device cpu --quick``, the output in $OUT
    (a working folder under /tmp there is a fresh machine's; here a rehearsal before would be
    resumed), without ``--records`` (the GPU runs' records are not of the quick size)."""
    command = re.sub(r" --records \S+", "", CHECKS[check].command)
    command = re.sub(r" --out /tmp/\S+", " --out $OUT/work", command)
    command = command.replace("--device cuda", "--device cpu") if "--device cuda" in command else command + " --device cpu"
    return command + " --quick"


def environment(venv: Path, python: str, torch: str) -> Path:
    """The rehearsal's Python: ``venv`` built once with ``python``, torch ``torch`` and the image's packages."""
    ready = venv / ".medsweep-ready"
    if not ready.is_file():
        subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
        print(f"device_rehearsal: installing torch {torch} and the image's packages into {venv} (once)", flush=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"torch=={torch}", *IMAGE_PACKAGES],
                       check=True)
        ready.write_text(f"torch=={torch}\n")
    elif ready.read_text().strip() != f"torch=={torch}":
        raise CarryError(f"--venv: {venv} holds {ready.read_text().strip()}, not torch=={torch}; give another --venv")
    return venv / "bin" / "python"


def copy_tree(repo: Path, dest: Path) -> None:
    """What a device call brings: the working tree's files, without .git, and the carried .whl/."""
    for file in tree_files(repo):
        target = dest / file.relative_to(repo)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    shutil.copytree(repo / ".whl", dest / ".whl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("check", choices=sorted(CHECKS), help="which GPU check to rehearse")
    parser.add_argument("--python", required=True, help="the device's Python version here, e.g. python3.12")
    parser.add_argument("--torch", required=True, help="the device's torch version, e.g. 2.11.0")
    parser.add_argument("--venv", type=Path, default=None,
                        help="the environment's folder (default ~/.cache/medsweep/device-torch-VERSION)")
    parser.add_argument("--out", type=Path, default=None, help="the check's output folder (default: a new temporary one)")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MEDMNIST_ROOT", "~/.medmnist")),
                        help="folder of the MedMNIST .npz files to carry (default $MEDMNIST_ROOT, else ~/.medmnist)")
    args = parser.parse_args(argv)
    if shutil.which(args.python) is None:
        print(f"device_rehearsal: --python: {args.python} not found", file=sys.stderr)
        return 2
    venv = args.venv or Path.home() / ".cache" / "medsweep" / f"device-torch-{args.torch}"
    try:
        print("\n".join(prepare(args.check, REPO, args.data_root.expanduser())), flush=True)
        python = environment(venv, args.python, args.torch)
    except (CarryError, subprocess.CalledProcessError) as error:
        print(f"device_rehearsal: {error}", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="medsweep-rehearsal-out."))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="medsweep-rehearsal-tree.") as tree:
        copy_tree(REPO, Path(tree))
        command = rehearsal_command(args.check)
        print(f"device_rehearsal: {command} (in a copy of the tree, {python})", flush=True)
        env = {k: v for k, v in os.environ.items() if k not in ("MEDMNIST_ROOT", "PYTHONPATH", "VIRTUAL_ENV")}
        done = subprocess.run(["bash", "-c", command], cwd=tree, env=env | {"OUT": str(out), "PYTHON": str(python)})
    print(f"device_rehearsal: {args.check} ended with exit code {done.returncode}; its output is in {out}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
