"""The training state: parameters, optimizer state, step, the run's base random key, the frozen set.

A flax `TrainState` plus

- `rng`, the raw key data from which every step derives its dropout key with
  `fold_in(rng, step)`. Keeping the key as plain uint32 data makes the whole state an ordinary
  pytree of arrays that orbax saves and restores as it is, and a resumed run draws the same
  dropout masks as an uninterrupted one;
- `frozen`, the '/'-joined paths of the parameters that do not train (from `train.param_groups`),
  a static field: not saved in checkpoints, part of the jitted step's structure. The train step
  differentiates only the other parameters (`split_params`) and `apply_trainable_gradients`
  returns the frozen ones untouched, bit for bit.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax import traverse_util
from flax.training import train_state

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
  frozen: tuple[str, ...] = struct.field(pytree_node=False, default=())

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


def init_params(model: nn.Module, input_shape: Sequence[int], seed: int) -> dict:
  """The model's freshly initialized parameters for `seed` (those `create_train_state` makes)."""
  images = jnp.zeros((1, *input_shape), jnp.float32)
  return jax.jit(model.init)(_keys(seed)[0], images)['params']


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       input_shape: Sequence[int], seed: int, *, params: Params | None = None,
                       frozen: Sequence[str] = (), apply_fn=None) -> TrainState:
  """Initializes the model's parameters for `seed` and the optimizer state for them.

  Args:
    model: the Flax module.
    tx: the optimizer (`cnnjax.training.optimizers.create_optimizer`).
    input_shape: one image's shape.
    seed: the run's seed: initial parameters and the base random key of the steps.
    params: start from these parameters (e.g. merged with pretrained weights) instead of
      `init_params(model, input_shape, seed)`.
    frozen: '/'-joined paths of the parameters that do not train
      (`cnnjax.training.param_groups.frozen_paths`).
    apply_fn: what the steps call instead of `model.apply` (e.g. the head alone on cached
      features).
  """
  if params is None:
    params = init_params(model, input_shape, seed)
  return TrainState.create(apply_fn=apply_fn or model.apply, params=params, tx=tx,
                           rng=jax.random.key_data(_keys(seed)[1]), frozen=tuple(frozen))
