"""Overlapping max pooling on XLA:CPU: `reduce_window` against strided taps (a benchmark).

The pooling of ResNet's stem (3x3 windows, stride 2, torch's padding 1) on its input, ReLU'd
normal samples of (batch, 112, 112, 64) in float32, computed three ways in one process, rounds
interleaved, best round's mean milliseconds: XLA's `reduce_window` (`flax.linen.max_pool`; its
gradient a `select_and_scatter`), cnnjax's `pooling.max_pool_taps` (what `layers.MaxPooling2D`
runs on the CPU), and torch's `max_pool2d` (channels-first, as torchvision's ResNet runs it). Each
is timed forward, and forward + gradient of the input (a jitted `jax.vjp`, or torch's autograd).
Then what counts, the whole ResNet18 train step at 224 (`cnnjax.training.steps.train_step`,
RMSprop, random images of the same batch) compiled once with each of the two XLA forms of the stem's
pooling: XLA fuses the pooling's gradient with its neighbours, so the pooling alone does not tell
the step's gain (a variant whose gradient alone took a third of this one's ran no faster in the
step; 2026-11-30, scratch).

    python benchmarks/max_pool_taps.py [--batch 16] [--rounds 10] [--out FILE.json]

Runs XLA as launch.py does (`cnnjax.xla_cpu.run_as_launched`).
"""

import argparse
import os
import sys
import time

from cnnjax import xla_cpu  # Imports no JAX.

if __name__ == '__main__':
  xla_cpu.run_as_launched()

# pylint: disable=wrong-import-position
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch

from cnnjax.config import base_config
from cnnjax.models import create_model, pooling
from cnnjax.training import steps
from cnnjax.training.losses import get_objective
from cnnjax.training.optimizers import create_optimizer
from cnnjax.training.train_state import create_train_state
from machine import machine_description, report

WINDOW, STRIDES, PADDING = (3, 3), (2, 2), ((1, 1), (1, 1))


def mean_ms(fn, iterations: int) -> float:
  start = time.perf_counter()
  for _ in range(iterations):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / iterations * 1e3


def train_steps(batch: int) -> dict:
  """ResNet18's train step, compiled with the stem's pooling as `max_pool_taps` and as
  `reduce_window` (the function `layers.MaxPooling2D` calls replaced while the step traces)."""
  model = create_model(ml_collections.ConfigDict({'name': 'resnet18'}))
  objective = get_objective('sparse_categorical_crossentropy')
  images = jax.random.uniform(jax.random.key(2), (batch, 224, 224, 3))
  data = {'image': images, 'label': jnp.arange(batch) % 1000, 'mask': jnp.ones(batch)}
  cases, taps = {}, pooling.max_pool_taps
  for name, form in (('max_pool_taps', taps),
                     ('reduce_window', lambda x, w, s, p: nn.max_pool(x, w, s, padding=p))):
    state = create_train_state(model, create_optimizer(base_config().train, 10),
                               images.shape[1:], seed=0)
    step = jax.jit(functools.partial(steps.train_step, objective=objective))
    pooling.max_pool_taps = form
    try:
      step.lower(state, data)  # Traced here, with this form.
      jax.block_until_ready(step(state, data))
    finally:
      pooling.max_pool_taps = taps
    cases[f'resnet18 train step, stem pooling as {name}'] = (
        lambda step=step, state=state: step(state, data)[1])
  return cases


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--rounds', type=int, default=6)
  parser.add_argument('--iterations', type=int, default=5)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  load_start = os.getloadavg()
  torch.set_num_threads(os.cpu_count())
  x = jax.nn.relu(jax.random.normal(jax.random.key(0), (args.batch, 112, 112, 64)))
  forms = {'reduce_window': lambda x: nn.max_pool(x, WINDOW, STRIDES, padding=PADDING),
           'max_pool_taps': lambda x: pooling.max_pool_taps(x, WINDOW, STRIDES, PADDING)}
  y = forms['reduce_window'](x)
  cotangent = jax.random.normal(jax.random.key(1), y.shape)
  cases = {}
  for name, form in forms.items():
    forward, gradient = jax.jit(form), jax.jit(lambda x, f=form: jax.vjp(f, x)[1](cotangent)[0])
    np.testing.assert_array_equal(forward(x), y)
    cases[f'{name} forward'] = lambda f=forward: f(x)
    cases[f'{name} forward+gradient'] = lambda g=gradient: g(x)
  tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_()
  tdy = torch.from_numpy(np.asarray(cotangent).transpose(0, 3, 1, 2).copy())

  def torch_forward():
    with torch.no_grad():
      return torch.nn.functional.max_pool2d(tx, 3, 2, 1)

  def torch_gradient():
    return torch.autograd.grad(torch.nn.functional.max_pool2d(tx, 3, 2, 1), tx, tdy)[0]

  cases['torch max_pool2d forward'] = torch_forward
  cases['torch max_pool2d forward+gradient'] = torch_gradient
  cases.update(train_steps(args.batch))
  best = {name: float('inf') for name in cases}
  for fn in cases.values():
    mean_ms(fn, 2)  # Compiles and warms up.
  for _ in range(args.rounds):
    for name, fn in cases.items():
      best[name] = min(best[name], mean_ms(fn, args.iterations))
  report({
      'command': ' '.join(['python benchmarks/max_pool_taps.py', *sys.argv[1:]]),
      'time': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'machine': machine_description(),
      'load_average_start': [round(v, 2) for v in load_start],
      'load_average_end': [round(v, 2) for v in os.getloadavg()],
      'versions': {'jax': jax.__version__, 'torch': torch.__version__},
      'input_nhwc': list(x.shape), 'window': WINDOW, 'strides': STRIDES, 'padding': PADDING,
      'best_mean_ms': {name: round(ms, 2) for name, ms in best.items()},
  }, args.out)


if __name__ == '__main__':
  main()
