"""Pure train and eval steps: (state, batch) -> (state, metric sums).

A batch is `{'image': (B, H, W, C), 'label': (B,), 'mask': (B,)}`; the mask is 0 on the padding
rows of a last, partial batch, so they count neither in the loss nor in the metrics. Metrics are
returned as sums (`loss`, `correct`, `count`) that stay on the device and add up over an epoch;
the host reads them once per epoch (or when a progress bar asks), never per step.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from cnnjax.losses import Objective
from cnnjax.train_state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

DROPOUT = 0  # `TrainState.step_key` purpose of the dropout key.


def _metric_sums(objective: Objective, logits: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
  mask = batch['mask']
  losses = objective.loss(logits, batch['label'])
  sums = {
      'loss': jnp.sum(losses * mask),
      'correct': jnp.sum(objective.correct(logits, batch['label']) * mask),
      'count': jnp.sum(mask),
  }
  return sums['loss'] / jnp.maximum(sums['count'], 1.0), sums


def train_step(state: TrainState, batch: Batch, *, objective: Objective) -> tuple[TrainState, Metrics]:
  """One optimizer step on the batch's mean loss; dropout keys come from the step number."""
  rngs = {'dropout': state.step_key(DROPOUT)}

  def loss_fn(params):
    logits = state.apply_fn({'params': params}, batch['image'], train=True, rngs=rngs)
    return _metric_sums(objective, logits, batch)

  (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return state.apply_gradients(grads=grads), sums


def eval_step(state: TrainState, batch: Batch, *, objective: Objective) -> Metrics:
  logits = state.apply_fn({'params': state.params}, batch['image'], train=False)
  return _metric_sums(objective, logits, batch)[1]


def jit_steps(objective: Objective) -> tuple[Callable, Callable]:
  """The jit-compiled train step (donating the old state's buffers) and eval step."""
  train = jax.jit(functools.partial(train_step, objective=objective), donate_argnums=0)
  evaluate = jax.jit(functools.partial(eval_step, objective=objective))
  return train, evaluate


def add_metrics(total: Metrics | None, sums: Metrics) -> Metrics:
  """Accumulates metric sums on the device (asynchronously: no host sync)."""
  return sums if total is None else jax.tree.map(jnp.add, total, sums)


def summarize(sums: Metrics) -> dict[str, float]:
  """Host-side mean loss and accuracy from metric sums (this is where the host syncs)."""
  sums = jax.device_get(sums)
  count = max(float(sums['count']), 1.0)
  return {'loss': float(sums['loss']) / count, 'accuracy': float(sums['correct']) / count}
