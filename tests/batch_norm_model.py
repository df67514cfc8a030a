"""A tiny BatchNorm convnet for the tests of everything a model's variables go through.

Conv(4) - BatchNorm - ReLU - Conv(6) - BatchNorm - ReLU - global average - Dense(3), called the
way cnnjax's models call `layers.BatchNorm` (`use_running_average` as a call argument, an
`axis_name` field for pmap), with a base / head split for cached-feature training. The same
forward pass is written out in NumPy (`reference_logits`), so tests can check which statistics
each BatchNorm layer normalized with.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.models import layers

SHAPE = (8, 8, 1)
MOMENTUM = 0.8
EPSILON = 1e-3


class TinyBatchNormNet(nn.Module):
  axis_name: str | None = None
  bn_momentum: float = MOMENTUM
  bn_epsilon: float = EPSILON
  num_outputs: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False, *, features_only=False, from_features=False):
    if not from_features:
      for name, features in (('1', 4), ('2', 6)):
        x = layers.Conv2D(features, (3, 3), padding='SAME', activation=None, use_bias=False,
                          name=f'conv{name}')(x)
        x = layers.BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                         axis_name=self.axis_name, name=f'bn{name}')(
                             x, use_running_average=not train)
        x = nn.relu(x)
      x = layers.GlobalAveragePooling2D(name='pool')(x)
      if features_only:
        return x
    return layers.Dense(self.num_outputs, name='head')(x)


def randomized_statistics(variables, seed=0):
  """`variables` with moving statistics far from BatchNorm's initial 0 / 1."""
  rng = np.random.default_rng(seed)
  stats = jax.tree.map(lambda x: jnp.asarray(rng.uniform(0.2, 1.5, x.shape), x.dtype),
                       variables['batch_stats'])
  return {**variables, 'batch_stats': stats}


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def reference_logits(variables, images, batch_statistics):
  """The forward pass by hand; `batch_statistics[name]` says whether bn<name> normalizes with the
  batch's statistics (training) or with its moving averages (inference)."""
  params, stats = variables['params'], variables['batch_stats']
  x = np.asarray(images, np.float64)
  for name in ('1', '2'):
    x = np.asarray(_conv(jnp.asarray(x, jnp.float32), params[f'conv{name}']['kernel']),
                   np.float64)
    bn = params[f'bn{name}']
    if batch_statistics[name]:
      mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    else:
      mean, var = (np.asarray(stats[f'bn{name}'][k], np.float64) for k in ('mean', 'var'))
    x = (x - mean) / np.sqrt(var + EPSILON) * np.asarray(bn['scale']) + np.asarray(bn['bias'])
    x = np.maximum(x, 0)
  x = x.mean(axis=(1, 2))
  return x @ np.asarray(params['head']['kernel']) + np.asarray(params['head']['bias'])
