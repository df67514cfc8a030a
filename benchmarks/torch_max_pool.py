"""PyTorch's small convnet and its 2x2 max pooling on random and on real images (a benchmark).

In the speed suite PyTorch trained the small convnet (workload (a)) faster on real Fashion-MNIST
than on the suite's uniform random images. This measures the suspect, in one process with the
cases interleaved: forward and backward of `torch.nn.functional.max_pool2d(x, 2)` on what the
first pooling sees, ReLU(conv1(images)) (64 x 32 x 26 x 26; conv1 with PyTorch's default
initialization, seeded), for the suite's uniform [0, 1) images and for the first 64 Fashion-MNIST
training images (in [0, 1]), and on uniform noise of that shape itself; then the whole train step
of the speed suite's PyTorch small convnet (RMSprop, cross-entropy; one model per case, the same
initialization) on a batch of each. Each figure is the best round's mean milliseconds: other jobs
on a shared machine only ever slow a round down.

    python benchmarks/torch_max_pool.py [--rounds 30] [--iterations 20] [--out FILE.json]

Prints, and writes with --out, one JSON object with the machine, the load average before and
after, the versions and the timings.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

from cnnjax.data.idx import FASHION_MNIST_DIR, load_idx_split
from machine import machine_description, report


def small_convnet() -> torch.nn.Module:
  """The speed suite's PyTorch small convnet (benchmarks/speed_workers.py), seeded."""
  torch.manual_seed(0)
  nn = torch.nn
  return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
                       nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10))


def pooled_input(images: torch.Tensor) -> torch.Tensor:
  """ReLU(conv1(images)): what the small convnet's first max pooling is given."""
  with torch.no_grad():
    return torch.relu(small_convnet()[0](images)).contiguous()


def pool_ms(x: torch.Tensor, iterations: int) -> float:
  """Mean milliseconds of max_pool2d(x, 2) forward and backward."""
  start = time.perf_counter()
  for _ in range(iterations):
    y = torch.nn.functional.max_pool2d(x, 2)
    torch.autograd.grad(y, x, torch.ones_like(y))
  return (time.perf_counter() - start) / iterations * 1e3


def step_ms(model_and_optimizer, images: torch.Tensor, labels: torch.Tensor,
            iterations: int) -> float:
  """Mean milliseconds of one RMSprop train step of the small convnet on this batch."""
  model, optimizer = model_and_optimizer
  start = time.perf_counter()
  for _ in range(iterations):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
  return (time.perf_counter() - start) / iterations * 1e3


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--rounds', type=int, default=30)
  parser.add_argument('--iterations', type=int, default=20)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  load_start = os.getloadavg()
  real, labels = load_idx_split(FASHION_MNIST_DIR, 'train')
  batches = {
      'uniform random images': np.random.default_rng(0).random(
          (args.batch, 28, 28, 1), dtype=np.float32),
      'Fashion-MNIST images': real[:args.batch].astype(np.float32) / 255.0}
  batches = {name: torch.from_numpy(b).permute(0, 3, 1, 2).contiguous()
             for name, b in batches.items()}
  labels = torch.from_numpy(labels[:args.batch].astype(np.int64))
  pool_inputs = {f'ReLU(conv1) of {name}': pooled_input(b) for name, b in batches.items()}
  pool_inputs['uniform noise [0, 1) itself'] = torch.rand(
      next(iter(pool_inputs.values())).shape, generator=torch.Generator().manual_seed(0))
  pool_inputs = {name: x.requires_grad_(True) for name, x in pool_inputs.items()}
  models = {}
  for name in batches:
    model = small_convnet()
    models[name] = (model, torch.optim.RMSprop(model.parameters(), lr=1e-3))

  pool_best = dict.fromkeys(pool_inputs, float('inf'))
  step_best = dict.fromkeys(batches, float('inf'))
  for x in pool_inputs.values():
    pool_ms(x, 3)  # Warm-up.
  for name, b in batches.items():
    step_ms(models[name], b, labels, 3)
  for _ in range(args.rounds):
    for name, x in pool_inputs.items():
      pool_best[name] = min(pool_best[name], pool_ms(x, args.iterations))
    for name, b in batches.items():
      step_best[name] = min(step_best[name], step_ms(models[name], b, labels, args.iterations))
  result = {
      'command': ' '.join(['python benchmarks/torch_max_pool.py', *sys.argv[1:]]),
      'time': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'machine': machine_description(),
      'load_average_start': [round(v, 2) for v in load_start],
      'load_average_end': [round(v, 2) for v in os.getloadavg()],
      'versions': {'torch': torch.__version__, 'numpy': np.__version__,
                   'threads': torch.get_num_threads()},
      'rounds': args.rounds, 'iterations_per_round': args.iterations,
      'pool_input_shape_nchw': list(next(iter(pool_inputs.values())).shape),
      'pool_input_zero_fraction': {name: round(float((x == 0).float().mean()), 3)
                                   for name, x in pool_inputs.items()},
      'max_pool2d_forward_backward_ms': {name: round(ms, 3) for name, ms in pool_best.items()},
      'small_convnet_train_step_ms': {name: round(ms, 3) for name, ms in step_best.items()},
      'small_convnet_images_per_second': {name: round(args.batch / ms * 1e3)
                                          for name, ms in step_best.items()},
  }
  report(result, args.out)


if __name__ == '__main__':
  main()
