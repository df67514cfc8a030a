"""BatchNorm's per-channel sums on XLA:CPU: reductions against matrix products (a benchmark).

`layers.BatchNorm` computes the sums of its training mode (the batch's mean and mean square
forward, the sums of dy and dy * x_hat backward) as products with a vector of ones
(`cnnjax.models.normalization`) instead of the reductions over (N, H, W) that Flax's code
compiles to. This measures, in one process and interleaved:

- the per-channel sums alone (`jnp.sum(x, axis=(0, 1, 2))` against `normalization.channel_sums`)
  of float32 NHWC activations of ResNet18's shapes at 224 (batch 16) and of the speed run's
  bn_convnet (batch 64);
- the jitted train step (SGD with momentum, softmax cross-entropy, random batches) of each model
  named by `--models`, with `layers.BATCH_NORM_SUMS_AS_PRODUCTS` off (Flax's code) and on.

    python benchmarks/batch_norm_sums.py [--models resnet18:224:16,bn_convnet:28:64] [--out F]

The process runs as launch.py runs it (huge pages, XLA:CPU without YNNPACK fusions).
"""

import argparse
import os
import time

from cnnjax import xla_cpu  # Imports no JAX.

if __name__ == '__main__':
  xla_cpu.run_as_launched()  # Before anything starts JAX.

# pylint: disable=wrong-import-position
import jax
import jax.numpy as jnp
import ml_collections
import optax

from cnnjax.models import create_model, layers, normalization
from machine import machine_description, report

SUM_SHAPES = [(16, 112, 112, 64), (16, 56, 56, 64), (16, 28, 28, 128), (16, 14, 14, 256),
              (16, 7, 7, 512), (64, 14, 14, 24), (64, 7, 7, 96)]


def best_ms(fn, *args, repeats):
  jax.block_until_ready(fn(*args))  # Compiles.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return min(times) * 1e3


def sums(repeats):
  reduce = jax.jit(lambda x: jnp.sum(x, axis=(0, 1, 2)))
  product = jax.jit(lambda x: normalization.channel_sums(x.reshape(-1, x.shape[-1])))
  rows = []
  for shape in SUM_SHAPES:
    x = jax.random.normal(jax.random.key(0), shape)
    rows.append({'shape': list(shape), 'megabytes': round(x.nbytes / 1e6, 1),
                 'reduce_ms': round(best_ms(reduce, x, repeats=repeats), 3),
                 'product_ms': round(best_ms(product, x, repeats=repeats), 3)})
    print(rows[-1], flush=True)
  return rows


def train_step(model, batch_size, size, channels):
  """A jitted SGD step of `model` and its first state, on one random batch."""
  images = jax.random.normal(jax.random.key(0), (batch_size, size, size, channels))
  labels = jnp.arange(batch_size) % 10
  variables = model.init(jax.random.key(1), images[:1], train=False)
  optimizer = optax.sgd(0.01, momentum=0.9)

  @jax.jit
  def step(state):
    params, batch_stats, opt_state = state

    def loss(p):
      logits, updates = model.apply({'params': p, 'batch_stats': batch_stats}, images,
                                    train=True, mutable=['batch_stats'])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

    (_, updates), grads = jax.value_and_grad(loss, has_aux=True)(params)
    changes, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, changes), updates['batch_stats'], opt_state

  state = (variables['params'], variables['batch_stats'], optimizer.init(variables['params']))
  return step, state


def steps(spec, rounds):
  name, size, batch_size = spec.split(':')
  size, batch_size = int(size), int(batch_size)
  channels = 1 if size <= 32 else 3
  model = create_model(ml_collections.ConfigDict({'name': name, 'num_outputs': 10}))
  compiled = {}
  for products in (False, True):
    layers.BATCH_NORM_SUMS_AS_PRODUCTS = products  # Read while the step is traced.
    step, state = train_step(model, batch_size, size, channels)
    compiled[products] = step, jax.block_until_ready(step(state))
  layers.BATCH_NORM_SUMS_AS_PRODUCTS = True
  times = {False: [], True: []}
  for _ in range(rounds):  # Interleaved.
    for products, (step, state) in compiled.items():
      start = time.perf_counter()
      jax.block_until_ready(step(state))
      times[products].append(time.perf_counter() - start)
  row = {'model': name, 'size': size, 'batch': batch_size}
  for products, label in ((False, 'flax_reductions'), (True, 'products')):
    best = min(times[products])
    row[label] = {'best_ms': round(best * 1e3, 1),
                  'median_ms': round(sorted(times[products])[rounds // 2] * 1e3, 1),
                  'images_per_second': round(batch_size / best, 1)}
  row['speedup_best'] = round(row['flax_reductions']['best_ms'] / row['products']['best_ms'], 2)
  print(row, flush=True)
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--models', default='resnet18:224:16,bn_convnet:28:64')
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--rounds', type=int, default=8)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  load_start = os.getloadavg()
  result = {'command': 'python benchmarks/batch_norm_sums.py ' + ' '.join(
                f'--{k}={v}' for k, v in vars(args).items() if v),
            'time': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            'machine': machine_description(),
            'versions': {'jax': jax.__version__},
            'xla_flags': os.environ.get('XLA_FLAGS', ''),
            'sums': sums(args.repeats),
            'train_steps': [steps(spec, args.rounds) for spec in args.models.split(',')]}
  result['load_average_start'] = [round(v, 2) for v in load_start]
  result['load_average_end'] = [round(v, 2) for v in os.getloadavg()]
  report(result, args.out)


if __name__ == '__main__':
  main()
