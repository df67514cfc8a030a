"""Train-step throughput of a config's model, in images per second (a benchmark, not a test).

Measures, on random data of the config's shape and the config's global batch: (1) the train step
alone, called back to back on one batch already on the devices; (2) the same step fed by cnnjax's
batching and prefetch thread with on-device metric sums, as the training loop runs it.

    python benchmarks/train_step_throughput.py [--config configs/fashion_mnist.py] [--steps 300]
    python benchmarks/train_step_throughput.py --device-counts 1,2,4,8 --parallel sharded,pmap

With --device-counts, each count runs in a fresh process (on a CPU with that many fake devices
via XLA_FLAGS; on a GPU machine the real devices, up to the number present) and one table row is
printed per (count, mode). Fake CPU devices share the same cores, so on a CPU these rows show the
overhead of splitting a step, not a speed-up. The process runs as launch.py runs it: glibc's
malloc with transparent huge pages (`cnnjax.host_memory`) unless GLIBC_TUNABLES names
`glibc.malloc.hugetlb`, and XLA:CPU without YNNPACK fusions unless XLA_FLAGS sets
`--xla_cpu_experimental_ynn_fusion_type` itself.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

from cnnjax import xla_cpu  # Imports no JAX.
from machine import machine_description

if __name__ == '__main__':
  xla_cpu.run_as_launched()  # Before anything starts JAX.


def load_config(path: str):
  spec = importlib.util.spec_from_file_location('benchmark_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def measure(config_path: str, mode: str, steps: int, repeats: int) -> dict:
  """Runs in this process: images/s of the step alone and of the fed loop."""
  import jax  # pylint: disable=import-outside-toplevel
  from cnnjax import data as data_lib  # pylint: disable=import-outside-toplevel
  from cnnjax.training.losses import get_objective  # pylint: disable=import-outside-toplevel
  from cnnjax.models import create_model  # pylint: disable=import-outside-toplevel
  from cnnjax.training.optimizers import create_optimizer  # pylint: disable=import-outside-toplevel
  from cnnjax.training.parallel import create_parallel  # pylint: disable=import-outside-toplevel
  from cnnjax.training.steps import add_metrics, summarize  # pylint: disable=import-outside-toplevel
  from cnnjax.training.train_state import create_train_state  # pylint: disable=import-outside-toplevel

  config = load_config(config_path)
  batch_size = config.train.batch_size
  shape = tuple(config.model.input_shape)
  rng = np.random.default_rng(0)
  n = batch_size * steps
  dataset = data_lib.ArrayDataset(rng.random((n, *shape), dtype=np.float32),
                                  rng.integers(0, 2, n).astype(np.int32))
  parallel = create_parallel(mode, get_objective(config.train.loss))
  parallel.check_batch_size(batch_size, 'train.batch_size')
  model = create_model(config.model)
  state = parallel.place_state(create_train_state(
      model, create_optimizer(config.train, steps), shape, seed=0))
  batch = parallel.place_batch(next(data_lib.batches(dataset, batch_size)))
  state, sums = parallel.train_step(state, batch)  # Compiles.
  jax.block_until_ready(sums)

  step_only, loop = [], []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      state, sums = parallel.train_step(state, batch)
    jax.block_until_ready(sums)
    step_only.append(n / (time.perf_counter() - start))

    start = time.perf_counter()
    total = None
    for b in data_lib.prefetch(data_lib.batches(dataset, batch_size, shuffle=True,
                                                drop_remainder=True)):
      state, sums = parallel.train_step(state, parallel.place_batch(b))
      total = add_metrics(total, sums)
    summarize(total)
    loop.append(n / (time.perf_counter() - start))
  return {'mode': parallel.mode, 'devices': parallel.num_devices,
          'device_kind': jax.devices()[0].device_kind, 'model': config.model.name,
          'batch_size': batch_size, 'step_only': step_only, 'training_loop': loop,
          'jax': jax.__version__}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/fashion_mnist.py')
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--parallel', default='single',
                      help='comma-separated modes: single, sharded, pmap')
  parser.add_argument('--device-counts', default='',
                      help='comma-separated device counts, each measured in a fresh process')
  parser.add_argument('--json', action='store_true', help='print one JSON result and exit')
  args = parser.parse_args()

  if args.json:
    print(json.dumps(measure(args.config, args.parallel, args.steps, args.repeats)))
    return

  header = {**machine_description(), 'config': args.config}
  print(json.dumps(header))
  print(f"{'devices':>7}  {'mode':8}  {'step only (images/s)':>22}  {'training loop (images/s)':>26}")
  counts = [int(c) for c in args.device_counts.split(',') if c] or [None]
  for count in counts:
    env = dict(os.environ)
    if count is not None:
      env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                          f' --xla_force_host_platform_device_count={count}').strip()
    for mode in args.parallel.split(','):
      if count == 1 and mode != 'single':
        continue
      if count not in (None, 1) and mode == 'single':
        continue
      run = subprocess.run([sys.executable, __file__, '--json', '--config', args.config,
                            '--steps', str(args.steps), '--repeats', str(args.repeats),
                            '--parallel', mode], capture_output=True, text=True, env=env)
      if run.returncode:
        print(f'{count or "-":>7}  {mode:8}  failed: {run.stderr.strip().splitlines()[-1]}')
        continue
      result = json.loads(run.stdout.strip().splitlines()[-1])
      print(f"{result['devices']:>7}  {result['mode']:8}  "
            f"{np.median(result['step_only']):>22,.0f}  {np.median(result['training_loop']):>26,.0f}"
            f"   ({result['device_kind']}, {result['model']}, batch {result['batch_size']}, "
            f"jax {result['jax']})")


if __name__ == '__main__':
  main()
