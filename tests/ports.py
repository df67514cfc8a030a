"""What the tests that prove a weight port exact share: the difference measure and the port."""

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.weights import load_weights, merge_variables

_SHAPES = {}


def relative_difference(output, reference) -> float:
  """The largest absolute difference relative to the largest reference output."""
  output, reference = np.asarray(output), np.asarray(reference)
  assert output.shape == reference.shape
  return float(np.max(np.abs(output - reference)) / np.max(np.abs(reference)))


def abstract_variables(model, size):
  """The shapes of `model`'s variables for size x size x 3 images (traced once per model)."""
  key = (model, size)
  if key not in _SHAPES:
    _SHAPES[key] = jax.eval_shape(model.init, jax.random.key(0),
                                  jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  return _SHAPES[key]


def port(model, path, model_name, size):
  """`model`'s variables with the weights of `path` (every variable must come from the file)."""
  return merge_variables(abstract_variables(model, size), load_weights(path, model_name),
                         source=str(path))
