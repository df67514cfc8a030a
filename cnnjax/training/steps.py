"""Pure train and eval steps: (state, batch) -> (state, metric sums).

A batch is `{'image': (B, H, W, C), 'label': (B,), 'mask': (B,)}`; the mask is 0 on the padding
rows of a last, partial batch, so they count neither in the loss nor in the metrics. Metrics are
returned as sums (`loss`, `correct`, `count`) that stay on the device and add up over an epoch;
the host reads them once per epoch (or when a progress bar asks), never per step.

The same body serves every parallel wrapper (`cnnjax.training.parallel`): with `axis_name` set (inside
pmap) the gradient and metric sums are summed over the devices before the gradient is divided by
the global example count, so the update is that of the global batch's mean loss.

Parameters listed in `TrainState.frozen` (from `train.param_groups`) are constants of the step:
the gradient is taken with respect to the trainable ones only, and they alone are updated.

BatchNorm (`flax.linen.BatchNorm`): a training step normalizes with the batch's statistics and
updates the moving averages in `TrainState.batch_stats` (the model is applied with
`mutable=['batch_stats']`); evaluation normalizes with the moving averages. Under the sharded jit
the statistics are those of the global batch (XLA reduces across the mesh); under pmap the model
is built with `axis_name` (`Parallel.adapt_model`), so `BatchNorm` averages them over the devices.
A BatchNorm layer whose parameters are all frozen runs in inference mode even in training and
never updates its statistics (Keras' rule for `trainable=False`; PyTorch's
`requires_grad=False` alone would keep updating them): `frozen_batch_norm` intercepts its call
and sets `use_running_average=True`, so models only have to pass `use_running_average` as a call
argument, `bn(x, use_running_average=not train)`, as cnnjax's models do.

With an `Augmenter` (`cnnjax.augment`), a training batch is augmented inside the step, on the
device: example i of the global batch gets the key `fold_in(step key, i)` (`cnnjax.rng`), so the
transforms do not depend on the device count and a resumed run draws the same ones. Evaluation
batches get the augmenter's fixed preprocessing only (torchvision's Normalize), never a random
change.

Evaluation uses `TrainState.eval_variables()`: the moving average of the variables when
`train.ema_decay` > 0 (the train step updates it after each optimizer update), else the variables
themselves. With test-time augmentation (`cnnjax.training.test_time`) its logits are the average
over the views.
"""

import contextlib
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.augment import Augmenter
from cnnjax.training.losses import Objective
from cnnjax.training.test_time import TestTimeAugmentation
from cnnjax.rng import example_keys
from cnnjax.training.train_state import TrainState, join_params

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

DROPOUT = 0  # `TrainState.step_key` purposes: the dropout key,
AUGMENT = 1  # and the augmentation key.


def _metric_sums(objective: Objective, logits: jax.Array, batch: Batch) -> Metrics:
  mask = batch['mask']
  return {
      'loss': jnp.sum(objective.loss(logits, batch['label']) * mask),
      'correct': jnp.sum(objective.correct(logits, batch['label']) * mask),
      'count': jnp.sum(mask),
  }


def _batch_norm_is_frozen(module: nn.BatchNorm, frozen: frozenset[str]) -> bool:
  """Whether every parameter of a BatchNorm layer is frozen (one without parameters never is)."""
  prefix = '/'.join(module.path)
  own = [f'{prefix}/{name}' for name, present in (('scale', module.use_scale),
                                                  ('bias', module.use_bias)) if present]
  return bool(own) and all(path in frozen for path in own)


@contextlib.contextmanager
def frozen_batch_norm(frozen: Sequence[str]):
  """Within it, BatchNorm layers whose parameters are all in `frozen` run in inference mode.

  Works for any model whose BatchNorm layers take `use_running_average` as a call argument (the
  keyword or the second positional argument): the call of a frozen layer gets True there.
  """
  frozen = frozenset(frozen)

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name == '__call__' and isinstance(module, nn.BatchNorm)
        and _batch_norm_is_frozen(module, frozen)):
      if len(args) > 1:
        args = (args[0], True, *args[2:])
      else:
        kwargs = {**kwargs, 'use_running_average': True}
    return next_fun(*args, **kwargs)

  if not frozen:
    yield
    return
  with nn.intercept_methods(interceptor):
    yield


def train_images(state: TrainState, images: jax.Array, augment: Augmenter | None) -> jax.Array:
  """The training batch the model sees: augmented per example when there is an augmenter."""
  if augment is None:
    return images
  return augment.train_images(example_keys(state.step_key(AUGMENT), images.shape[0]), images)


def train_step(state: TrainState, batch: Batch, *, objective: Objective,
               augment: Augmenter | None = None,
               axis_name: str | None = None) -> tuple[TrainState, Metrics]:
  """One optimizer step on the global batch's mean loss; random keys come from the step number."""
  rngs = {'dropout': state.step_key(DROPOUT)}
  images = train_images(state, batch['image'], augment)
  trainable, fixed = state.trainable_params() if state.frozen else (state.params, {})

  def loss_sum(trainable):
    variables = state.variables(join_params(trainable, fixed) if state.frozen else trainable)
    with frozen_batch_norm(state.frozen):
      if state.batch_stats:
        logits, updates = state.apply_fn(variables, images, train=True, rngs=rngs,
                                         mutable=['batch_stats'])
        batch_stats = updates['batch_stats']
      else:
        logits, batch_stats = state.apply_fn(variables, images, train=True, rngs=rngs), {}
    sums = _metric_sums(objective, logits, batch)
    return sums['loss'], (sums, batch_stats)

  # Only the trainable parameters are differentiated: the frozen ones are constants here, so
  # nothing is back-propagated below the lowest trainable layer and no gradient is all-reduced
  # for them.
  (_, (sums, batch_stats)), grads = jax.value_and_grad(loss_sum, has_aux=True)(trainable)
  if axis_name is not None:
    grads, sums = jax.lax.psum((grads, sums), axis_name)
  count = jnp.maximum(sums['count'], 1.0)
  grads = jax.tree.map(lambda g: g / count, grads)
  state = state.apply_trainable_gradients(grads).replace(batch_stats=batch_stats)
  return state.update_ema(), sums


def eval_step(state: TrainState, batch: Batch, *, objective: Objective,
              augment: Augmenter | None = None, tta: TestTimeAugmentation | None = None,
              axis_name: str | None = None) -> Metrics:
  """Metric sums of a batch with the evaluation variables (the moving average, if kept)."""
  variables = state.eval_variables()

  def apply(images):
    images = images if augment is None else augment.eval_images(images)
    return state.apply_fn(variables, images, train=False)

  logits = apply(batch['image']) if tta is None else tta.logits(apply, batch['image'])
  sums = _metric_sums(objective, logits, batch)
  return sums if axis_name is None else jax.lax.psum(sums, axis_name)


def add_metrics(total: Metrics | None, sums: Metrics) -> Metrics:
  """Accumulates metric sums on the device (asynchronously: no host sync)."""
  return sums if total is None else jax.tree.map(jnp.add, total, sums)


def summarize(sums: Metrics) -> dict[str, float]:
  """Host-side mean loss and accuracy from metric sums (this is where the host syncs)."""
  sums = jax.device_get(sums)
  count = max(float(sums['count']), 1.0)
  return {'loss': float(sums['loss']) / count, 'accuracy': float(sums['correct']) / count}
