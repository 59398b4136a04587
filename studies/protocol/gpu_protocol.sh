#!/usr/bin/env bash
# Issue 20's GPU study: the MedViT paper's protocol (the paper's MedViT-S, our medvit_base, at
# 224 px resized on the device from the 28 px images; 50 epochs, batch 128, AdamW 1e-3,
# cosine; the test-selection audit on) on RetinaMNIST at alpha 0 and 0.2 and on
# PneumoniaMNIST, 3 seeds each, packed on one GPU, within a time budget (default 420 s of
# measuring and training, under 8 minutes with the setup; on one H200 that holds 4 or 5 of the
# nine runs, and --records carries the finished ones to the next call).
#
#   bash studies/protocol/gpu_protocol.sh --out DIR [--device cuda|cpu] [--quick]
#                                         [--budget-s 420] [--jobs 1,2] [--data-root DIR]
#                                         [--records DIR] [--bundle FILE] [--model resnet18_224]
#
# Steps, each skipped when its output exists, so a second call resumes where one stopped (a
# plan whose runs all ended and that left some out gives way to a plan of those, measured once):
#   1. plan: measures whole epochs of medvit_base (then medvit_small if it does not fit) packed
#      1 and 2 processes at once, timed together, picks the model, the packing and the runs
#      that fit (DIR/plan.json, DIR/jobs.txt; the output says which model and why), leaving
#      out the runs that have a record: --records DIR copies an earlier call's records
#      (<label>-<seed>.jsonl, or gzipped .jsonl.gz as reports/protocol/h200/ keeps them, to
#      leave the largest device carry room) into DIR/runs first, so that the nine runs, some 22
#      minutes on one H200, can be spread over calls on fresh machines;
#   2. runs: each run's record in DIR/runs/<label>-<seed>.jsonl when it ends (a run cut short
#      leaves none and runs again);
#   3. summary: DIR/summary.md, val-selected and test-selected (audit) beside the papers'
#      numbers, then studies/recipe/summarize.py's tables.
# --model trains a baseline instead of MedViT under the same protocol (resnet18_224 or
# resnet50_224, beside MedMNIST v2's row for it); give it its own DIR and records.
# --bundle FILE (outside DIR) writes DIR as one .tar.gz after every run and at the end: a device
# call brings back 8 files at most, and a call cut short keeps the runs that ended.
# `--device cpu --quick` runs the same code path in minutes: 2 seeds, 2 epochs, 16 images per
# split, the 224 px models at 32 px.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NAME=gpu_protocol.sh
source "$REPO/benchmarks/device_args.sh"
OUT="" DEVICE=cuda QUICK="" BUDGET=420 JOBS=1,2 DATA_ROOT="${MEDMNIST_ROOT:-}" RECORDS="" BUNDLE="" MODEL=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out|--device|--budget-s|--jobs|--data-root|--records|--bundle|--model)
            value "$@" ;;&
        --out) OUT=$2; shift 2 ;;
        --device) DEVICE=$2; shift 2 ;;
        --budget-s) BUDGET=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --data-root) DATA_ROOT=$2; shift 2 ;;
        --records) RECORDS=$2; shift 2 ;;
        --bundle) BUNDLE=$2; shift 2 ;;
        --model) MODEL=(--model "$2"); shift 2 ;;
        --quick) QUICK=--quick; shift ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "gpu_protocol.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_protocol.sh: --device must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;; esac
[[ $BUDGET =~ ^[1-9][0-9]*$ ]] || { echo "gpu_protocol.sh: --budget-s must be a positive whole number of seconds, got '$BUDGET'" >&2; exit 2; }
[[ $JOBS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || {
    echo "gpu_protocol.sh: --jobs must be positive integers separated by commas (packings to measure), got '$JOBS'" >&2; exit 2; }
if [ -n "$RECORDS" ]; then
    [ -d "$RECORDS" ] || { echo "gpu_protocol.sh: --records must be a folder of run records, got '$RECORDS'" >&2; exit 2; }
    RECORDS=$(cd "$RECORDS" && pwd)
fi
source "$REPO/benchmarks/gpu_env.sh"
cd "$REPO"
mkdir -p "$OUT/runs"
# A record already in DIR/runs is kept; gzip -dcf copies a plain .jsonl as it is.
for record in ${RECORDS:+"$RECORDS"/*.jsonl "$RECORDS"/*.jsonl.gz}; do
    kept="$OUT/runs/$(basename "${record%.gz}")"
    [ ! -e "$record" ] || [ -e "$kept" ] || gzip -dcf "$record" > "$kept"
done
PROTOCOL=studies.protocol.protocol
SECONDS=0

"$PY" -m "$PROTOCOL" plan --out "$OUT" --device "$DEVICE" $QUICK --budget-s "$BUDGET" --jobs "$JOBS" \
    --data-root "$DATA_ROOT" ${MODEL[@]+"${MODEL[@]}"} 2>&1 | tee -a "$OUT/log.txt"
PACKED=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["jobs"])' "$OUT/plan.json")

export OUT PY PROTOCOL
run_one() {
    local label=$1 seed=$2
    if [ -s "$OUT/runs/$label-$seed.jsonl" ]; then echo "kept $label $seed"; return; fi
    "$PY" -m "$PROTOCOL" run --out "$OUT" --label "$label" --seed "$seed" > "$OUT/runs/$label-$seed.log" 2>&1 \
        && tail -1 "$OUT/runs/$label-$seed.log" || echo "FAILED $label $seed (see runs/$label-$seed.log)"
    bundle
}
export -f run_one
# shellcheck disable=SC2016
xargs -r -P "$PACKED" -L 1 bash -c 'run_one "$@"' _ < "$OUT/jobs.txt" | tee -a "$OUT/log.txt"
echo "gpu_protocol: runs done in ${SECONDS}s" | tee -a "$OUT/log.txt"

"$PY" -m "$PROTOCOL" summary --out "$OUT"
# summarize.py's seed ensembles score the full splits, which --quick's 16 images are not
[ -n "$QUICK" ] || MEDMNIST_ROOT=$DATA_ROOT "$PY" -m studies.recipe.summarize "$OUT"/runs/*.jsonl >> "$OUT/summary.md"
bundle
MISSING=$(while read -r label seed; do [ -s "$OUT/runs/$label-$seed.jsonl" ] || echo -n " $label-$seed"; done < "$OUT/jobs.txt")
if [ -n "$MISSING" ]; then echo "gpu_protocol: no record of$MISSING (see runs/*.log); run again to retry them" >&2; exit 1; fi
