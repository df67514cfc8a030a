"""Losses and accuracy, per example and from logits.

Models return logits and the losses apply the softmax or sigmoid themselves, which is the
numerically stable form (Keras' `from_logits=True`). Per-example values let a step weight the
padded rows of a last, partial batch by zero.

Label smoothing (`train.label_smoothing`, Szegedy et al. 2016, "Rethinking the Inception
Architecture", section 7) trains against `(1 - a) * one_hot + a / classes` instead of the one-hot
target (`optax.smooth_labels`; Keras' `label_smoothing` argument and PyTorch's
`CrossEntropyLoss(label_smoothing=a)` are the same target); for a single sigmoid unit the target
is `(1 - a) * y + a / 2`, as Keras' `BinaryCrossentropy(label_smoothing=a)`. The loss reported for
validation and test is the same smoothed loss (as Keras reports it), so checkpoint selection by
val_loss stays consistent with what is trained; accuracy is unaffected.
"""

import functools

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from cnnjax.errors import ConfigError


class Objective(NamedTuple):
  """A loss and its accuracy, both (logits, labels) -> per-example values."""

  loss: Callable[[jax.Array, jax.Array], jax.Array]
  correct: Callable[[jax.Array, jax.Array], jax.Array]


def sparse_categorical_crossentropy(logits: jax.Array, labels: jax.Array,
                                    label_smoothing: float = 0.0) -> jax.Array:
  """Cross-entropy of integer labels (B,) against (B, classes) logits, optionally smoothed."""
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype),
                                label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def sparse_categorical_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def binary_crossentropy(logits: jax.Array, labels: jax.Array,
                        label_smoothing: float = 0.0) -> jax.Array:
  """Cross-entropy of 0/1 labels (B,) against the (B, 1) logit of a single sigmoid unit."""
  targets = labels.astype(logits.dtype)
  if label_smoothing:
    targets = targets * (1 - label_smoothing) + 0.5 * label_smoothing
  return optax.sigmoid_binary_cross_entropy(logits[..., 0], targets)


def binary_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return ((logits[..., 0] > 0) == (labels > 0)).astype(jnp.float32)


OBJECTIVES = {
    'sparse_categorical_crossentropy': Objective(sparse_categorical_crossentropy,
                                                 sparse_categorical_correct),
    'binary_crossentropy': Objective(binary_crossentropy, binary_correct),
}


def get_objective(name: str, label_smoothing: float = 0.0) -> Objective:
  """The loss `train.loss` names, with `train.label_smoothing` (0: none) applied to its targets."""
  if name not in OBJECTIVES:
    raise ConfigError(f'train.loss={name!r} is not a known loss; choose one of {sorted(OBJECTIVES)}')
  if not 0 <= label_smoothing < 1:
    raise ConfigError(f'train.label_smoothing={label_smoothing!r} must be in [0, 1): the weight '
                      'moved from the true class to the uniform target (0.1 is usual; 0: none)')
  objective = OBJECTIVES[name]
  if not label_smoothing:
    return objective
  return objective._replace(loss=functools.partial(objective.loss,
                                                   label_smoothing=float(label_smoothing)))
