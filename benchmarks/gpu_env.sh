# Sourced by the scripts that run on a GPU machine without the project's environment
# (benchmarks/gpu_check.sh and gpu_sweep.sh, studies/recipe/gpu_study.sh,
# studies/protocol/gpu_protocol.sh): resolves the data root, picks the
# Python, installs pydantic and medmnist from the git-ignored .whl/ when they are not
# importable, and puts the repository on PYTHONPATH. Expects REPO (the repository root), NAME
# (the script, for errors), OUT and DATA_ROOT (given or empty); leaves OUT (created) and
# DATA_ROOT absolute and PY set.
[ -n "$OUT" ] || { echo "$NAME: --out DIR is required" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "$DATA_ROOT" ] || DATA_ROOT="$REPO/.whl/medmnist"
[ -f "$DATA_ROOT/retinamnist.npz" ] || {
    echo "$NAME: no retinamnist.npz in $DATA_ROOT; give --data-root or set MEDMNIST_ROOT" >&2; exit 2; }
DATA_ROOT=$(cd "$DATA_ROOT" && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import pydantic, medmnist" 2>/dev/null; then
    ls "$REPO"/.whl/*.whl >/dev/null 2>&1 || {
        echo "$NAME: pydantic or medmnist missing and no wheels in .whl/ (see benchmarks/README.md)" >&2; exit 2; }
    SITE=$(mktemp -d -t medsweep-site.XXXXXX)
    trap 'rm -rf "$SITE"' EXIT  # 160 MB with Ray; the scripts that source this set no trap of their own
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$REPO"/.whl/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
