"""Class activation maps: where in an image a convnet found the evidence for a class.

Every method weighs the channels of a convolutional layer's output A (N, h, w, C) and sums them into
one map per image and class, at the layer's resolution:

- CAM (Zhou et al. 2016), for models ending in global average pooling and one dense layer: the
  weights are that layer's weights from the pooled channels to the class.
- Grad-CAM (Selvaraju et al. 2017; the reference's method): the weights are the gradients of the
  class score with respect to A, averaged over the positions of each channel.
- Grad-CAM++ (Chattopadhay et al. 2018): a position-weighted average of the positive gradients,
  with the closed-form weights alpha = g^2 / (2 g^2 + sum(A) g^3) that follow from taking the
  exponential of the class score (whose positive factor exp(score) normalization removes).
- HiResCAM (Draelos & Carin 2020): sum over channels of gradient x activation, position by
  position; for a linear head it is exactly each position's contribution to the score.
- LayerCAM (Jiang et al. 2021): sum over channels of relu(gradient) x activation.
- Score-CAM (Wang et al. 2020): no gradients; each channel, upsampled and scaled to [0, 1], masks
  the image, and the model's probability for the class on the masked image is the channel's weight.
  Its forward passes (one per image and channel) can run a few channels per call, under a
  progress bar (`channels_per_call`).
- Eigen-CAM (Muhammad & Yeasin 2020): no class; the projection of A onto its first principal
  direction (the first right singular vector of A reshaped to (h w, C)). The sign of a singular
  vector is arbitrary; it is fixed so that the map sums to a non-negative value, i.e. points the
  way the activations grow (for a ReLU layer the map is then non-negative).

The class score is the logit (Grad-CAM's y^c, before the softmax). For a model with one output
unit (binary, sigmoid), class 1 scores the logit z and class 0 scores -z, the log-odds of each.

Gradients with respect to the layer's output are taken functionally: the model runs with a
perturbation added to that layer's output (`layer_probe.apply_perturbed`), and one `jax.vjp` over
the perturbation at zero gives them, for every image of the batch at once (an image's score
depends only on its own features) and for many classes at once (`vmap` over the cotangents).

`top_channels` shows what CAM adds up, for a GAP + dense model: the activation maps of the channels
that the dense layer weighs most for a class, with their weights (the PyTorch lecture's figure of
ResNet50's top-8 channels).

Maps come back raw; `normalize_maps` applies the ReLU and scales each map to [0, 1] by its maximum
(an all-zero map stays zero), and `upsample` resizes them bilinearly to the image.
"""

import dataclasses
import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.errors import ConfigError
from cnnjax.models.layer_outputs import layer_outputs, layer_types
from cnnjax.progress import Progress
from cnnjax.visualize.layer_probe import apply_perturbed, zeros_like_layer

Variables = Mapping[str, Any]

GRADIENT_METHODS = ('grad_cam', 'grad_cam_plus_plus', 'hires_cam', 'layer_cam')
METHODS = ('cam',) + GRADIENT_METHODS + ('score_cam', 'eigen_cam')
# How the papers write the methods' names, for figure titles.
METHOD_NAMES = {'cam': 'CAM', 'grad_cam': 'Grad-CAM', 'grad_cam_plus_plus': 'Grad-CAM++',
                'hires_cam': 'HiResCAM', 'layer_cam': 'LayerCAM', 'score_cam': 'Score-CAM',
                'eigen_cam': 'Eigen-CAM'}
# Layers that may sit between a CAM model's last conv layer and its dense layer.
_CAM_PASS_THROUGH = ('GlobalAveragePooling2D', 'Dropout')


@dataclasses.dataclass(frozen=True)
class ClassActivationMaps:
  """The result of `class_activation_maps`.

  Attributes:
    maps: raw maps at the layer's resolution, (N, h, w) for one target per image or (N, K, h, w)
      for K targets per image.
    targets: the class of each map, (N,) or (N, K).
    probabilities: the model's class probabilities for each image, (N, classes).
    layer: the layer the maps were computed from.
    method: the method's name.
  """

  maps: jax.Array
  targets: jax.Array
  probabilities: jax.Array
  layer: str
  method: str


def _at_least_float32(x: jax.Array) -> jax.Array:
  """bfloat16 outputs to float32; float32 and float64 stay as they are."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def class_scores(outputs: jax.Array) -> jax.Array:
  """Per-class scores (N, classes) from model outputs: the logits, or (-z, z) for one unit."""
  outputs = _at_least_float32(outputs)
  if outputs.ndim != 2:
    raise ValueError(f'class activation maps need (N, classes) model outputs, got {outputs.shape}')
  if outputs.shape[-1] == 1:
    return jnp.concatenate([-outputs, outputs], axis=-1)
  return outputs


def class_probabilities(outputs: jax.Array) -> jax.Array:
  """Per-class probabilities (N, classes): softmax of the logits, or (1 - p, p), p = sigmoid(z)."""
  outputs = _at_least_float32(outputs)
  if outputs.shape[-1] == 1:
    return jax.nn.sigmoid(class_scores(outputs))
  return jax.nn.softmax(outputs, axis=-1)


def check_targets(targets: Any, num_images: int, num_classes: int) -> jax.Array | None:
  """Checks a targets argument; returns it as an int32 array, or None for 'predicted'.

  Targets are 'predicted' (each image's top class), an int array (N,) (one class per image) or
  (N, K) (K classes per image).
  """
  if isinstance(targets, str):
    if targets != 'predicted':
      raise ConfigError(f"targets must be 'predicted' or an int array of classes, not {targets!r}")
    return None
  array = np.asarray(targets)
  if not np.issubdtype(array.dtype, np.integer):
    raise ConfigError(f'targets must be integer classes, got dtype {array.dtype}')
  if array.ndim not in (1, 2) or array.shape[0] != num_images:
    raise ConfigError(f'targets must have shape ({num_images},) or ({num_images}, K): one class '
                      f'(or K classes) per image, got shape {array.shape}')
  if array.size and (array.min() < 0 or array.max() >= num_classes):
    raise ConfigError(f'targets must be classes in [0, {num_classes}), got values from '
                      f'{array.min()} to {array.max()}')
  return jnp.asarray(array, jnp.int32)


def _num_classes(model: nn.Module, variables: Variables, images: jax.Array) -> int:
  outputs = jax.eval_shape(lambda v, x: model.apply(v, x), variables, images)
  return max(outputs.shape[-1], 2)


def last_conv_layer(model: nn.Module, variables: Variables, images: jax.Array) -> str:
  """The name of the model's last convolution layer with an (N, h, w, C) output."""
  types = layer_types(model, variables, images)
  shapes = jax.eval_shape(lambda v, x: layer_outputs(model, v, x), variables, images)
  convs = [name for name, kind in types.items()
           if 'conv' in kind.lower() and len(shapes[name].shape) == 4]
  if not convs:
    raise ConfigError(f'{type(model).__name__} has no convolution layer to compute class '
                      f'activation maps from; its layers are {list(types)}')
  return convs[-1]


def cam_layers(model: nn.Module, variables: Variables, images: jax.Array,
               layer: str | None = None, dense_layer: str | None = None) -> tuple[str, str]:
  """The (conv layer, dense layer) CAM reads, checked: only global pooling may sit between them.

  Defaults: the layer just before the global average pooling, and the last layer.
  """
  types = layer_types(model, variables, images)
  names = list(types)
  if dense_layer is None:
    dense_layer = names[-1]
  if layer is None:
    pools = [i for i, name in enumerate(names) if types[name] == 'GlobalAveragePooling2D']
    if not pools or pools[-1] == 0:
      raise ConfigError(
          f'CAM needs a model with global average pooling before its dense layer; '
          f'{type(model).__name__} has layers {names}. Use Grad-CAM (method grad_cam) instead')
    layer = names[pools[-1] - 1]
  for name in (layer, dense_layer):
    if name not in types:
      raise ConfigError(f'{type(model).__name__} has no layer named {name!r}; its layers are '
                        f'{names}')
  between = names[names.index(layer) + 1:names.index(dense_layer)]
  kinds = [types[name] for name in between]
  if 'GlobalAveragePooling2D' not in kinds or any(k not in _CAM_PASS_THROUGH for k in kinds):
    raise ConfigError(
        f'CAM needs {layer!r} -> global average pooling -> {dense_layer!r}, but the layers '
        f'between them are {dict(zip(between, kinds))}. Use Grad-CAM (method grad_cam) instead')
  kernel = variables['params'].get(dense_layer, {}).get('kernel')
  if kernel is None or kernel.ndim != 2:
    raise ConfigError(f'layer {dense_layer!r} has no 2-D dense kernel for CAM to read')
  return layer, dense_layer


def features_and_gradients(model: nn.Module, variables: Variables, images: jax.Array, layer: str,
                           targets: jax.Array | None
                           ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """The layer's output and the gradients of the target class scores with respect to it.

  Args:
    model: a Flax Linen model whose layers are direct, named submodules.
    variables: its variables.
    images: (N, H, W, C).
    layer: the layer.
    targets: (N,) or (N, K) classes; None for each image's top class.

  Returns:
    (features (N, h, w, C), gradients (N, h, w, C) or (N, K, h, w, C), targets, the model's
    outputs).
  """
  delta = zeros_like_layer(model, variables, images, layer)

  def scores_of(perturbation):
    outputs, features = apply_perturbed(model, variables, images, layer, perturbation)
    return class_scores(outputs), (features, outputs)

  scores, pullback, (features, outputs) = jax.vjp(scores_of, delta, has_aux=True)
  if targets is None:
    targets = jnp.argmax(scores, axis=-1)
  cotangents = jax.nn.one_hot(targets, scores.shape[-1], dtype=scores.dtype)
  if targets.ndim == 1:
    (grads,) = pullback(cotangents)
  else:
    (grads,) = jax.vmap(pullback, in_axes=1, out_axes=1)(cotangents)
  return features, grads, targets, outputs


def _expand_like(features: jax.Array, grads: jax.Array) -> jax.Array:
  """Features (N, h, w, C) broadcastable against gradients with a class axis (N, K, h, w, C)."""
  return features[:, None] if grads.ndim == features.ndim + 1 else features


def grad_cam_map(features: jax.Array, grads: jax.Array) -> jax.Array:
  """sum_k mean_ij(g_k) A_k: channels weighted by their spatially averaged gradients."""
  weights = grads.mean(axis=(-3, -2), keepdims=True)
  return (weights * _expand_like(features, grads)).sum(axis=-1)


def grad_cam_plus_plus_map(features: jax.Array, grads: jax.Array) -> jax.Array:
  """sum_k (sum_ij alpha_kij relu(g_kij)) A_k with alpha = g^2 / (2 g^2 + sum_ab A_kab g^3)."""
  features = _expand_like(features, grads)
  g2 = grads ** 2
  denominator = 2 * g2 + features.sum(axis=(-3, -2), keepdims=True) * grads ** 3
  safe = jnp.where(denominator != 0, denominator, 1.0)
  alpha = jnp.where(denominator != 0, g2 / safe, 0.0)
  weights = (alpha * jax.nn.relu(grads)).sum(axis=(-3, -2), keepdims=True)
  return (weights * features).sum(axis=-1)


def hires_cam_map(features: jax.Array, grads: jax.Array) -> jax.Array:
  """sum_k g_k * A_k, position by position (no averaging of the gradients)."""
  return (grads * _expand_like(features, grads)).sum(axis=-1)


def layer_cam_map(features: jax.Array, grads: jax.Array) -> jax.Array:
  """sum_k relu(g_k) * A_k, position by position."""
  return (jax.nn.relu(grads) * _expand_like(features, grads)).sum(axis=-1)


_GRADIENT_MAPS = {
    'grad_cam': grad_cam_map,
    'grad_cam_plus_plus': grad_cam_plus_plus_map,
    'hires_cam': hires_cam_map,
    'layer_cam': layer_cam_map,
}


def cam_map(features: jax.Array, dense_kernel: jax.Array, targets: jax.Array) -> jax.Array:
  """sum_k w_kc A_k with w the dense kernel (C, classes); one output unit gives (-w, w)."""
  kernel = jnp.asarray(dense_kernel, jnp.float32)
  if kernel.shape[-1] == 1:
    kernel = jnp.concatenate([-kernel, kernel], axis=-1)
  if kernel.shape[0] != features.shape[-1]:
    raise ConfigError(f'the dense kernel has {kernel.shape[0]} inputs but the layer has '
                      f'{features.shape[-1]} channels; CAM needs layer -> GAP -> dense')
  weights = jnp.moveaxis(kernel[:, targets], 0, -1)  # (N, C) or (N, K, C)
  if targets.ndim == 2:
    return jnp.einsum('nhwc,nkc->nkhw', features, weights)
  return jnp.einsum('nhwc,nc->nhw', features, weights)


def eigen_cam_map(features: jax.Array) -> jax.Array:
  """The projection of each (h, w, C) map onto its first principal direction, sign fixed."""
  n, h, w, c = features.shape
  flat = features.reshape(n, h * w, c).astype(jnp.float32)
  _, _, vt = jnp.linalg.svd(flat, full_matrices=False)
  projection = jnp.einsum('npc,nc->np', flat, vt[:, 0])
  sign = jnp.where(projection.sum(axis=-1, keepdims=True) < 0, -1.0, 1.0)
  return (sign * projection).reshape(n, h, w)


def channel_masks(features: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Score-CAM's masks: each channel upsampled (bilinear) to `size` and min-max scaled to [0, 1].

  A constant channel gives an all-zero mask. Shape (N, H, W, C).
  """
  n, _, _, c = features.shape
  masks = jax.image.resize(features.astype(jnp.float32), (n, *size, c), 'bilinear')
  low = masks.min(axis=(1, 2), keepdims=True)
  high = masks.max(axis=(1, 2), keepdims=True)
  spread = high - low
  return jnp.where(spread > 0, (masks - low) / jnp.where(spread > 0, spread, 1.0), 0.0)


def masked_probabilities(model: nn.Module, variables: Variables, images: jax.Array,
                         features: jax.Array, channels: jax.Array,
                         batch_size: int = 32) -> jax.Array:
  """Score-CAM's forward passes: the class probabilities of each image masked by each of
  `channels` of the layer's `features` (`channel_masks`), (N, K, classes).

  The K masked copies of each image run through the model `batch_size` at a time (`lax.map`), one
  image after another, so memory stays at one batch of masked images; a channel's mask depends on
  that channel only, so the channels can run in any groups.
  """
  masks = channel_masks(jnp.take(features, channels, axis=-1), images.shape[1:3])

  def one_image(args):
    image, image_masks = args
    masked = image[None] * jnp.moveaxis(image_masks, -1, 0)[..., None]  # (K, H, W, channels)
    return jax.lax.map(lambda x: class_probabilities(model.apply(variables, x[None]))[0], masked,
                       batch_size=batch_size)  # (K, classes)

  return jax.lax.map(one_image, (images, masks))


def weigh_by_probabilities(features: jax.Array, probabilities: jax.Array,
                           targets: jax.Array) -> jax.Array:
  """sum_k p_c(image x mask_k) A_k from `masked_probabilities` (N, C, classes) of every channel."""

  def one_image(image_features, image_probabilities, image_targets):
    weights = image_probabilities[:, image_targets]  # (C,) or (C, K)
    return jnp.einsum('hwc,c...->...hw', image_features, weights)

  return jax.vmap(one_image)(features, probabilities, targets)


def score_cam_map(model: nn.Module, variables: Variables, images: jax.Array, features: jax.Array,
                  targets: jax.Array, batch_size: int = 32) -> jax.Array:
  """sum_k p_c(image x mask_k) A_k: channels weighted by the class probability of masked images,
  every channel's forward passes at once (`masked_probabilities`)."""
  channels = jnp.arange(features.shape[-1])
  probabilities = masked_probabilities(model, variables, images, features, channels, batch_size)
  return weigh_by_probabilities(features, probabilities, targets)


@functools.partial(jax.jit, static_argnames=('model', 'layer'))
def _layer_features(model, variables, images, targets, *, layer):
  """The layer's features, the targets (each image's top class for None) and the probabilities."""
  outputs, features = apply_perturbed(model, variables, images, layer)
  if targets is None:
    targets = jnp.argmax(class_scores(outputs), axis=-1)
  return features, targets, class_probabilities(outputs)


_masked_probabilities = jax.jit(masked_probabilities, static_argnames=('model', 'batch_size'))
_weigh_by_probabilities = jax.jit(weigh_by_probabilities)


def _score_cam_in_calls(model, variables, images, targets, *, layer, batch_size,
                        channels_per_call):
  """Score-CAM with the masked images of `channels_per_call` channels per jitted call (the last
  padded with repeats of the last channel: one compilation) under a progress bar."""
  features, targets, probabilities = _layer_features(model, variables, images, targets,
                                                     layer=layer)
  count = features.shape[-1]
  per_call = min(channels_per_call, count)
  parts = []
  with Progress(f'Score-CAM of {layer}', images.shape[0] * count, 'masked image') as progress:
    for first in range(0, count, per_call):
      channels = np.minimum(np.arange(first, first + per_call), count - 1)
      done = min(per_call, count - first)
      part = _masked_probabilities(model, variables, images, features, jnp.asarray(channels),
                                   batch_size=batch_size)
      parts.append(jax.block_until_ready(part[:, :done]))  # Counted once done, not dispatched.
      progress.update(images.shape[0] * done)
  maps = _weigh_by_probabilities(features, jnp.concatenate(parts, axis=1), targets)
  return maps, targets, probabilities


@functools.partial(jax.jit, static_argnames=('model', 'method', 'layer', 'dense_layer',
                                             'batch_size'))
def _maps(model, variables, images, targets, *, method, layer, dense_layer, batch_size):
  if method in GRADIENT_METHODS:
    features, grads, targets, outputs = features_and_gradients(model, variables, images, layer,
                                                               targets)
    return _GRADIENT_MAPS[method](features, grads), targets, class_probabilities(outputs)
  features, targets, probabilities = _layer_features(model, variables, images, targets,
                                                     layer=layer)
  if method == 'cam':
    maps = cam_map(features, variables['params'][dense_layer]['kernel'], targets)
  elif method == 'score_cam':
    maps = score_cam_map(model, variables, images, features, targets, batch_size)
  else:  # eigen_cam: one map per image, the same for every class.
    maps = eigen_cam_map(features)
    if targets.ndim == 2:
      maps = jnp.broadcast_to(maps[:, None], (*targets.shape, *maps.shape[1:]))
  return maps, targets, probabilities


def class_activation_maps(model: nn.Module, variables: Variables, images: jax.Array,
                          targets: Any = 'predicted', *, method: str = 'grad_cam',
                          layer: str | None = None, dense_layer: str | None = None,
                          batch_size: int = 32,
                          channels_per_call: int = 0) -> ClassActivationMaps:
  """Class activation maps of a batch of images, by any of `METHODS`, in one jitted call (Score-CAM
  with `channels_per_call`: in several).

  Args:
    model: a Flax Linen model whose layers are direct, named submodules, returning (N, classes)
      logits (or (N, 1) for a binary model).
    variables: its variables.
    images: (N, H, W, C) in the model's input units.
    targets: 'predicted' (each image's top class), an int array (N,) (one class per image) or an
      int array (N, K) (K classes per image, e.g. every class: np.tile(np.arange(10), (N, 1))).
    method: one of `METHODS`.
    layer: the convolution layer; None for the last one (for CAM: the one before the pooling).
    dense_layer: CAM only: the dense layer after the pooling; None for the last layer.
    batch_size: Score-CAM only: masked images per forward pass.
    channels_per_call: Score-CAM only: 0 runs every channel's masked images in the one call; a
      positive number runs them that many channels per jitted call, under a progress bar
      (`cnnjax.progress`), with the same maps.

  Returns:
    The raw maps at the layer's resolution, with their targets and the model's probabilities.
  """
  if method not in METHODS:
    raise ConfigError(f'unknown class activation map method {method!r}; choose one of {METHODS}')
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f'images must be a batch (N, H, W, C), got shape {images.shape}')
  if not isinstance(targets, str):  # Only integer targets need the number of classes.
    targets = check_targets(targets, images.shape[0], _num_classes(model, variables, images))
  else:
    targets = check_targets(targets, images.shape[0], 0)
  if method == 'cam':
    layer, dense_layer = cam_layers(model, variables, images, layer, dense_layer)
  elif layer is None:
    layer = last_conv_layer(model, variables, images)
  # A layer the model lacks fails while `_maps` (or `_layer_features`) is traced, naming the
  # model's layers.
  if method == 'score_cam' and channels_per_call > 0:
    maps, targets, probabilities = _score_cam_in_calls(
        model, variables, images, targets, layer=layer, batch_size=batch_size,
        channels_per_call=channels_per_call)
    return ClassActivationMaps(maps, targets, probabilities, layer, method)
  maps, targets, probabilities = _maps(model, variables, images, targets, method=method,
                                       layer=layer, dense_layer=dense_layer,
                                       batch_size=batch_size)
  return ClassActivationMaps(maps, targets, probabilities, layer, method)


@dataclasses.dataclass(frozen=True)
class TopChannels:
  """The result of `top_channels`.

  Attributes:
    maps: (N, K, h, w) activation maps of the K channels, at the layer's resolution.
    channels: (N, K) the channels, the highest weight first.
    weights: (N, K) their weights in the dense kernel for each image's class.
    targets: (N,) the class of each image.
    probabilities: the model's class probabilities for each image, (N, classes).
    layer: the layer before the global average pooling.
    dense_layer: the dense layer whose kernel weighs the channels.
  """

  maps: jax.Array
  channels: jax.Array
  weights: jax.Array
  targets: jax.Array
  probabilities: jax.Array
  layer: str
  dense_layer: str


def class_channel_weights(dense_kernel: jax.Array, targets: jax.Array) -> jax.Array:
  """(N, C): each image's class column of the (C, classes) dense kernel; one unit: (-w, w)."""
  kernel = jnp.asarray(dense_kernel, jnp.float32)
  if kernel.shape[-1] == 1:
    kernel = jnp.concatenate([-kernel, kernel], axis=-1)
  return kernel[:, targets].T


@functools.partial(jax.jit, static_argnames=('model', 'layer', 'dense_layer', 'count'))
def _top_channels(model, variables, images, targets, *, layer, dense_layer, count):
  outputs, features = apply_perturbed(model, variables, images, layer)
  if targets is None:
    targets = jnp.argmax(class_scores(outputs), axis=-1)
  weights = class_channel_weights(variables['params'][dense_layer]['kernel'], targets)
  top_weights, channels = jax.lax.top_k(weights, count)  # Highest first.
  maps = jnp.take_along_axis(features, channels[:, None, None, :], axis=-1)
  return (jnp.moveaxis(maps, -1, 1), channels, top_weights, targets,
          class_probabilities(outputs))


def top_channels(model: nn.Module, variables: Variables, images: jax.Array,
                 targets: Any = 'predicted', *, count: int = 8, layer: str | None = None,
                 dense_layer: str | None = None) -> TopChannels:
  """The `count` channels with the highest weight for each image's class, and their maps.

  For a model whose layer `layer` is followed by global average pooling and one dense layer, the
  class score is sum_k w_kc mean(A_k) + b_c: the channels with the largest w_kc are the ones whose
  activation raises the score most per unit (CAM, `cam_map`, is the sum of all of them, each map
  times its weight).

  Args:
    model: a Flax Linen model whose layers are direct, named submodules.
    variables: its variables.
    images: (N, H, W, C) in the model's input units.
    targets: 'predicted' (each image's top class) or an int array (N,), one class per image.
    count: how many channels; at most the layer's channels.
    layer: the layer before the global average pooling; None finds it (`cam_layers`).
    dense_layer: the dense layer after it; None for the last layer.

  Returns:
    The channels, highest weight first, their weights and their activation maps.

  Raises:
    ConfigError: the model does not end in layer -> global average pooling -> dense (the message
      names its layers), or `count` or `targets` do not fit.
  """
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f'images must be a batch (N, H, W, C), got shape {images.shape}')
  layer, dense_layer = cam_layers(model, variables, images, layer, dense_layer)
  channels = int(variables['params'][dense_layer]['kernel'].shape[0])
  if not 1 <= count <= channels:
    raise ConfigError(f'count={count} channels asked for, but {dense_layer!r} weighs {channels} '
                      f'channels of {layer!r}; ask for 1 to {channels}')
  if not isinstance(targets, str):
    targets = check_targets(targets, images.shape[0], _num_classes(model, variables, images))
    if targets.ndim != 1:
      raise ConfigError(f'top_channels takes one class per image, targets of shape '
                        f'({images.shape[0]},), not {targets.shape}')
  else:
    targets = check_targets(targets, images.shape[0], 0)
  maps, indices, weights, targets, probabilities = _top_channels(
      model, variables, images, targets, layer=layer, dense_layer=dense_layer, count=count)
  return TopChannels(maps, indices, weights, targets, probabilities, layer, dense_layer)


def normalize_maps(maps: jax.Array, relu: bool = True) -> jax.Array:
  """ReLU, then each map (last two axes) divided by its maximum: values in [0, 1].

  A map with no positive value becomes all zeros, never NaN.
  """
  maps = jnp.asarray(maps, jnp.float32)
  if relu:
    maps = jax.nn.relu(maps)
  peak = maps.max(axis=(-2, -1), keepdims=True)
  return jnp.where(peak > 0, maps / jnp.where(peak > 0, peak, 1.0), 0.0)


def upsample(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Bilinear resize of the last two axes to `size` (the image's height and width)."""
  maps = jnp.asarray(maps, jnp.float32)
  return jax.image.resize(maps, (*maps.shape[:-2], *size), 'bilinear')


def heatmaps(result: ClassActivationMaps, size: tuple[int, int]) -> jax.Array:
  """The maps of a result as the reference shows them: ReLU, scaled to [0, 1], image-sized."""
  return upsample(normalize_maps(result.maps), size)
