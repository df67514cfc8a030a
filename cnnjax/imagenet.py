"""ImageNet conventions around pretrained models: input preprocessing and reading predictions.

A pretrained network only works on inputs prepared the way its training images were, and that
depends on where the weights come from, not on the architecture:

- 'caffe' (Keras' VGG16 and ResNet50 ImageNet weights, converted from Caffe): RGB -> BGR, then
  subtract the ImageNet mean pixel [103.939, 116.779, 123.68] (B, G, R) from 0..255 values;
- 'torch' (torchvision weights): /255, then subtract [0.485, 0.456, 0.406] and divide by
  [0.229, 0.224, 0.225] per RGB channel;
- 'tf' (Keras' InceptionV3 and MobileNets): 0..255 -> -1..1.

`decode_predictions` turns a model's scores over the 1,000 classes into the top-k
(WordNet id, name, probability) triples, with the class list shipped in
cnnjax/data_files/imagenet_classes.json (built from files tensorflow-datasets ships; its
"description" field says which).
"""

import functools
import importlib.resources
import json

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.errors import ConfigError

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)
MODES = ('caffe', 'torch', 'tf')
NUM_CLASSES = 1000
_CLASSES_FILE = 'data_files/imagenet_classes.json'


def preprocess_input(images: jax.Array, mode: str) -> jax.Array:
  """Prepares RGB images with values in 0..255 for a network trained with `mode`'s convention.

  Args:
    images: (..., H, W, 3) RGB, channels last, values in 0..255 (multiply cnnjax's [0, 1] data
      sets by 255 first).
    mode: 'caffe' for Keras' VGG16 weights, 'torch' for torchvision's, 'tf' for Keras' Inception.

  Returns:
    float32 images: BGR and mean-centred for 'caffe', RGB standardized for 'torch', RGB in
    [-1, 1] for 'tf'.
  """
  if mode not in MODES:
    raise ConfigError(f'preprocessing mode {mode!r} is unknown; choose one of {MODES} ('
                      "'caffe' for Keras' VGG16 weights, 'torch' for torchvision's)")
  x = jnp.asarray(images, jnp.float32)
  if x.shape[-1] != 3:
    raise ConfigError(f'preprocess_input needs RGB images with channels last, got shape {x.shape}')
  if mode == 'caffe':
    return x[..., ::-1] - jnp.asarray(CAFFE_MEAN_BGR)
  if mode == 'torch':
    return (x / 255.0 - jnp.asarray(TORCH_MEAN_RGB)) / jnp.asarray(TORCH_STD_RGB)
  return x / 127.5 - 1.0


@functools.cache
def imagenet_classes() -> tuple[tuple[str, str, str], ...]:
  """The 1,000 classes in model output order, as (WordNet id, name, description)."""
  text = importlib.resources.files('cnnjax').joinpath(_CLASSES_FILE).read_text(encoding='utf-8')
  return tuple(tuple(c) for c in json.loads(text)['classes'])


def decode_predictions(scores: jax.Array, top: int = 5, *,
                       from_logits: bool) -> list[list[tuple[str, str, float]]]:
  """The `top` most likely ImageNet classes of each image, most likely first.

  Args:
    scores: (N, 1000) logits (what cnnjax models return) or probabilities.
    top: how many classes per image.
    from_logits: True if `scores` are logits (a softmax turns them into probabilities), False if
      they are probabilities already. Required because the two cannot be told apart reliably.

  Returns:
    For each image, `top` tuples (WordNet id, class name, probability), as Keras'
    decode_predictions returns them, e.g. ('n02504458', 'African_elephant', 0.92).
  """
  scores = np.asarray(scores, np.float32)
  if scores.ndim != 2 or scores.shape[1] != NUM_CLASSES:
    raise ConfigError(f'decode_predictions needs (N, {NUM_CLASSES}) scores, got shape '
                      f'{scores.shape}')
  if not 1 <= top <= NUM_CLASSES:
    raise ConfigError(f'top={top} must be between 1 and {NUM_CLASSES}')
  probabilities = np.asarray(jax.nn.softmax(scores, axis=-1)) if from_logits else scores
  classes = imagenet_classes()
  results = []
  for row in probabilities:
    # A stable sort keeps ties in class order, so results do not depend on the platform.
    best = np.argsort(-row, kind='stable')[:top]
    results.append([(classes[i][0], classes[i][1], float(row[i])) for i in best])
  return results
