# Sourced by the device scripts (benchmarks/gpu_check.sh, gpu_sweep.sh, studies/recipe/gpu_study.sh,
# studies/protocol/gpu_protocol.sh) before they read their arguments: one way to refuse one, in
# one line and exit code 2. Expects NAME (the script).
refuse() { echo "$NAME: $1 (see --help)" >&2; exit 2; }
value() { [ $# -ge 2 ] && [ -n "$2" ] || refuse "$1 needs a value"; }
