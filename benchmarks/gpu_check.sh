#!/usr/bin/env bash
# The GPU check: the device tests and the quick benchmark on CUDA, in under 5 minutes on one GPU.
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]
#
# Needs a CUDA build of PyTorch and bisnn-pyro's dependencies already installed (it installs
# nothing, so it also runs on machines without network access).  Writes OUT_DIR/gpu.json
# (default: $OUT, else the current folder) and prints the benchmark table.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python - <<'PY'
import importlib, sys
missing = [m for m in ("torch", "pyro", "tqdm", "pytest") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages {missing}; install bisnn-pyro's dependencies first")
import torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA device")
print(f"gpu_check: torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
PY
BISNN_TEST_DEVICE=cuda timeout 150 python -m pytest -q -p no:cacheprovider tests/test_device.py tests/test_direct.py
timeout 150 python benchmarks/run.py --quick --device cuda --json "$out/gpu.json"
