"""Reading layer weights out of Keras HDF5 files with h5py alone, as {layer name: [arrays]}.

Two layouts exist, and neither needs Keras to read:

- Legacy HDF5 (Keras 1/2, tf.keras, and Keras 3's legacy writer; the ImageNet files such as
  vgg16_weights_tf_dim_ordering_tf_kernels.h5): the root (or the `model_weights` group of a file
  saved with `model.save('x.h5')`) has a `layer_names` attribute; each layer's group has a
  `weight_names` attribute listing its datasets, in the order Keras created the weights (kernel,
  then bias). Dataset names vary by writer (`block1_conv1_W_1:0` in the ImageNet files,
  `block1_conv1/kernel:0` in tf.keras, `block1_conv1/kernel` in Keras 3), which is why they are
  looked up through `weight_names` rather than guessed. Attributes too large for an HDF5 header are
  split into `layer_names0`, `layer_names1`, ...
- Keras 3 `.weights.h5` (`model.save_weights('x.weights.h5')`): `layers/<key>/vars/<i>`, where
  `<key>` comes from the layer's class and creation order (`conv2d`, `conv2d_1`, ..., `dense`), not
  from its name. Recent Keras versions also store the layer's name as the `name` attribute of the
  `vars` group; older files need the caller's table from class keys to layer names.

Both readers return the arrays in the file's order and leave the mapping onto a model's
parameters to the caller (`to_flax_params` for layers built from `cnnjax.models.layers`).
"""

import os
import re
from typing import Mapping, Sequence

import h5py
import numpy as np

from cnnjax.errors import DataError

LayerWeights = dict[str, list[np.ndarray]]


def _strings(values) -> list[str]:
  return [v.decode('utf8') if isinstance(v, bytes) else str(v) for v in values]


def _string_list_attr(group: h5py.Group, name: str) -> list[str]:
  """An attribute holding a list of names, joining the chunks Keras splits large ones into."""
  if name in group.attrs:
    return _strings(group.attrs[name])
  names, chunk = [], 0
  while f'{name}{chunk}' in group.attrs:
    names += _strings(group.attrs[f'{name}{chunk}'])
    chunk += 1
  return names


def read_legacy_h5(path: str | os.PathLike) -> LayerWeights:
  """The weights of every layer that has some, by layer name, from a legacy Keras HDF5 file.

  Args:
    path: a Keras 1/2, tf.keras or Keras 3 legacy HDF5 weights file, or a whole model saved as
      HDF5 (its `model_weights` group is read).

  Returns:
    {layer name: [arrays in the order of the layer's `weight_names`]}, in the file's layer order.
  """
  path = os.fspath(path)
  with h5py.File(path, 'r') as f:
    group = f['model_weights'] if 'model_weights' in f else f
    backend = group.attrs.get('backend')
    if isinstance(backend, bytes):
      backend = backend.decode('utf8')
    if backend == 'theano':
      # Theano convolutions flip their kernels: those weights would load and compute garbage.
      raise DataError(f'{path!r} was saved by Keras with the Theano backend, whose convolution '
                      'kernels are flipped; use a file saved with the TensorFlow or JAX backend '
                      '(the *_tf_dim_ordering_tf_kernels*.h5 files)')
    layer_names = _string_list_attr(group, 'layer_names')
    if not layer_names:
      raise DataError(f"{path!r} has no 'layer_names' attribute: it is not a legacy Keras HDF5 "
                      'weights file')
    weights: LayerWeights = {}
    problems = []
    for name in layer_names:
      if name not in group:
        problems.append(f"layer {name!r} is listed in 'layer_names' but has no group")
        continue
      layer = group[name]
      weight_names = _string_list_attr(layer, 'weight_names')
      absent = [w for w in weight_names if w not in layer]
      if absent:
        problems.append(f"layer {name!r} lists weights {absent} that are not in the file")
      elif weight_names:
        weights[name] = [np.asarray(layer[w]) for w in weight_names]
    if problems:
      raise DataError(f'{path!r} is inconsistent: ' + '; '.join(problems))
  return weights


def class_key(key: str) -> tuple[str, int]:
  """'conv2d_12' -> ('conv2d', 12); 'conv2d' -> ('conv2d', 0): how Keras 3 keys its layers."""
  base, index = re.fullmatch(r'(.+?)(?:_(\d+))?', key).groups()
  return base, int(index or 0)


def layer_name(key: str, layer_names_by_class: Mapping[str, Sequence[str]]) -> str:
  """A Keras 3 class key ('conv2d_3') as the layer name the table lists for it (the fourth of
  'conv2d'); a key the table does not cover stays as it is."""
  base, index = class_key(key)
  names = layer_names_by_class.get(base, ())
  return names[index] if index < len(names) else key


def read_keras3_weights_h5(
    path: str | os.PathLike,
    layer_names_by_class: Mapping[str, Sequence[str]] | None = None) -> LayerWeights:
  """The weights of every top-level layer that has some, from a Keras 3 `.weights.h5` file.

  Args:
    path: a file written by Keras 3's `model.save_weights('x.weights.h5')`.
    layer_names_by_class: for files whose `vars` groups carry no `name` attribute, the layer
      names in creation order per class key, e.g. {'conv2d': ['block1_conv1', ...],
      'dense': ['fc1', 'fc2', 'predictions']}. A layer it does not cover keeps its class key as
      its name, so a later merge reports it as extra.

  Returns:
    {layer name: [arrays in the order of `vars/0`, `vars/1`, ...]}, in creation order per class.
  """
  path = os.fspath(path)
  table = layer_names_by_class or {}
  weights: LayerWeights = {}
  with h5py.File(path, 'r') as f:
    if 'layers' not in f:
      raise DataError(f"{path!r} has no 'layers' group: it is not a Keras 3 .weights.h5 file")
    for key in sorted(f['layers'], key=class_key):
      layer = f['layers'][key]
      if 'layers' in layer:
        raise DataError(f'{path!r} holds a nested model under layers/{key}; save the weights of '
                        'the model being ported itself (e.g. the VGG16 base), not of a model '
                        'that contains it')
      variables = layer.get('vars')
      if variables is None or not len(variables):
        continue
      name = variables.attrs.get('name')
      if isinstance(name, bytes):
        name = name.decode('utf8')
      if not name:
        name = layer_name(key, table)
      weights[name] = [np.asarray(variables[i]) for i in sorted(variables, key=int)]
  return weights


def to_flax_params(weights: Mapping[str, Sequence[np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
  """Keras Conv2D / Dense weights ([kernel, bias] or [kernel]) as cnnjax layer parameters.

  Keras and cnnjax both store convolution kernels HWIO and dense kernels (in, out), so the arrays
  pass through unchanged. Layers with other weights (e.g. BatchNormalization's four) are an error.
  """
  params, problems = {}, []
  for name, arrays in weights.items():
    if len(arrays) == 2:
      params[name] = {'kernel': arrays[0], 'bias': arrays[1]}
    elif len(arrays) == 1:
      params[name] = {'kernel': arrays[0]}
    else:
      problems.append(f'{name!r} ({len(arrays)} weights)')
  if problems:
    raise DataError('only layers with a kernel and an optional bias can be mapped; these have '
                    f'other weights: {", ".join(problems)}')
  return params
