"""Filter patterns: the input each filter responds to most, found by gradient ascent in input space.

The reference recipe (Chollet, Deep Learning with Python, listings 5.32-5.39; SPEC.md section 7):
the loss is the mean activation of filter i of a named layer; starting from uniform noise x20 + 128
(a grey image with a little noise), take 40 steps of size 1 along the gradient of the loss with
respect to the image, the gradient divided by its root mean square + 1e-5 so that every step moves
the image by about the same amount; then deprocess the image for display (centre, standard
deviation 0.1, + 0.5, clip to [0, 1], x255, uint8). The first 64 filters of a layer make an 8x8
grid of 64x64 tiles with 5-pixel black margins.

`filter_patterns` runs that recipe for many filters in one jitted call, vmapped over the filter
indices (the filters are independent, so they form one batch through the network). The reference
draws its noise in 0..255 pixel units because VGG16 takes such inputs; `input_scale` expresses the
same recipe for a model trained on other units (1/255 for images in [0, 1]): the noise and the step
are multiplied by it.

`lucid_filter_patterns` is the higher-quality mode of Olah et al. (Lucid): the image lives in a
decorrelated Fourier space (`image_parameterization`), is randomly jittered, scaled and rotated at
every step (`transform_robustness`), and is optimized with Adam. Its pieces (`lucid_start`,
`lucid_steps`, `lucid_images`) let a caller run the steps a few per call, carrying the spectra and
Adam's state from one call to the next, with the result of the one call.

Both work for any model whose layers are direct, named children: the forward pass stops at the
layer (`layer_probe.apply_until`), so a pattern can be larger than the images the model saw.
"""

import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from cnnjax.visualize import image_parameterization
from cnnjax.visualize import transform_robustness
from cnnjax.visualize.activations import tile_images
from cnnjax.visualize.layer_probe import apply_until

Variables = Mapping[str, Any]
Preprocess = Callable[[jax.Array], jax.Array]
# The state of a Lucid optimization between steps: the spectra and Adam's state.
LucidCarry = tuple[jax.Array, optax.OptState]


def filter_activation(model: nn.Module, variables: Variables, images: jax.Array, layer: str,
                      filter_index: int | jax.Array) -> jax.Array:
  """The loss the ascent maximizes: the mean activation of one filter of `layer` over `images`."""
  return apply_until(model, variables, images, layer)[..., filter_index].mean()


def normalize_gradient(grads: jax.Array) -> jax.Array:
  """grads / (sqrt(mean(grads^2)) + 1e-5): every step then moves the image by about the same RMS."""
  return grads / (jnp.sqrt(jnp.mean(jnp.square(grads))) + 1e-5)


def initial_image(key: jax.Array, size: int, channels: int, input_scale: float = 1.0) -> jax.Array:
  """A grey image with a little noise, (1, S, S, C): (uniform [0, 1) x 20 + 128) x input_scale."""
  return (jax.random.uniform(key, (1, size, size, channels)) * 20 + 128) * input_scale


def deprocess_image(x: jax.Array) -> jax.Array:
  """An image of any range to displayable uint8: centre, std 0.1, + 0.5, clip [0, 1], x255.

  Statistics are over the whole image (all pixels and channels); the last cast truncates, as the
  reference's astype('uint8') does.
  """
  x = x - x.mean()
  x = x / (x.std() + 1e-5)
  x = jnp.clip(x * 0.1 + 0.5, 0, 1)
  return jnp.clip(x * 255, 0, 255).astype(jnp.uint8)


def gradient_ascent(model: nn.Module, variables: Variables, layer: str,
                    filter_index: int | jax.Array, key: jax.Array, *, size: int, channels: int,
                    steps: int = 40, step_size: float = 1.0,
                    input_scale: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """The reference recipe for one filter.

  Args:
    model: a Flax Linen model whose layers are direct, named submodules.
    variables: its variables (kept fixed: only the image changes).
    layer: the layer whose filter is visualized.
    filter_index: the channel of the layer's output.
    key: the random key of the starting noise.
    size: height and width of the image.
    channels: channels of the model's input.
    steps: gradient-ascent steps.
    step_size: RMS of each step, in the reference's 0..255 pixel units.
    input_scale: the model's input units per reference pixel unit (1/255 for [0, 1] inputs).

  Returns:
    (the final image (S, S, C) in the model's input units, the loss before each step (steps,)).
  """
  loss_and_grad = jax.value_and_grad(
      lambda x: filter_activation(model, variables, x, layer, filter_index))

  def step(image, _):
    loss, grads = loss_and_grad(image)
    return image + normalize_gradient(grads) * (step_size * input_scale), loss

  image = initial_image(key, size, channels, input_scale)
  image, losses = jax.lax.scan(step, image, length=steps)
  return image[0], losses


def filter_keys(key: jax.Array, filter_indices: jax.Array) -> jax.Array:
  """One key per filter, folded from its index: a filter's noise does not depend on the others."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(filter_indices)


@functools.partial(jax.jit, static_argnames=('model', 'layer', 'size', 'channels', 'steps',
                                             'step_size', 'input_scale'))
def filter_patterns(model: nn.Module, variables: Variables, layer: str, filter_indices: jax.Array,
                    key: jax.Array, *, size: int, channels: int, steps: int = 40,
                    step_size: float = 1.0,
                    input_scale: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """`gradient_ascent` for many filters of a layer in one jitted call, vmapped over the filters.

  Filter k starts from the noise of `jax.random.fold_in(key, k)`, so the result for a filter is the
  same whichever other filters are computed with it.

  Returns:
    (images (K, S, S, C) in the model's input units, losses (K, steps)); `deprocess_image` each
    image for display.
  """
  filter_indices = jnp.asarray(filter_indices)
  ascent = functools.partial(gradient_ascent, model, variables, layer, size=size,
                             channels=channels, steps=steps, step_size=step_size,
                             input_scale=input_scale)
  return jax.vmap(ascent)(filter_indices, filter_keys(key, filter_indices))


def pattern_grid(patterns: jax.Array, columns: int = 8, margin: int = 5) -> jax.Array:
  """Tiles uint8 patterns (K, S, S, C) row-major, `margin` black pixels apart, as one image.

  Filter k sits at row k // columns, column k % columns (the reference fills its grid column by
  column; rows read more naturally). Grayscale patterns give a 2-D grid.
  """
  grid = tile_images(patterns, columns, margin, fill=0)
  return grid[..., 0] if grid.shape[-1] == 1 else grid


def _identity(images: jax.Array) -> jax.Array:
  return images


def lucid_start(key: jax.Array, count: int, *, size: int, channels: int, steps: int,
                learning_rate: float = 0.05) -> tuple[LucidCarry, jax.Array]:
  """Where the Lucid optimization of `count` filters starts: (spectra, Adam's state) and the key
  of each step's transforms, (steps,) keys.

  The spectra of all the filters are drawn together, from the first half of `key`; the step keys
  come from the second half, so running the steps in several calls changes neither.
  """
  init_key, transform_key = jax.random.split(key)
  spectrum = image_parameterization.init_spectrum(init_key, count, size, size, channels)
  return (spectrum, optax.adam(learning_rate).init(spectrum)), jax.random.split(transform_key,
                                                                                steps)


@functools.partial(jax.jit, static_argnames=('size', 'decorrelate'))
def lucid_images(spectrum: jax.Array, *, size: int, decorrelate: bool = True) -> jax.Array:
  """The images (K, S, S, C) in [0, 1] of the Lucid parameterization's spectra."""
  return image_parameterization.spectrum_to_image(spectrum, size, size, decorrelate)


@functools.partial(jax.jit, static_argnames=(
    'model', 'layer', 'size', 'learning_rate', 'preprocess', 'decorrelate', 'transforms',
    'pre_activation'))
def lucid_steps(model: nn.Module, variables: Variables, layer: str, filter_indices: jax.Array,
                carry: LucidCarry, step_keys: jax.Array, *, size: int,
                learning_rate: float = 0.05, preprocess: Preprocess = _identity,
                decorrelate: bool = True, transforms: bool = True,
                pre_activation: bool = True) -> tuple[LucidCarry, jax.Array]:
  """Adam steps of the Lucid optimization, one per key of `step_keys` (`lax.scan`).

  Takes and returns the carry (spectra, Adam's state) of `lucid_start`, so that the steps can run
  a few per call (the visualize job's progress) with the result of one call. The arguments are
  those of `lucid_filter_patterns`.

  Returns:
    (the carry after the steps, the objective before each step (K, len(step_keys))).
  """
  filter_indices = jnp.asarray(filter_indices)
  optimizer = optax.adam(learning_rate)

  def loss_fn(spectrum, step_key):
    images = lucid_images(spectrum, size=size, decorrelate=decorrelate)
    if transforms:
      images = transform_robustness.robust_transform(step_key, images)
    outputs = apply_until(model, variables, preprocess(images), layer, pre_activation)
    # The filters are independent: the sum of their mean activations has, for each image, the
    # gradient of its own filter's objective.
    activations = jax.vmap(lambda out, k: out[..., k].mean())(outputs, filter_indices)
    return -activations.sum(), activations

  def step(carry, step_key):
    spectrum, opt_state = carry
    grads, activations = jax.grad(loss_fn, has_aux=True)(spectrum, step_key)
    updates, opt_state = optimizer.update(grads, opt_state, spectrum)
    return (optax.apply_updates(spectrum, updates), opt_state), activations

  carry, activations = jax.lax.scan(step, carry, step_keys)
  return carry, activations.T


@functools.partial(jax.jit, static_argnames=(
    'model', 'layer', 'size', 'channels', 'steps', 'learning_rate', 'preprocess', 'decorrelate',
    'transforms', 'pre_activation'))
def lucid_filter_patterns(model: nn.Module, variables: Variables, layer: str,
                          filter_indices: jax.Array, key: jax.Array, *, size: int, channels: int,
                          steps: int = 256, learning_rate: float = 0.05,
                          preprocess: Preprocess = _identity, decorrelate: bool = True,
                          transforms: bool = True,
                          pre_activation: bool = True) -> tuple[jax.Array, jax.Array]:
  """Feature visualization of many filters as in Lucid: Fourier, decorrelated, robust, Adam.

  One jitted call: `lucid_start`, all the `lucid_steps`, `lucid_images`.

  Args:
    model: a Flax Linen model whose layers are direct, named submodules.
    variables: its variables.
    layer: the layer whose filters are visualized.
    filter_indices: the channels of the layer's output, (K,).
    key: random key of the initial spectra and of the transforms.
    size: height and width of the images.
    channels: channels of the model's input (3: colour decorrelation applies).
    steps: Adam steps.
    learning_rate: Adam's learning rate.
    preprocess: maps images in [0, 1] to the model's input (e.g. Keras' 'caffe' preprocessing for
      VGG16); identity for a model trained on [0, 1] images. A static argument: pass a named
      function, not a new lambda per call, or each call compiles again.
    decorrelate: whether to decorrelate colours (only for 3 channels).
    transforms: whether to jitter, scale and rotate at random every step.
    pre_activation: maximize the filter's mean output before the layer's ReLU (as Lucid's
      objectives on '..._pre_relu' layers do): a filter that is silent on the grey starting image
      still has a gradient, where after the ReLU it would have none and never change.

  Returns:
    (images (K, S, S, C) in [0, 1], the objective before each step (K, steps)).
  """
  filter_indices = jnp.asarray(filter_indices)
  carry, step_keys = lucid_start(key, filter_indices.shape[0], size=size, channels=channels,
                                 steps=steps, learning_rate=learning_rate)
  (spectrum, _), activations = lucid_steps(
      model, variables, layer, filter_indices, carry, step_keys, size=size,
      learning_rate=learning_rate, preprocess=preprocess, decorrelate=decorrelate,
      transforms=transforms, pre_activation=pre_activation)
  return lucid_images(spectrum, size=size, decorrelate=decorrelate), activations


def to_uint8(images: jax.Array) -> jax.Array:
  """Images in [0, 1] to uint8 (rounded)."""
  return jnp.round(jnp.clip(images, 0, 1) * 255).astype(jnp.uint8)
