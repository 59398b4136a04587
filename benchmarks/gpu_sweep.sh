#!/usr/bin/env bash
# Ray Tune on one GPU in one command: the test suite, a real sweep, packing, faults, outputs.
#
#   bash benchmarks/gpu_sweep.sh --out DIR [--device cuda|cpu] [--quick] [--steps abcde]
#                                [--data-root DIR] [--work DIR]
#
# Steps (benchmarks/gpu_sweep.py says what each measures and writes): (a) the test suite on
# this Python with the carried Ray, quick then slow tests as `make test` runs them; (b) a real `medsweep sweep` of the RetinaMNIST spec, 32
# trials of at most 20 epochs, 8 to a GPU, ASHA; (c) packing under Ray, 1/4/8/16 trials per
# GPU, against the same processes without Ray; (d) a trial's worker and then the driver
# killed with SIGKILL, and `medsweep resume`; (e) `medsweep status`, `collect`, `report` and
# the TensorBoard files of (b)'s sweep. Step (e) needs (b) in the same call. Figures land in
# DIR as JSON/JSONL (7 files at most, what a device call brings back), the summary table in
# DIR/summary.md; the sweeps in --work (default: a temporary folder, removed at the end).
# `--device cpu --quick` runs the same path at tiny sizes in a few minutes on a CPU.
#
# On the GPU machine (Python 3.12 with torch, without Ray): carry .whl. Build the wheels here
# once with `bash ../shared/tools/device-wheels.sh` (Ray without its jars and dashboard build,
# Optuna, pydantic, medmnist, tensorboardX, ...), then let `python -m benchmarks.device_carry`
# put what a call needs in .whl/ (wheels, and the data in .whl/medmnist/) and print what
# travels against the 64 MiB (67.1 MB) a call may carry: steps b-e 59.2 MB; step (a) also
# needs pneumoniamnist.npz (the suite's real-data fixture reads both files): 63.4 MB. The
# wheels are installed into a temporary site first (benchmarks/gpu_env.sh). A plan for one
# session (benchmarks/README.md, "Ray Tune on one GPU"):
#
#   python -m benchmarks.device_carry sweep;        run(carry=[".whl"]): bash benchmarks/gpu_sweep.sh --out $OUT --steps bcde
#   python -m benchmarks.device_carry sweep-tests;  run(carry=[".whl"]): bash benchmarks/gpu_sweep.sh --out $OUT --steps a
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=gpu_sweep.sh
OUT="" DATA_ROOT="${MEDMNIST_ROOT:-}" DEVICE=cuda STEPS=abcde PASS=()
source "$REPO/benchmarks/device_args.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) value "$@"; OUT=$2; shift 2 ;;
        --data-root) value "$@"; DATA_ROOT=$2; shift 2 ;;
        --work) value "$@"; mkdir -p "$2"; PASS+=(--work "$(cd "$2" && pwd)"); shift 2 ;;
        --device) value "$@"; DEVICE=$2; shift 2 ;;
        --steps) value "$@"; STEPS=$2; shift 2 ;;
        --quick) PASS+=(--quick); shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) refuse "unknown argument $1" ;;
    esac
done
case "$DEVICE" in cuda|cpu) ;; *) refuse "--device: cuda or cpu, got '$DEVICE'" ;; esac
[[ "$STEPS" =~ ^[abcde]+$ ]] || refuse "--steps: letters of abcde, got '$STEPS'"
[[ "$STEPS" != *e* || "$STEPS" == *b* ]] || refuse "--steps: e reads the sweep of step b; name b too"
source "$REPO/benchmarks/gpu_env.sh"
importable ray optuna tensorboardX || {
    echo "$NAME: Ray Tune, Optuna or tensorboardX is not importable; carry .whl (see --help)" >&2; exit 2; }
[ "$DEVICE" = cpu ] || "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" || {
    echo "$NAME: --device cuda: no CUDA GPU is visible; allowed here: --device cpu" >&2; exit 2; }
cd "$REPO"

"$PY" -m benchmarks.gpu_sweep --out "$OUT" --data-root "$DATA_ROOT" --device "$DEVICE" --steps "$STEPS" \
    "${PASS[@]}" 2>&1 | tee "$OUT/log.txt"
