#!/usr/bin/env bash
# The GPU check in one command: trains, reloads, times and packs on one GPU, without Ray.
#
#   bash benchmarks/gpu_check.sh --out DIR [--device cuda|cpu] [--quick] [--data-root DIR] [--steps abcde]
#
# Under 8 minutes on one H100 for the default steps abcde; --steps f (torch.compile of the bare
# step) and g (the Trainer with compile and bf16) take about 5 and 4 more: run each as its own
# call. `--device cpu --quick` runs the same code path at tiny sizes in a few minutes on a
# CPU. Everything lands in DIR (see benchmarks/gpu_check.py for the files).
#
# A GPU machine without the project's environment needs only torch, torchvision, numpy,
# pandas, scikit-learn, scikit-image, Pillow, PyYAML: pydantic and medmnist (and their small
# dependencies) are installed from the git-ignored .whl/ folder when they are not importable
# (see benchmarks/README.md for the download command). The data root defaults to
# $MEDMNIST_ROOT, else .whl/medmnist (where a copy of retinamnist.npz travels with the wheels).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="" DATA_ROOT="${MEDMNIST_ROOT:-}" PASS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --data-root) DATA_ROOT=$2; shift 2 ;;
        --steps) PASS+=("$1" "$2"); shift 2 ;;
        --device|--quick) PASS+=("$1"); [ "$1" = --device ] && { PASS+=("$2"); shift; }; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
NAME=gpu_check.sh
source "$REPO/benchmarks/gpu_env.sh"
cd "$REPO"

"$PY" benchmarks/gpu_check.py --out "$OUT" --data-root "$DATA_ROOT" "${PASS[@]}" 2>&1 | tee "$OUT/log.txt"
