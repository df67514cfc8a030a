"""Losses and accuracy, per example and from logits.

Models return logits and the losses apply the softmax or sigmoid themselves, which is the
numerically stable form (Keras' `from_logits=True`). Per-example values let a step weight the
padded rows of a last, partial batch by zero.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from cnnjax.errors import ConfigError


class Objective(NamedTuple):
  """A loss and its accuracy, both (logits, labels) -> per-example values."""

  loss: Callable[[jax.Array, jax.Array], jax.Array]
  correct: Callable[[jax.Array, jax.Array], jax.Array]


def sparse_categorical_crossentropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy of integer labels (B,) against (B, classes) logits."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def sparse_categorical_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def binary_crossentropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy of 0/1 labels (B,) against the (B, 1) logit of a single sigmoid unit."""
  return optax.sigmoid_binary_cross_entropy(logits[..., 0], labels.astype(logits.dtype))


def binary_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return ((logits[..., 0] > 0) == (labels > 0)).astype(jnp.float32)


OBJECTIVES = {
    'sparse_categorical_crossentropy': Objective(sparse_categorical_crossentropy,
                                                 sparse_categorical_correct),
    'binary_crossentropy': Objective(binary_crossentropy, binary_correct),
}


def get_objective(name: str) -> Objective:
  if name not in OBJECTIVES:
    raise ConfigError(f'train.loss={name!r} is not a known loss; choose one of {sorted(OBJECTIVES)}')
  return OBJECTIVES[name]
