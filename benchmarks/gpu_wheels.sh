#!/usr/bin/env bash
# Fills benchmarks/gpu_carry/ (git-ignored) with what the GPU machine lacks and cannot fetch (it
# reaches no network): the wheels of the Python packages cnnjax needs that its image does not
# hold, and the Fashion-MNIST IDX files of the main job. Run it here, where pip reaches PyPI;
# then carry the directory with the device tool (carry=["benchmarks/gpu_carry"]) and run
# benchmarks/gpu_check.sh there, which pip-installs the wheels without network.
#
#   bash benchmarks/gpu_wheels.sh            # about 31 MB: 30 MB of data, two small wheels
#
# The GPU machine's image (/work/.library/device/KINDS.md) holds JAX 0.11 with CUDA 13, flax,
# optax, orbax-checkpoint, torch, torchvision, absl-py, PyYAML, h5py, pillow, matplotlib, tqdm,
# protobuf, tensorboard and pytest; of cnnjax's dependencies it lacks ml-collections (pure Python;
# needs absl-py and PyYAML, both there), tensorboardX (pure Python; needs protobuf and numpy, both
# there; the training loop writes TensorBoard events with it) and tensorflow-datasets, which only the 'tfds' data source imports and
# which gpu_check.sh does not use. Keras is not there either: the speed suite runs no Keras row
# on the GPU. The wheel is the version this checkout's venv runs, for the machine's Python 3.12.
set -eu
cd "$(dirname "$0")/.."
CARRY=benchmarks/gpu_carry
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$CARRY/wheels" "$CARRY/fashion-mnist"
rm -f "$CARRY"/wheels/*.whl
# Pinned to the venv's versions; pip matches the tags of the GPU machine.
for package in ml-collections tensorboardX; do
  VERSION=$("$PY" -c "from importlib import metadata; print(metadata.version('$package'))")
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d "$CARRY/wheels" "$package==$VERSION"
done
DATA=${CNNJAX_DATA_DIR:-/usr/share/datasets/fashion-mnist}
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
         t10k-labels-idx1-ubyte.gz; do
  cp "$DATA/$f" "$CARRY/fashion-mnist/$f"
done
ls -l "$CARRY"/wheels "$CARRY"/fashion-mnist
du -sh "$CARRY"
