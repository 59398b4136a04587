# Sourced by the scripts that run on a GPU machine without the project's environment
# (benchmarks/gpu_check.sh and gpu_sweep.sh, studies/recipe/gpu_study.sh,
# studies/protocol/gpu_protocol.sh): resolves the data root, picks the
# Python, installs pydantic and medmnist from the git-ignored .whl/ when they are not
# importable, and puts the repository on PYTHONPATH. Expects REPO (the repository root), NAME
# (the script, for errors), OUT and DATA_ROOT (given or empty), and BUNDLE (a script's --bundle
# FILE, or unset); leaves OUT (created), DATA_ROOT and BUNDLE absolute, PY set, and `bundle`
# defined: it writes OUT as one .tar.gz at BUNDLE (nothing without one), because a device call
# brings back 8 files at most and a study's folder holds a file or two a run.
[ -n "$OUT" ] || { echo "$NAME: --out DIR is required" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "$DATA_ROOT" ] || DATA_ROOT="$REPO/.whl/medmnist"
[ -f "$DATA_ROOT/retinamnist.npz" ] || {
    echo "$NAME: no retinamnist.npz in $DATA_ROOT; give --data-root or set MEDMNIST_ROOT" >&2; exit 2; }
DATA_ROOT=$(cd "$DATA_ROOT" && pwd)
BUNDLE=${BUNDLE:-}
if [ -n "$BUNDLE" ]; then
    [ -d "$(dirname "$BUNDLE")" ] || { echo "$NAME: --bundle's folder does not exist: '$BUNDLE'" >&2; exit 2; }
    BUNDLE=$(cd "$(dirname "$BUNDLE")" && pwd)/$(basename "$BUNDLE")
    case "$BUNDLE" in "$OUT"/*) echo "$NAME: --bundle must be outside --out, got '$BUNDLE'" >&2; exit 2 ;; esac
fi
export BUNDLE
bundle() {  # whole, or not at all: runs ending together each write their own and rename it
    [ -z "$BUNDLE" ] || { tar czf "$BUNDLE.$BASHPID" -C "$OUT" . && mv "$BUNDLE.$BASHPID" "$BUNDLE"; }
}
export -f bundle
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python; else PY=python3; fi
fi
# Whether the packages named are installed, found without importing them: importing medmnist
# took 5.5 s on a 2-core CPU (it loads torchvision), Ray Tune, Optuna and tensorboardX 6.7 s.
importable() {
    "$PY" -c 'import importlib.util, sys; sys.exit(not all(importlib.util.find_spec(m) for m in sys.argv[1:]))' "$@"
}
if ! importable pydantic medmnist; then
    ls "$REPO"/.whl/*.whl >/dev/null 2>&1 || {
        echo "$NAME: pydantic or medmnist missing and no wheels in .whl/ (see benchmarks/README.md)" >&2; exit 2; }
    SITE=$(mktemp -d -t medsweep-site.XXXXXX)
    trap 'rm -rf "$SITE"' EXIT  # 160 MB with Ray; the scripts that source this set no trap of their own
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$REPO"/.whl/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
