"""What one device call carries for one GPU check, and whether it fits the 64 MiB a call may take.

A device call copies the working tree (tracked files and untracked ones git does not ignore)
plus the carried ``.whl/``. The full wheel set of ``../shared/tools/device-wheels.sh`` is
51.3 MB, Ray's 41.5 of it; beside the working tree (15.6 MB before the shipped records were
gzipped) and both MedMNIST files it was over the limit, and such a call is refused before
anything runs. Each check needs less: the Ray-free ones (the protocol and recipe studies,
gpu_check.sh) only pydantic and medmnist (with the typing_extensions pydantic 2.14 needs,
fetched once); the Ray ones (gpu_sweep.sh) all but SQLAlchemy,
Alembic, greenlet and Mako, which Optuna imports only for a database storage.

    bash ../shared/tools/device-wheels.sh          # once: the full set into .whl/
    python -m benchmarks.device_carry protocol     # .whl/ = what `protocol` needs; the sizes

It keeps the full set in ``.whl-all/`` (git-ignored), fills ``.whl/`` with the check's wheels
and ``.whl/medmnist/`` with its MedMNIST files, prints what travels, and exits 2 when the
total is over the limit, naming the largest files of the tree. Then ``run(carry=[".whl"])``.
A wheel whose RECORD files hold blank lines (device-wheels.sh's Ray) is mended first: pip
cannot install it as it is (``mend_record``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 64 * 2**20  # what one device call may carry, working tree included
# pip's distribution names (as the wheel files begin) the Ray-free checks import.
RAY_FREE = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions", "medmnist")
# What device-wheels.sh leaves to the machine's own copy, of which the carried pydantic 2.14
# needs a release that machine may not have (its version was never read): fetched here once.
FETCHED = {"typing_extensions": "typing-extensions>=4.16.0"}
# Optuna imports these only for an RDB storage; medsweep's searcher keeps its study in memory.
NEVER = ("sqlalchemy", "alembic", "greenlet", "mako")
RETINA, PNEUMONIA = "retinamnist.npz", "pneumoniamnist.npz"
# The Ray checks' wheels (all of device-wheels.sh's but NEVER), measured 2026-12-03: Ray 2.60.0
# 41.5 MB of it. The largest carry is gpu_sweep's step (a), these wheels and both MedMNIST files
# (7.46 MB), which leaves the working tree 14 MB; tests/test_device_carry.py holds it there.
RAY_WHEELS_BYTES = 45_640_000


class Check(NamedTuple):
    command: str
    ray: bool  # True: every wheel but NEVER; False: RAY_FREE only
    data: tuple[str, ...]


CHECKS = {
    # a study's folder holds a file or two a run, more than a call brings back (8): one bundle comes back;
    # --records carries the runs that earlier calls finished (reports/protocol/README.md)
    "protocol": Check("bash studies/protocol/gpu_protocol.sh --device cuda --out /tmp/medsweep-protocol "
                      "--records reports/protocol/h200 --bundle $OUT/protocol.tgz", False, (RETINA, PNEUMONIA)),
    "study": Check("bash studies/recipe/gpu_study.sh --device cuda --out /tmp/medsweep-study --bundle $OUT/study.tgz",
                   False, (RETINA, PNEUMONIA)),
    "check": Check("bash benchmarks/gpu_check.sh --device cuda --out $OUT", False, (RETINA, PNEUMONIA)),
    # issue 20's speed targets at 224 px: the step's variants and the official notebook's loop
    "speed-224": Check("bash benchmarks/gpu_check.sh --device cuda --out $OUT --steps ij", False, (RETINA,)),
    "sweep": Check("bash benchmarks/gpu_sweep.sh --out $OUT --steps bcde", True, (RETINA,)),
    "sweep-tests": Check("bash benchmarks/gpu_sweep.sh --out $OUT --steps a", True, (RETINA, PNEUMONIA)),
}


class CarryError(Exception):
    """Bad input or a carry over the limit: one line."""


def distribution(wheel: Path) -> str:
    """A wheel file's distribution name, normalised as in its file name (``pydantic_core``)."""
    return wheel.name.split("-", 1)[0].lower()


def wheels_for(check: Check, wheels: list[Path]) -> list[Path]:
    """The wheels of the full set that ``check`` needs; an error naming any that is missing."""
    chosen = [w for w in wheels if distribution(w) in RAY_FREE or (check.ray and distribution(w) not in NEVER)]
    names = [distribution(w) for w in chosen]
    missing = set(RAY_FREE) - set(names)
    if missing:
        raise CarryError(f".whl-all: no wheel of {', '.join(sorted(missing))}; "
                         "run bash ../shared/tools/device-wheels.sh again")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # pip stops the whole install on two versions of one package
        raise CarryError(f".whl-all: two versions of {', '.join(twice)}: remove the older wheel")
    return chosen


def mend_record(wheel: Path) -> bool:
    """Drop the blank lines of every RECORD in a wheel, in place; whether any had one.

    device-wheels.sh's Ray wheel, rebuilt without its jars, ends each RECORD in it with a blank
    line: its own, on which pip (23.2 to 26.3 tried) stops the whole install with an IndexError,
    and those of the packages it vendors (psutil, colorama), on which ``importlib.metadata``
    (Python 3.11 to 3.13 tried) raises a TypeError once ``import ray`` has put them on ``sys.path``."""
    with zipfile.ZipFile(wheel) as zin:
        records = {}
        for name in zin.namelist():
            if name.endswith(".dist-info/RECORD"):
                lines = zin.read(name).splitlines(keepends=True)
                kept = [line for line in lines if line.strip()]
                if len(kept) < len(lines):
                    records[name] = b"".join(kept)
        if not records:
            return False
        mended = wheel.with_name(wheel.name + ".mending")
        with zipfile.ZipFile(mended, "w") as zout:
            for info in zin.infolist():
                data = records[info.filename] if info.filename in records else zin.read(info.filename)
                zout.writestr(info, data, compress_type=info.compress_type, compresslevel=9)
    os.replace(mended, wheel)
    return True


def fetch(requirement: str, folder: Path) -> None:
    """Download one pure-Python wheel into ``folder``; a CarryError when pip cannot."""
    run = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                          "-d", str(folder), requirement], capture_output=True, text=True)
    if run.returncode != 0:
        errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")] or ["no error printed"]
        raise CarryError(f"pip could not download {requirement}: {errors[0]}")


def tree_files(repo: Path) -> list[Path]:
    """What a device call copies of the working tree: tracked files and untracked ones git
    does not ignore, as they are on disk."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=repo, capture_output=True, check=True).stdout
    return [repo / name for name in sorted(set(listing.decode().split("\0"))) if name and (repo / name).is_file()]


def size(paths: list[Path]) -> int:
    return sum(path.stat().st_size for path in paths)


def prepare(name: str, repo: Path, data_root: Path) -> list[str]:
    """Fill ``repo/.whl`` for check ``name``; the lines of its size table. Raises CarryError."""
    check = CHECKS[name]
    stash, carried = repo / ".whl-all", repo / ".whl"
    stash.mkdir(exist_ok=True)
    for wheel in carried.glob("*.whl"):  # a fresh device-wheels.sh run: the new full set
        os.replace(wheel, stash / wheel.name)
    if not any(stash.glob("*.whl")):
        raise CarryError("no wheels in .whl/ or .whl-all/: run bash ../shared/tools/device-wheels.sh first")
    for dist, requirement in FETCHED.items():
        if not any(distribution(w) == dist for w in stash.glob("*.whl")):
            fetch(requirement, stash)
    full = sorted(stash.glob("*.whl"))
    chosen = wheels_for(check, full)
    mended = [wheel.name for wheel in chosen if mend_record(wheel)]  # in the stash: once per wheel set
    missing = [f for f in check.data if not (data_root / f).is_file()]
    if missing:
        raise CarryError(f"--data-root: no {', '.join(missing)} in {data_root}")
    shutil.rmtree(carried, ignore_errors=True)
    (carried / "medmnist").mkdir(parents=True)
    for wheel in chosen:
        shutil.copy2(wheel, carried / wheel.name)
    for file in check.data:
        shutil.copy2(data_root / file, carried / "medmnist" / file)
    tree = tree_files(repo)
    parts = [("working tree", size(tree)), (f"{len(chosen)} wheels", size(chosen)),
             ("data: " + ", ".join(check.data), size([data_root / f for f in check.data]))]
    total = sum(b for _, b in parts)
    lines = [*(f"mended {wheel}: blank lines in its RECORD files, on which pip and importlib.metadata fail" for wheel in mended),
             f"{name}: {check.command}", *(f"  {label:<48} {b / 1e6:7.2f} MB" for label, b in parts),
             f"  {'total (limit 64 MiB = 67.11 MB)':<48} {total / 1e6:7.2f} MB"]
    if total > LIMIT_BYTES:
        largest = sorted(tree, key=lambda p: p.stat().st_size, reverse=True)[:3]
        raise CarryError(f"{name}: {total / 1e6:.2f} MB would travel, over the 67.11 MB a device call may carry; "
                         "largest files of the tree: " + ", ".join(f"{p.relative_to(repo)} ({p.stat().st_size / 1e6:.1f} MB)"
                                                               for p in largest))
    return [*lines, f"  fits: run(carry=[\".whl\"], command=\"{check.command}\")"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("check", choices=sorted(CHECKS), help="which GPU check the call runs")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MEDMNIST_ROOT", "~/.medmnist")),
                        help="folder of the MedMNIST .npz files (default $MEDMNIST_ROOT, else ~/.medmnist)")
    args = parser.parse_args(argv)
    try:
        lines = prepare(args.check, REPO, args.data_root.expanduser())
    except CarryError as error:
        print(f"device_carry: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
