"""Model registry: a config's `model.name` -> a Flax Linen module.

Models are pure functions of (variables, images): `model.init(rng, images)` makes the variables and
`model.apply(variables, images, train=...)` runs it. `create_model(config.model)` builds the one a
config names; `register_model` lets research code add its own under a new name.
"""

import dataclasses
import functools
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.errors import ConfigError
from cnnjax.models import bn_convnet
from cnnjax.models import convnet
from cnnjax.models import convolution
from cnnjax.models import inception_v3
from cnnjax.models import resnet
from cnnjax.models import resnet_keras
from cnnjax.models import vgg16
from cnnjax.models import vgg_classifier
from cnnjax.models.layer_outputs import layer_outputs

MODELS: dict[str, Callable[..., nn.Module]] = {
    'small_convnet_base': convnet.small_convnet_base,
    'small_convnet': convnet.small_convnet,
    'small_convnet_gap': convnet.small_convnet_gap,
    'mnist_convnet': convnet.mnist_convnet,
    'bn_convnet': bn_convnet.BNConvNet,
    'cats_vs_dogs_150': convnet.cats_vs_dogs_150,
    'cats_vs_dogs_180': convnet.cats_vs_dogs_180,
    'vgg16': vgg16.VGG16,
    'vgg16_base': functools.partial(vgg16.VGG16, include_top=False),
    'vgg16_transfer': vgg_classifier.vgg16_transfer,
    'vgg_small': vgg_classifier.vgg_small,
    'resnet50_keras': resnet_keras.ResNet50Keras,
    'resnet18': resnet.resnet18,
    'resnet34': resnet.resnet34,
    'resnet50': resnet.resnet50,
    'resnet_small': resnet.resnet_small,
    'inception_v3': inception_v3.InceptionV3,
}

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def register_model(name: str, constructor: Callable[..., nn.Module]) -> None:
  """Makes `constructor` available to configs as `model.name = name`."""
  MODELS[name] = constructor


def create_model(model_config) -> nn.Module:
  """Builds the module a config's `model` group describes.

  Fields read: `name`; optional `num_outputs`, `dropout_rate`, `preprocess`, `bn_momentum`,
  `bn_epsilon`, `conv_implementation`, `widths`, `convs_per_stage`, `first_stride`,
  `stage_sizes` (override the variant's defaults when set: None or absent keeps them; a field the
  model does not have is an error) and `dtype` ('float32' or 'bfloat16' compute).
  """
  name = model_config.name
  if name not in MODELS:
    raise ConfigError(f'model.name={name!r} is not a known model; choose one of {sorted(MODELS)} '
                      'or register yours with cnnjax.models.register_model')
  constructor = MODELS[name]
  module_class = constructor.func if isinstance(constructor, functools.partial) else constructor
  accepted = ({f.name for f in dataclasses.fields(module_class)}
              if dataclasses.is_dataclass(module_class) else None)
  kwargs = {}
  for field in ('num_outputs', 'dropout_rate', 'preprocess', 'bn_momentum', 'bn_epsilon',
                'conv_implementation', 'widths', 'convs_per_stage', 'first_stride',
                'stage_sizes'):
    value = model_config.get(field)
    if value is None:
      continue
    if accepted is not None and field not in accepted:
      raise ConfigError(f'model.{field}={value} does not apply to model.name={name!r}; leave it '
                        'unset (None)')
    kwargs[field] = value
  implementation = kwargs.get('conv_implementation')
  if implementation is not None and implementation not in convolution.IMPLEMENTATIONS:
    raise ConfigError(f'model.conv_implementation={implementation!r} is not one of '
                      f'{convolution.IMPLEMENTATIONS}')
  dtype = model_config.get('dtype', 'float32')
  if dtype not in DTYPES:
    raise ConfigError(f'model.dtype={dtype!r} is not supported; choose one of {sorted(DTYPES)}')
  kwargs['dtype'] = DTYPES[dtype]
  return constructor(**kwargs)


__all__ = ['MODELS', 'create_model', 'layer_outputs', 'register_model']
