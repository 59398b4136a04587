#!/usr/bin/env bash
# The GPU check in one command: trains, reloads, times and packs on one GPU, without Ray.
#
#   bash benchmarks/gpu_check.sh --out DIR [--device cuda|cpu] [--quick] [--data-root DIR] [--steps abcde]
#
# Under 8 minutes on one H100 for the default steps abcde; --steps f (torch.compile of the bare
# step) and g (the Trainer with compile and bf16) take about 5 and 4 more: run each as its own
# call; so are i and j (the MedViT paper's protocol at 224 px: the step's variants, the official
# notebook's loop against the Trainer), a minute or two together, and k (that step compiled, cut
# off at 300 s). `--device cpu --quick` runs the same code path at tiny sizes in a few minutes on a
# CPU. Everything lands in DIR (see benchmarks/gpu_check.py for the files).
#
# A GPU machine without the project's environment needs only torch, torchvision, numpy,
# pandas, scikit-learn, scikit-image, Pillow, PyYAML: pydantic and medmnist (and their small
# dependencies) are installed from the git-ignored .whl/ folder when they are not importable
# (see benchmarks/README.md for the download command). The data root defaults to
# $MEDMNIST_ROOT, else .whl/medmnist (where a copy of retinamnist.npz travels with the wheels).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=gpu_check.sh
OUT="" DATA_ROOT="${MEDMNIST_ROOT:-}" DEVICE=cuda PASS=()
source "$REPO/benchmarks/device_args.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) value "$@"; OUT=$2; shift 2 ;;
        --data-root) value "$@"; DATA_ROOT=$2; shift 2 ;;
        --device) value "$@"; DEVICE=$2; shift 2 ;;
        --steps) value "$@"; [[ "$2" =~ ^[abcdefghijk]+$ ]] || refuse "--steps: letters of abcdfgehijk, got '$2'"
            PASS+=("$1" "$2"); shift 2 ;;
        --quick) PASS+=(--quick); shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) refuse "unknown argument $1" ;;
    esac
done
# the arguments first: a wrong one is refused before the data and the Python are looked for
case "$DEVICE" in cuda|cpu) ;; *) refuse "--device: cuda or cpu, got '$DEVICE'" ;; esac
source "$REPO/benchmarks/gpu_env.sh"
cd "$REPO"

"$PY" -m benchmarks.gpu_check --out "$OUT" --data-root "$DATA_ROOT" --device "$DEVICE" "${PASS[@]}" 2>&1 | tee "$OUT/log.txt"
