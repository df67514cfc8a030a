"""Random keys that do not depend on how a batch is split across devices.

A step's key is `fold_in(run key, step)`; an example's key is `fold_in(step key, i)` where `i` is
the example's index in the global batch. Under `pmap` each device holds a slice of the global
batch, so its rows start at `axis_index(BATCH_AXIS) * rows per device`; under `jit` (one device
or sharded over many) the computation sees the whole global batch and the offset is 0. Either
way example `i` gets the same key, so dropout masks (and augmentations) are the same whatever the
device count.
"""

import jax
import jax.numpy as jnp

BATCH_AXIS = 'batch'  # The axis name pmap maps the batch over.


def batch_offset(local_batch: int) -> jax.Array:
  """Global index of this device's first row: nonzero only inside pmap over BATCH_AXIS."""
  try:
    return jax.lax.axis_index(BATCH_AXIS) * local_batch
  except NameError:  # Not inside a pmap over BATCH_AXIS: this is the whole batch.
    return jnp.zeros((), jnp.int32)


def example_keys(key: jax.Array, local_batch: int) -> jax.Array:
  """One key per row of the (local part of the) batch, from the rows' global indices."""
  indices = batch_offset(local_batch) + jnp.arange(local_batch)
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
