"""The training state: parameters, optimizer state, step and the run's base random key.

A flax `TrainState` plus `rng`, the raw key data from which every step derives its dropout key
with `fold_in(rng, step)`. Keeping the key as plain uint32 data makes the whole state an ordinary
pytree of arrays that orbax saves and restores as it is, and a resumed run draws the same dropout
masks as an uninterrupted one.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  rng: jax.Array

  def step_key(self, purpose: int = 0) -> jax.Array:
    """The random key of the current step (distinct per `purpose`, e.g. dropout vs augmentation)."""
    key = jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)
    return jax.random.fold_in(key, purpose)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       input_shape: Sequence[int], seed: int) -> TrainState:
  """Initializes the model's parameters for `seed` and the optimizer state for them."""
  init_key, step_key = jax.random.split(jax.random.key(seed))
  images = jnp.zeros((1, *input_shape), jnp.float32)
  variables = jax.jit(model.init)(init_key, images)
  return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                           rng=jax.random.key_data(step_key))
