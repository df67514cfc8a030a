"""The config-driven entry point: `make_augmenter(config.augment)` -> augment(key, images).

`default_config()` is the `augment` section of an experiment config:

    kind: 'none' | 'image_data_generator' | 'keras_layers' | 'torchvision'
    image_data_generator.*: Keras ImageDataGenerator arguments (book 1st ed. defaults)
    keras_layers.*: Keras 3 RandomFlip/Rotation/Zoom/Translation/Contrast/Erasing (book 2nd ed.
        defaults; erasing off)
    torchvision.*: RandomCrop(padding), RandomRotation, RandomResizedCrop, RandomHorizontalFlip,
        RandomAffine shear, ColorJitter, RandomErasing and Normalize (the PyTorch lecture's
        defaults; RandomCrop and RandomErasing, which it lacks, off)

Each vocabulary's fields and units are documented on its class (`ImageDataGenerator`,
`KerasLayers`, `TorchvisionTransforms`); only the section named by `kind` is read, so the others
can stay at their defaults. Setting a vocabulary's amount to 0 turns that part off.
"""

import dataclasses
from typing import Callable

import jax
import ml_collections
from ml_collections import config_dict

from cnnjax.augment.image_data_generator import ImageDataGenerator
from cnnjax.augment.keras_layers import KerasLayers
from cnnjax.augment.torchvision_transforms import TorchvisionTransforms
from cnnjax.errors import ConfigError

ImageAugmenter = Callable[[jax.Array, jax.Array], jax.Array]  # (key, one image) -> image

VOCABULARIES = {
    'image_data_generator': ImageDataGenerator,
    'keras_layers': KerasLayers,
    'torchvision': TorchvisionTransforms,
}
KINDS = ('none', *VOCABULARIES)


def _section(options) -> ml_collections.ConfigDict:
  section = ml_collections.ConfigDict()
  for field in dataclasses.fields(options):
    value = getattr(options, field.name)
    # A None default still needs a type, so that a command-line override is parsed as a number.
    setattr(section, field.name, config_dict.placeholder(float) if value is None else value)
  return section


def default_config() -> ml_collections.ConfigDict:
  """The `augment` config section: no augmentation, each vocabulary at its reference defaults."""
  config = ml_collections.ConfigDict()
  config.kind = 'none'
  for name, options in VOCABULARIES.items():
    setattr(config, name, _section(options()))
  return config


def vocabulary(config: ml_collections.ConfigDict):
  """The options object of `config.kind` (None for 'none'), checked."""
  kind = config.kind
  if kind not in KINDS:
    raise ConfigError(f'augment.kind={kind!r} is not one of {KINDS}')
  if kind == 'none':
    return None
  section = config.get(kind)
  values = section.to_dict() if section is not None else {}
  known = {field.name for field in dataclasses.fields(VOCABULARIES[kind])}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ConfigError(f'augment.{kind} has unknown field(s) {unknown}: the fields are '
                      f'{sorted(known)}')
  values = {name: tuple(value) if isinstance(value, list) else value
            for name, value in values.items()}
  return VOCABULARIES[kind](**values)




def make_image_augmenter(config: ml_collections.ConfigDict) -> ImageAugmenter | None:
  """The one-image augmenter of `config` (random part only), or None for kind 'none'.

  Use it with your own per-image keys, e.g. `jax.vmap(fn)(example_keys, images)` with keys that
  do not depend on how the batch is split across devices.
  """
  return vocabulary(config)


@dataclasses.dataclass(frozen=True)
class Augmenter:
  """A config's augmentation: a random part for training batches and a fixed preprocessing part.

  Attributes:
    image_augmenter: the random transform of one image, or None (kind 'none').
    preprocess: deterministic per-batch preprocessing applied at training AND evaluation
      (torchvision's Normalize), or None.
  """

  image_augmenter: ImageAugmenter | None
  preprocess: Callable[[jax.Array], jax.Array] | None = None

  @property
  def is_identity(self) -> bool:
    return self.image_augmenter is None and self.preprocess is None

  def train_images(self, keys: jax.Array, images: jax.Array) -> jax.Array:
    """A training batch: image i transformed with keys[i] (vmapped), then preprocessed."""
    if self.image_augmenter is not None:
      images = jax.vmap(self.image_augmenter)(keys, images)
    return self.eval_images(images)

  def eval_images(self, images: jax.Array) -> jax.Array:
    """An evaluation batch: preprocessing only, no random change."""
    return images if self.preprocess is None else self.preprocess(images)

  def __call__(self, key: jax.Array | None, images: jax.Array, *,
               train: bool = True) -> jax.Array:
    """`train=True`: one key per image from `jax.random.split(key, batch)`; else eval_images."""
    if not train or self.image_augmenter is None:
      return self.eval_images(images)
    return self.train_images(jax.random.split(key, images.shape[0]), images)


def augment_batch(image_augmenter: ImageAugmenter, key: jax.Array,
                  images: jax.Array) -> jax.Array:
  """Applies a one-image augmenter to every image of a batch, each with its own key."""
  return Augmenter(image_augmenter)(key, images)


def make_augmenter(config: ml_collections.ConfigDict) -> Augmenter:
  """Builds the `Augmenter` of an `augment` config section, checking its fields.

  Called as `augment(key, images, *, train=True)` every image of a float NHWC batch gets its own
  random transform (keys from `jax.random.split(key, batch)`, one vmapped resample per image);
  with `train=False` the batch is left as it is, except for torchvision's Normalize which, being
  preprocessing, applies to both. The training step instead calls `train_images` with per-example
  keys that do not depend on the device count (`cnnjax.rng.example_keys`). Everything is pure and
  traceable: it runs inside the jitted step.
  """
  options = vocabulary(config)
  normalize = options.normalize if isinstance(options, TorchvisionTransforms) else None
  return Augmenter(options, normalize)
