"""Reaching inside a model at a named layer: its output, and the model split there.

Every visualization here needs the output of one named layer, and some need derivatives with
respect to it. Flax Linen has no model surgery, but it lets a caller intercept module calls
(`flax.linen.intercept_methods`). This module uses that, for any model whose layers are direct,
named children (every cnnjax model), in two ways:

- `apply_until` stops the forward pass as soon as the layer has produced its output, so layers
  after it never run: like a Keras `Model(inputs, layer.output)`, it accepts any input size that
  the layers up to it accept (a filter pattern at 64x64 through a net trained at 28x28 with a
  Flatten head). The interceptor raises an exception carrying the output, caught right outside
  `model.apply`; under `jit`, `grad` or `vmap` this is ordinary Python control flow during tracing.
- `apply_perturbed` runs the whole model with a tensor `delta` added to the layer's output and
  returns the model's output and the layer's (unperturbed) output. The derivative of anything
  computed from the model's output with respect to `delta`, at `delta = 0`, is the derivative
  with respect to the layer's output: `jax.grad` / `jax.vjp` over `delta` give Grad-CAM its
  gradients, with no hooks and no global state.

A layer called more than once in one forward pass (a shared module) has no single output; both
functions refuse it.
"""

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.errors import ConfigError
from cnnjax.models.layer_outputs import layer_types

Variables = Mapping[str, Any]


class _LayerReached(Exception):
  """Carries a layer's output out of `model.apply`; never escapes this module."""

  def __init__(self, output: Any):
    super().__init__('layer reached')
    self.output = output


def _is_layer_call(context, layer: str) -> bool:
  return context.method_name == '__call__' and tuple(context.module.path) == (layer,)


def check_layer(model: nn.Module, variables: Variables, images: jax.Array, layer: str,
                **apply_kwargs) -> list[str]:
  """Raises a ConfigError naming the model's layers if `layer` is not one of them; returns them."""
  names = list(layer_types(model, variables, images, **apply_kwargs))
  if layer not in names:
    raise ConfigError(f'{type(model).__name__} has no layer named {layer!r}; its layers are '
                      f'{names}')
  return names


def apply_until(model: nn.Module, variables: Variables, images: jax.Array, layer: str,
                pre_activation: bool = False, **apply_kwargs) -> jax.Array:
  """The output of `layer` for `images`; the layers after it are never run.

  Args:
    model: a Flax Linen model whose layers are direct, named submodules.
    variables: the model's variables.
    images: a batch of inputs.
    layer: the name of the layer whose output is wanted.
    pre_activation: return the layer's output before its activation function instead: the layer
      runs again on the same input as a copy with `activation=None` (cnnjax's Conv2D and Dense
      apply their activation inside; a layer without an `activation` field is an error).
    **apply_kwargs: passed on to `model.apply` (e.g. `train=False`).

  Returns:
    The layer's output for the batch.
  """

  def stop_after_layer(next_fun, args, kwargs, context):
    output = next_fun(*args, **kwargs)
    if _is_layer_call(context, layer):
      if pre_activation:
        output = _without_activation(context.module, variables, layer, args, kwargs)
      raise _LayerReached(output)
    return output

  try:
    with nn.intercept_methods(stop_after_layer):
      model.apply(variables, images, **apply_kwargs)
  except _LayerReached as reached:
    return reached.output
  check_layer(model, variables, images, layer, **apply_kwargs)
  raise ConfigError(f'layer {layer!r} of {type(model).__name__} was never called by its __call__')


def _without_activation(module: nn.Module, variables: Variables, layer: str, args, kwargs):
  if not hasattr(module, 'activation'):
    raise ConfigError(f'layer {layer!r} ({type(module).__name__}) has no activation field, so it '
                      'has no pre-activation output to look at')
  linear = module.clone(parent=None, activation=None)
  layer_variables = {collection: tree[layer] for collection, tree in variables.items()
                     if layer in tree}
  return linear.apply(layer_variables, *args, **kwargs)


def apply_perturbed(model: nn.Module, variables: Variables, images: jax.Array, layer: str,
                    delta: jax.Array | float = 0.0, **apply_kwargs) -> tuple[Any, jax.Array]:
  """Runs the model with `delta` added to the output of `layer`.

  Args:
    model: a Flax Linen model whose layers are direct, named submodules.
    variables: the model's variables.
    images: a batch of inputs.
    layer: the layer whose output is perturbed.
    delta: added to the layer's output; an array of its shape, or a scalar.
    **apply_kwargs: passed on to `model.apply`.

  Returns:
    (the model's output, the layer's output before `delta` was added).
  """
  captured = []

  def add_delta(next_fun, args, kwargs, context):
    output = next_fun(*args, **kwargs)
    if _is_layer_call(context, layer):
      captured.append(output)
      return output + delta
    return output

  with nn.intercept_methods(add_delta):
    outputs = model.apply(variables, images, **apply_kwargs)
  if not captured:
    check_layer(model, variables, images, layer, **apply_kwargs)
    raise ConfigError(f'layer {layer!r} of {type(model).__name__} was never called by its '
                      '__call__')
  if len(captured) > 1:
    raise ConfigError(f'layer {layer!r} of {type(model).__name__} is called {len(captured)} '
                      'times in one forward pass, so it has no single output to look at')
  return outputs, captured[0]


def layer_output_shape(model: nn.Module, variables: Variables, images: jax.Array, layer: str,
                       **apply_kwargs) -> jax.ShapeDtypeStruct:
  """The shape and dtype of `layer`'s output for `images`, traced, never computed."""
  return jax.eval_shape(lambda v, x: apply_until(model, v, x, layer, **apply_kwargs),
                        variables, images)


def zeros_like_layer(model: nn.Module, variables: Variables, images: jax.Array, layer: str,
                     **apply_kwargs) -> jax.Array:
  """A zero perturbation for `apply_perturbed`: the shape and dtype of the layer's output."""
  shape = layer_output_shape(model, variables, images, layer, **apply_kwargs)
  return jnp.zeros(shape.shape, shape.dtype)
