#!/usr/bin/env bash
# Every GPU path of rlx in one call (plain runs, populations K=1/64/256 of PPO and SAC, compile on/off and
# CUDA graphs where they exist), one JSON of figures: scripts/gpu_check.py has the details.
#   scripts/gpu_check.sh [--device cuda] [--out gpu_check.json]   # under 8 minutes on one GPU
#   scripts/gpu_check.sh --device cpu --quick                      # the same paths, tiny, on CPU (CI)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python}"
if [ -z "${PYTHON:-}" ] && [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; fi
export WANDB_MODE=disabled PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$python" "$here/gpu_check.py" "$@"
