#!/usr/bin/env bash
# The device check of issue 26: on a machine with an NVIDIA GPU it installs the CUDA build of ONNX
# Runtime (make install-gpu), checks ONNX on CUDA against CPU (max |delta a| <= 1e-5), measures the
# ANN and SNN actors' energy per decision with NVML (and RAPL where readable) at batch 1 and 256,
# times SAC and SDRL training steps/s on cuda against cpu, and prints one table; in under 5 minutes
# once the venv exists. On a machine without one it says "no GPU" and runs the CPU parts.
#
# Usage: scripts/device_check.sh [--smoke] [--json PATH]
#   --smoke        tiny counts: the CPU-only test (tests/test_device_check.py) runs this
#   AOLO_PYTHON    the interpreter to use (default .venv/bin/python; made by make install if absent)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${AOLO_PYTHON:-.venv/bin/python}"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    echo "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
    [ -x "$PY" ] || make install
    if ! "$PY" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
        make install-gpu PY="$PY"
    fi
else
    echo "no GPU: nvidia-smi finds no NVIDIA GPU on this machine; running the CPU parts only (ONNX on CPU," \
         "training on cpu, energy measured only where RAPL is readable, else estimated)"
    [ -x "$PY" ] || make install
fi
exec "$PY" scripts/device_check.py "$@"
