"""Train-step throughput of a config's model, in images per second (a benchmark, not a test).

Measures, on random data of the config's shape: (1) the jitted train step alone, called back to
back; (2) the same step fed by cnnjax's batching and prefetch thread, with on-device metric sums,
as the training loop runs it. Prints one line per measurement with the machine and versions.

    python benchmarks/train_step_throughput.py [--config configs/fashion_mnist.py] [--steps 300]
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import time

import flax
import jax
import numpy as np
import optax

from cnnjax import data as data_lib
from cnnjax.losses import get_objective
from cnnjax.models import create_model
from cnnjax.optimizers import create_optimizer
from cnnjax.steps import add_metrics, jit_steps, summarize
from cnnjax.train_state import create_train_state


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def load_config(path: str):
  spec = importlib.util.spec_from_file_location('benchmark_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/fashion_mnist.py')
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  config = load_config(args.config)
  batch_size = config.train.batch_size
  shape = tuple(config.model.input_shape)
  rng = np.random.default_rng(0)
  n = batch_size * args.steps
  dataset = data_lib.ArrayDataset(rng.random((n, *shape), dtype=np.float32),
                                  rng.integers(0, 2, n).astype(np.int32))
  model = create_model(config.model)
  tx = create_optimizer(config.train, args.steps)
  state = create_train_state(model, tx, shape, seed=0)
  train_step, _ = jit_steps(get_objective(config.train.loss))

  batch = next(data_lib.batches(dataset, batch_size))
  batch = jax.device_put(batch)
  state, sums = train_step(state, batch)  # compile
  jax.block_until_ready(sums)

  results = {'step_only': [], 'training_loop': []}
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.steps):
      state, sums = train_step(state, batch)
    jax.block_until_ready(sums)
    results['step_only'].append(n / (time.perf_counter() - start))

    start = time.perf_counter()
    total = None
    for b in data_lib.prefetch(data_lib.batches(dataset, batch_size, shuffle=True,
                                                drop_remainder=True)):
      state, sums = train_step(state, b)
      total = add_metrics(total, sums)
    summarize(total)
    results['training_loop'].append(n / (time.perf_counter() - start))

  info = {
      'date': datetime.date.today().isoformat(),
      'machine': f'{cpu_model()}, {os.cpu_count()} cores', 'platform': platform.platform(),
      'jax_device': jax.devices()[0].device_kind,
      'versions': {'jax': jax.__version__, 'flax': flax.__version__, 'optax': optax.__version__},
      'model': config.model.name, 'batch_size': batch_size, 'steps': args.steps,
  }
  print(json.dumps(info))
  for name, values in results.items():
    print(f'{name:14s} median {np.median(values):8,.0f} images/s  '
          f'(runs: {", ".join(f"{v:,.0f}" for v in values)})')


if __name__ == '__main__':
  main()
