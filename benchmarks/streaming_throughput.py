"""Streaming input throughput in images per second, and peak host memory (a benchmark, not a test).

Writes (once) a folder of random-noise JPEGs in the image-folder layout (default 20,000 photos of
256x256 in two classes; noise is the hardest case for the JPEG decoder), then times one epoch of
decode + bilinear resize to 224x224 + batching:

- cnnjax's streaming pipeline (`cnnjax.data.streaming`, grain worker processes) with each worker
  count asked for;
- side by side, PyTorch's DataLoader with the same worker counts, its dataset decoding each file
  with Pillow and resizing with the same bilinear filter (`Image.open(...).convert('RGB').resize`).

Each measurement runs in a fresh process, so its peak resident memory (the process and its
workers, `ru_maxrss`) is its own; it should not grow with the folder's size, since nothing holds
more than a few batches. Prints one line per measurement and a header with the date, machine and
versions.

With --train-steps N, each worker count also trains the 150x150 cats-vs-dogs convnet
(configs/cats_vs_dogs_scratch.py, batch 20) for N steps on streamed 150x150 batches, as the
training loop feeds it (prefetch thread, one jitted step per batch), and reports the share of the
time spent waiting for the next batch (the first, compiling step excluded).

    python benchmarks/streaming_throughput.py --dir /tmp/stream_bench [--count 20000] \
      [--size 256] [--workers 1,2] [--batch 64] [--train-steps 200] [--out FILE.json]

With --out, the lines are also written as one JSON object with the machine, versions and load.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
from PIL import Image


def write_folder(root, count, size):
  """Writes `count` noise JPEGs of size x size into root/train/{a,b}/ unless they are there."""
  done = os.path.join(root, f'.complete-{count}-{size}')
  if os.path.exists(done):
    return
  rng = np.random.default_rng(0)
  for i in range(count):
    folder = os.path.join(root, 'train', 'ab'[i % 2])
    os.makedirs(folder, exist_ok=True)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(os.path.join(folder, f'{i:06d}.jpg'), quality=90)
  open(done, 'w').close()  # pylint: disable=consider-using-with


def peak_memory_mb():
  own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  return (own + children) / 1024  # Linux reports kilobytes.


def run_cnnjax(root, workers, batch):
  from cnnjax.data import streaming  # pylint: disable=import-outside-toplevel
  listed, _ = streaming.list_folder_splits(root, {'train': 'train'}, image_size=(224, 224),
                                           color_mode='rgb', strict=False)
  dataset = streaming.StreamingDataset(listed['train'][0], pixel_scale=255.0, workers=workers)
  start = time.perf_counter()
  images = 0
  for item in dataset.batches(batch, shuffle=True, seed=0, epoch=1, drop_remainder=True):
    images += len(item['label'])
  return images, time.perf_counter() - start


class _PillowFolder:
  """A map-style torch dataset: file i decoded and resized with Pillow."""

  def __init__(self, paths):
    self.paths = paths

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    with Image.open(self.paths[index]) as image:
      array = np.asarray(image.convert('RGB').resize((224, 224), Image.Resampling.BILINEAR))
    return array, index % 2


def run_torch(root, workers, batch):
  import torch  # pylint: disable=import-outside-toplevel
  paths = sorted(os.path.join(parent, name) for parent, _, names in os.walk(
      os.path.join(root, 'train')) for name in names)
  loader = torch.utils.data.DataLoader(_PillowFolder(paths), batch_size=batch, shuffle=True,
                                       num_workers=workers, drop_last=True,
                                       generator=torch.Generator().manual_seed(0))
  start = time.perf_counter()
  images = 0
  for pixels, _ in loader:
    images += len(pixels)
  return images, time.perf_counter() - start


def run_training(root, workers, steps):
  """Trains the 150x150 convnet on streamed batches; returns (waiting seconds, total seconds)."""
  # pylint: disable=import-outside-toplevel
  import jax
  from cnnjax import data as data_lib
  from cnnjax.data import streaming
  from cnnjax.models import create_model
  from cnnjax.training.losses import get_objective
  from cnnjax.training.optimizers import create_optimizer
  from cnnjax.training.parallel import create_parallel
  from cnnjax.training.train_state import create_train_state
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
  from configs import cats_vs_dogs_scratch
  config = cats_vs_dogs_scratch.get_config()
  batch = config.train.batch_size
  listed, _ = streaming.list_folder_splits(root, {'train': 'train'}, image_size=(150, 150),
                                           color_mode='rgb', strict=False)
  dataset = streaming.StreamingDataset(listed['train'][0], pixel_scale=255.0, workers=workers)
  parallel = create_parallel('single', get_objective(config.train.loss))
  state = parallel.place_state(create_train_state(
      create_model(config.model), create_optimizer(config.train, steps), (150, 150, 3), seed=0))
  batches = data_lib.prefetch(dataset.batches(batch, shuffle=True, seed=0, epoch=1,
                                              drop_remainder=True))
  state, sums = parallel.train_step(state, parallel.place_batch(next(batches)))  # Compiles.
  jax.block_until_ready(sums)
  waiting, start = 0.0, time.perf_counter()
  for _ in range(steps):
    asked = time.perf_counter()
    item = next(batches)
    waiting += time.perf_counter() - asked
    state, sums = parallel.train_step(state, parallel.place_batch(item))
    # One step at a time, so the wait is not hidden behind steps queued on the device.
    jax.block_until_ready(sums)
  batches.close()
  return waiting, time.perf_counter() - start


def measure(kind, root, workers, batch, train_steps):
  """Runs one measurement in this process; prints it as JSON."""
  if kind == 'train':
    waiting, seconds = run_training(root, workers, train_steps)
    print(json.dumps({'waiting': waiting, 'seconds': seconds, 'peak_mb': peak_memory_mb()}))
    return
  images, seconds = {'cnnjax': run_cnnjax, 'torch': run_torch}[kind](root, workers, batch)
  print(json.dumps({'kind': kind, 'workers': workers, 'images': images, 'seconds': seconds,
                    'peak_mb': peak_memory_mb()}))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--dir', required=True, help='where the JPEG folder is (or is written)')
  parser.add_argument('--count', type=int, default=20000)
  parser.add_argument('--size', type=int, default=256)
  parser.add_argument('--workers', default='1,2')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--train-steps', type=int, default=0,
                      help='also train the 150x150 convnet this many steps per worker count')
  parser.add_argument('--out', default='', help='also write the results here as JSON')
  parser.add_argument('--measure', nargs=2, metavar=('KIND', 'WORKERS'), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.measure:
    measure(args.measure[0], args.dir, int(args.measure[1]), args.batch, args.train_steps)
    return
  write_folder(args.dir, args.count, args.size)
  import PIL  # pylint: disable=import-outside-toplevel
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  from machine import machine_description, report  # pylint: disable=import-outside-toplevel
  results = {'command': ' '.join(['python benchmarks/streaming_throughput.py', *sys.argv[1:]]),
             'machine': machine_description(), 'load_average_start': os.getloadavg(),
             'versions': {p: metadata.version(p) for p in ('grain', 'torch', 'pillow', 'jax')},
             'photos': args.count, 'photo_size': args.size, 'batch': args.batch,
             'measurements': []}
  print(f'# {datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, {os.cpu_count()} CPU(s), '
        f'Python {platform.python_version()}, Pillow {PIL.__version__}; {args.count} JPEGs of '
        f'{args.size}x{args.size} -> 224x224, batch {args.batch}')
  for workers in (int(w) for w in args.workers.split(',')):
    for kind in ('cnnjax', 'torch') + (('train',) if args.train_steps else ()):
      out = subprocess.run([sys.executable, __file__, '--dir', args.dir, '--batch',
                            str(args.batch), '--train-steps', str(args.train_steps),
                            '--measure', kind, str(workers)],
                           capture_output=True, text=True, check=True)
      result = json.loads(out.stdout.strip().splitlines()[-1])
      results['measurements'].append({'kind': kind, 'workers': workers, **result})
      if kind == 'train':
        print(f"train   {workers} worker(s): {100 * result['waiting'] / result['seconds']:.1f}% of "
              f"{args.train_steps} steps of the 150x150 convnet ({result['seconds']:.1f} s) "
              f"waiting for data, peak memory {result['peak_mb']:.0f} MB", flush=True)
        continue
      print(f"{kind:7s} {workers} worker(s): {result['images'] / result['seconds']:8.0f} images/s "
            f"({result['images']} in {result['seconds']:.1f} s), peak memory "
            f"{result['peak_mb']:.0f} MB", flush=True)
  results['load_average_end'] = os.getloadavg()
  if args.out:
    report(results, args.out)


if __name__ == '__main__':
  main()
