#!/usr/bin/env bash
# Issue 8 at a scale this CPU cannot afford: the recipe arms over 20 seeds and the larger 28 px
# presets, as run_arm.py processes, JOBS at a time on one GPU (packing measured 7.1x at 8 on an
# H200), without Ray.
#
#   bash studies/recipe/gpu_study.sh --out DIR [--device cuda|cpu] [--quick] [--jobs 8] [--labels b,a]
#                                    [--data-root DIR] [--bundle FILE]
#
# Each run writes its record to DIR/runs/<label>-<seed>.jsonl (run_arm.py's format, so
# summarize.py reads them) as soon as it ends, so a study cut short keeps every finished run,
# and the same command again trains only the runs without a record (a run cut short leaves none).
# --labels runs only those arms of the study (default: all). --bundle FILE (outside DIR) writes
# DIR as one .tar.gz after every run and at the end: a device call brings back 8 files at most.
# `--device cpu --quick` runs two arms x two seeds of two epochs on 64 images: the same code path.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NAME=gpu_study.sh
source "$REPO/benchmarks/device_args.sh"
OUT="" DEVICE=cuda QUICK=0 JOBS=8 LABELS="" DATA_ROOT="${MEDMNIST_ROOT:-}" BUNDLE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out|--device|--jobs|--labels|--data-root|--bundle)
            value "$@" ;;&
        --out) OUT=$2; shift 2 ;;
        --device) DEVICE=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --labels) LABELS=",$2,"; shift 2 ;;
        --data-root) DATA_ROOT=$2; shift 2 ;;
        --bundle) BUNDLE=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "gpu_study.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_study.sh: --device must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;; esac
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "gpu_study.sh: --jobs must be a positive integer, got '$JOBS'" >&2; exit 2; }
# arm (run_arm.py's: a = the old recipe, b = the new defaults), label, seeds, extra fields.
# Longest runs first, so that the pool ends together.
if [ "$QUICK" = 1 ]; then
    STUDY="a a 0,1
b b 0,1"
else
    STUDY="b b-100ep 0,1,2,3,4 epochs=100
b b-base 0,1,2,3,4 model=medvit_28_base
b b-small 0,1,2,3,4 model=medvit_28_small
a a $(seq -s, 0 19)
b b $(seq -s, 0 19)"
fi
QUICK_SETS=""
[ "$QUICK" = 0 ] || QUICK_SETS="epochs=2 subset=64"

RUNS=$(while read -r arm label seeds extra; do
    [ -z "$LABELS" ] || [[ $LABELS == *",$label,"* ]] || continue
    for seed in ${seeds//,/ }; do
        # no trailing blank: xargs -L joins a line that ends in one to the next
        echo "$arm $label $seed${extra:+ $extra}"
    done
done <<< "$STUDY")
[ -n "$RUNS" ] || {
    echo "gpu_study.sh: --labels names no arm of the study (arms: $(cut -d' ' -f2 <<< "$STUDY" | paste -sd,))" >&2; exit 2; }
# every argument checked: now the data, the Python and the output folder
source "$REPO/benchmarks/gpu_env.sh"
cd "$REPO"
mkdir -p "$OUT/runs"
echo "$RUNS" > "$OUT/jobs.txt"
echo "gpu_study: $(wc -l < "$OUT/jobs.txt") runs, $JOBS at a time on $DEVICE" | tee "$OUT/log.txt"

export OUT DEVICE DATA_ROOT PY QUICK_SETS
run_one() {
    local arm=$1 label=$2 seed=$3
    shift 3
    if [ -s "$OUT/runs/$label-$seed.jsonl" ]; then echo "kept $label $seed"; return; fi
    "$PY" -m studies.recipe.run_arm --arm "$arm" --label "$label" --seeds "$seed" --out "$OUT/runs/$label-$seed.jsonl" \
        --set device="$DEVICE" data_root="$DATA_ROOT" "$@" $QUICK_SETS > "$OUT/runs/$label-$seed.log" 2>&1 \
        && tail -1 "$OUT/runs/$label-$seed.log" || echo "FAILED $label $seed (see runs/$label-$seed.log)"
    bundle
}
export -f run_one
SECONDS=0
# shellcheck disable=SC2016
xargs -P "$JOBS" -L 1 bash -c 'run_one "$@"' _ < "$OUT/jobs.txt" | tee -a "$OUT/log.txt"
echo "gpu_study: done in ${SECONDS}s" | tee -a "$OUT/log.txt"
cat "$OUT"/runs/*.jsonl > "$OUT/all.jsonl" 2>/dev/null || true  # every run failed: nothing to gather
bundle
if grep -q '^FAILED' "$OUT/log.txt"; then echo "gpu_study: some runs failed (above)" >&2; exit 1; fi
