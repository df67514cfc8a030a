"""Every layer's output by name, for any Flax model: what summaries and visualizations look at.

Flax records the return value of each submodule's `__call__` when `capture_intermediates` is on;
this module turns that record into an ordered `{layer name: output}` mapping, in the order the
model calls them. No hooks, no global state: it is one more `apply`.

A layer's name is its module path joined by '/', as its parameters' paths are: a flat model's
layers are its direct children ('block1_conv1', 'conv2_block1_out'), and a nested one's deeper
layers are reached through their parents ('layer1', 'layer1/0', 'layer1/0/conv1' in torchvision's
ResNet layout). Without `names`, the direct children are returned.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax


def layer_types(model: nn.Module, variables: Mapping[str, Any], images: jax.Array,
                **apply_kwargs) -> dict[str, str]:
  """The model's direct layers in call order, as {name: class name}; traced, never computed."""
  calls: dict[str, str] = {}

  def record(module: nn.Module, method_name: str) -> bool:
    if method_name == '__call__' and len(module.path) == 1:
      calls.setdefault(module.path[0], type(module).__name__)
    return False

  jax.eval_shape(lambda v, x: model.apply(v, x, capture_intermediates=record,
                                          mutable=['intermediates'], **apply_kwargs),
                 variables, images)
  return calls


def _top_level_calls(module: nn.Module, method_name: str) -> bool:
  return method_name == '__call__' and len(module.path) == 1


def _flatten_intermediates(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'/'-joined module path: first recorded output} of a nested intermediates collection."""
  outputs = {}
  for key, value in tree.items():
    if key == '__call__':
      outputs[prefix] = value[0]
    else:
      outputs.update(_flatten_intermediates(value, f'{prefix}/{key}' if prefix else key))
  return outputs


def layer_outputs(model: nn.Module, variables: Mapping[str, Any], images: jax.Array,
                  names: Sequence[str] | None = None, **apply_kwargs) -> dict[str, jax.Array]:
  """Runs `model` on `images` and returns the outputs of its layers, in call order.

  Args:
    model: a Flax Linen module whose layers are direct, named submodules.
    variables: the model's variables (`{'params': ...}` and any other collections).
    images: a batch of inputs.
    names: the layers wanted, by '/'-joined path ('layer1/0/conv1' inside nested blocks); None
      for all the direct children. An unknown name is an error listing the known ones.
    **apply_kwargs: passed on to `model.apply` (e.g. `train=False`, `rngs=...`).

  Returns:
    A dict, in call order, from layer name to that layer's output for the batch.
  """
  if names is not None and any('/' in name for name in names):
    wanted = frozenset(names)
    _, state = model.apply(
        variables, images, mutable=['intermediates'], **apply_kwargs,
        capture_intermediates=lambda m, method: (method == '__call__'
                                                 and '/'.join(m.path) in wanted))
    outputs = _flatten_intermediates(state.get('intermediates', {}))
    unknown = [name for name in names if name not in outputs]
    if unknown:
      top = list(layer_types(model, variables, images, **apply_kwargs))
      raise KeyError(f'no layer named {unknown} in {type(model).__name__}; its layers are {top} '
                     "and the layers inside them, named by path ('layer1/0/conv1')")
    return {name: outputs[name] for name in names}
  _, state = model.apply(variables, images, capture_intermediates=_top_level_calls,
                         mutable=['intermediates'], **apply_kwargs)
  # Collections come back as pytrees, whose dict keys JAX sorts; restore the call order.
  order = layer_types(model, variables, images, **apply_kwargs)
  outputs = {name: state['intermediates'][name]['__call__'][0] for name in order}
  if names is None:
    return outputs
  unknown = [name for name in names if name not in outputs]
  if unknown:
    raise KeyError(f'no layer named {unknown} in {type(model).__name__}; '
                   f'its layers are {list(outputs)}')
  return {name: outputs[name] for name in names}
