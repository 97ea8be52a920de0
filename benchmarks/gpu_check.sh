#!/usr/bin/env bash
# The GPU check of issue 20 in one call (under 8 minutes on one H100/H200): see benchmarks/gpu_check.py.
#   bash benchmarks/gpu_check.sh          # on a machine with a GPU
#   bash benchmarks/gpu_check.sh --dry    # the same plumbing on the CPU, tiny shapes
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
exec timeout 470 "$PY" benchmarks/gpu_check.py "$@"
