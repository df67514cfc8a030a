#!/usr/bin/env bash
# Everything worth doing on the project's GPU machine in one run (< 8 minutes): installs the
# missing packages from carried wheels, runs the device tests, the parallel wrappers, the main
# job, ResNet50 bf16 training and the speed suite, and writes OUT_DIR/gpu_check.json
# (benchmarks/gpu_check.py says what each phase does). Exit status 1 if any phase failed.
#
#   bash benchmarks/gpu_check.sh OUT_DIR          # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu OUT_DIR    # here, on the CPU, tiny sizes
#
# Before a GPU run, fill benchmarks/gpu_carry/ here (bash benchmarks/gpu_wheels.sh) and carry
# it: with the device tool, carry=["benchmarks/gpu_carry"] and the command
#   PYTHONUNBUFFERED=1 bash benchmarks/gpu_check.sh "$OUT"
# Python: $PYTHON if set, else the checkout's .venv if there is one, else python3 (the GPU
# machine's, which holds JAX with CUDA and PyTorch).
set -u
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
