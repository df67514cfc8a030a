"""The training state: parameters, BatchNorm statistics, optimizer state, step, random key, frozen set.

A flax `TrainState` (as flax's examples/imagenet extends it) plus

- `batch_stats`, the model's non-trained variables: the moving means and variances of its
  BatchNorm layers (`flax.linen.BatchNorm`), an empty dict for a model without any. The train step
  applies the model with `mutable=['batch_stats']` and stores the updated statistics here; every
  evaluation uses them. `variables()` gives the `{'params', 'batch_stats'}` dict `apply` takes;

- `rng`, the raw key data from which every step derives its dropout key with
  `fold_in(rng, step)`. Keeping the key as plain uint32 data makes the whole state an ordinary
  pytree of arrays that orbax saves and restores as it is, and a resumed run draws the same
  dropout masks as an uninterrupted one;
- `frozen`, the '/'-joined paths of the parameters that do not train (from `train.param_groups`),
  a static field: not saved in checkpoints, part of the jitted step's structure. The train step
  differentiates only the other parameters (`split_params`) and `apply_trainable_gradients`
  returns the frozen ones untouched, bit for bit;
- `ema`, with `train.ema_decay` > 0, an exponential moving average of the parameters and of the
  BatchNorm statistics, `{'params', 'batch_stats'}` as `variables()` gives them (an empty dict
  when off, so states without it keep their checkpoint layout). `update_ema` follows
  `tf.train.ExponentialMovingAverage` with `num_updates`, the usual form in the literature
  (Polyak averaging; airbench's CIFAR-10 speed runs and timm's `ModelEmaV2` use the same update):
  after step n, `ema = d * ema + (1 - d) * new` with `d = min(ema_decay, (1 + n) / (10 + n))`,
  so the average follows the fast-changing first steps closely and the first steps' random
  initialization soon stops counting. `eval_variables()` is what evaluation uses: the average
  when there is one, else the variables themselves. `ema_decay` is a static field.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax import traverse_util
from flax.training import train_state

from cnnjax.errors import ConfigError

Params = Mapping[str, Any]


def split_params(params: Params, frozen: Sequence[str]) -> tuple[dict, dict]:
  """(trainable, frozen) sub-trees of `params`; `frozen` lists '/'-joined leaf paths."""
  flat = traverse_util.flatten_dict(dict(params), sep='/')
  frozen = set(frozen)
  trainable = {p: v for p, v in flat.items() if p not in frozen}
  fixed = {p: v for p, v in flat.items() if p in frozen}
  return (traverse_util.unflatten_dict(trainable, sep='/'),
          traverse_util.unflatten_dict(fixed, sep='/'))


def join_params(trainable: Params, fixed: Params) -> dict:
  """The whole parameter tree from its two parts (the inverse of `split_params`)."""
  flat = traverse_util.flatten_dict(dict(trainable), sep='/')
  flat.update(traverse_util.flatten_dict(dict(fixed), sep='/'))
  return traverse_util.unflatten_dict(flat, sep='/')


class TrainState(train_state.TrainState):
  rng: jax.Array
  batch_stats: Any = struct.field(default_factory=dict)
  frozen: tuple[str, ...] = struct.field(pytree_node=False, default=())
  ema: Any = struct.field(default_factory=dict)
  ema_decay: float = struct.field(pytree_node=False, default=0.0)

  def variables(self, params: Params | None = None) -> dict:
    """The variables `apply_fn` takes: `params` (default: the state's) and the BatchNorm statistics."""
    variables = {'params': self.params if params is None else params}
    if self.batch_stats:
      variables['batch_stats'] = self.batch_stats
    return variables

  def eval_variables(self) -> dict:
    """The variables evaluation uses: the moving average's when `ema_decay` > 0, else `variables()`."""
    return self.ema if self.ema else self.variables()

  def update_ema(self) -> 'TrainState':
    """Moves the average towards the current variables (see the module docstring); call it
    after the step's update, so `self.step` counts the updates made."""
    if not self.ema_decay:
      return self
    n = self.step.astype(jnp.float32)
    decay = jnp.minimum(self.ema_decay, (1 + n) / (10 + n))
    ema = jax.tree.map(lambda average, new: decay * average + (1 - decay) * new,
                       self.ema, self.variables())
    return self.replace(ema=ema)

  def step_key(self, purpose: int = 0) -> jax.Array:
    """The random key of the current step (distinct per `purpose`, e.g. dropout vs augmentation)."""
    key = jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)
    return jax.random.fold_in(key, purpose)

  def trainable_params(self) -> tuple[dict, dict]:
    """(trainable, frozen) parts of the parameters."""
    return split_params(self.params, self.frozen)

  def apply_trainable_gradients(self, grads: Params) -> 'TrainState':
    """One optimizer update from the gradients of the trainable parameters only.

    The optimizer (an `optax.partition` whose frozen group is `set_to_zero`) sees zeros for the
    frozen parameters; their values are carried over as they were, so they stay bit-identical.
    Without frozen parameters this is `apply_gradients(grads=grads)`.
    """
    if not self.frozen:
      return self.apply_gradients(grads=grads)
    trainable, fixed = self.trainable_params()
    full_grads = join_params(grads, jax.tree.map(jnp.zeros_like, fixed))
    updates, opt_state = self.tx.update(full_grads, self.opt_state, self.params)
    trainable_updates, _ = split_params(updates, self.frozen)
    params = join_params(optax.apply_updates(trainable, trainable_updates), fixed)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state)


def _keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(init key, step key) of a run's seed."""
  init_key, step_key = jax.random.split(jax.random.key(seed))
  return init_key, step_key


def init_variables(model: nn.Module, input_shape: Sequence[int], seed: int) -> dict:
  """The model's freshly initialized variables for `seed` (those `create_train_state` makes).

  `{'params': ...}`, plus `'batch_stats'` (moving means 0, variances 1) for a BatchNorm model.
  """
  images = jnp.zeros((1, *input_shape), jnp.float32)
  return dict(jax.jit(model.init)(_keys(seed)[0], images))


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       input_shape: Sequence[int], seed: int, *,
                       variables: Mapping[str, Any] | None = None, frozen: Sequence[str] = (),
                       apply_fn=None, ema_decay: float = 0.0) -> TrainState:
  """Initializes the model's variables for `seed` and the optimizer state for its parameters.

  Args:
    model: the Flax module.
    tx: the optimizer (`cnnjax.training.optimizers.create_optimizer`).
    input_shape: one image's shape.
    seed: the run's seed: initial parameters and the base random key of the steps.
    variables: start from these variables (e.g. merged with pretrained weights) instead of
      `init_variables(model, input_shape, seed)`: 'params' and, for BatchNorm models,
      'batch_stats'. Other collections are an error.
    frozen: '/'-joined paths of the parameters that do not train
      (`cnnjax.training.param_groups.frozen_paths`).
    apply_fn: what the steps call instead of `model.apply` (e.g. the head alone on cached
      features).
    ema_decay: `train.ema_decay`; > 0 keeps a moving average of the variables, which starts
      as a copy of them (see `TrainState.update_ema`).
  """
  if not 0 <= ema_decay < 1:
    raise ConfigError(f'train.ema_decay={ema_decay!r} must be in [0, 1): the weight of the old '
                      'average at each step (0.999 is usual; 0 turns the average off)')
  if variables is None:
    variables = init_variables(model, input_shape, seed)
  unknown = sorted(set(variables) - {'params', 'batch_stats'})
  if unknown:
    raise ValueError(f'{type(model).__name__} has variable collections {unknown} that training '
                     "does not carry; cnnjax trains 'params' and BatchNorm 'batch_stats'")
  state = TrainState.create(apply_fn=apply_fn or model.apply, params=variables['params'], tx=tx,
                            batch_stats=dict(variables.get('batch_stats', {})),
                            rng=jax.random.key_data(_keys(seed)[1]), frozen=tuple(frozen),
                            ema_decay=float(ema_decay))
  if ema_decay:
    # A copy: the average must not share (donated) buffers with the parameters.
    state = state.replace(ema=jax.tree.map(jnp.copy, state.variables()))
  return state
