"""Keras' InceptionV3 weight files as `cnnjax.models.inception_v3.InceptionV3` variables.

cnnjax never downloads; get a file and pass its path (the images need `preprocess_input(x,
mode='tf')`, or the model's `preprocess='tf'`, for pixels in 0..255): KERAS_URL (with the top) or
KERAS_NO_TOP_URL (without). Both Keras formats load.

InceptionV3's layers have automatic names (`conv2d_N`, `batch_normalization_N`) that depend on
what else the saving Keras process had built, so the names in a file mean nothing. Keras itself
pairs files with models by position, and so does this table:

- legacy HDF5 (the ImageNet files; Keras 3's legacy writer): Keras 3 loads the file's layers that
  have weights, in the order of its `layer_names` attribute, into the model's layers that have
  weights, in `model.layers` order. Here the file's one-array layers are the convolutions (a
  kernel, no bias), its three-array layers the BatchNormalizations (beta, moving mean, moving
  variance: no gamma) and a two-array layer the dense `predictions`, each class in file order;
- Keras 3 `.weights.h5`: `layers/<class key>/vars/0..n`, the class key counting the layers of a
  class in `model.layers` order (conv2d_5 is the sixth Conv2D listed, whatever its name), which
  `keras_h5.read_keras3_weights_h5` returns sorted by that count.

Either way the k-th convolution of the file is the k-th of `inception_v3.keras_layer_order()`,
Keras' `model.layers` order computed from cnnjax's own architecture, and likewise for the
BatchNormalizations. A file whose weight shapes in that order are not InceptionV3's is not
identified as one, so loading it is an error that says what it looks like instead.
"""

import numpy as np

from cnnjax.errors import DataError
from cnnjax.models.inception_v3 import keras_layer_order
from cnnjax.weights import files, registry

MODEL = 'inception_v3'
KERAS_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/'
             'inception_v3_weights_tf_dim_ordering_tf_kernels.h5')
KERAS_NO_TOP_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/'
                    'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5')
WHERE_TO_GET = (f'Download the Keras ImageNet weights of InceptionV3, {KERAS_URL} (with the top) '
                f'or {KERAS_NO_TOP_URL} (without), and pass the downloaded file\'s path.')

# Arrays per layer in a Keras file: Conv2D without bias, BatchNormalization without gamma, Dense.
CONV, BATCH_NORM, DENSE = 1, 3, 2


def _layers_by_kind(weight_file: files.WeightFile) -> dict[int, list[tuple[str, list]]]:
  """The file's layers grouped by how many arrays they hold, each group in the file's order."""
  kinds: dict[int, list[tuple[str, list]]] = {}
  for name, arrays in weight_file.arrays.items():
    kinds.setdefault(len(arrays), []).append((name, arrays))
  return kinds


def _expected(kind: int) -> list[tuple[str, tuple[tuple[int, ...], ...]]]:
  return [(name, shapes) for name, shapes in keras_layer_order(include_top=False)
          if len(shapes) == kind]


def to_variables(weight_file: files.WeightFile, model_name: str = MODEL) -> dict:
  """{'params': ..., 'batch_stats': ...} from a Keras InceptionV3 file, layers paired by order.

  The convolutions and BatchNormalizations are paired in Keras' order; a dense layer becomes
  'predictions'. Layers left over (a file with more layers than InceptionV3 has) keep the file's
  names, so that a merge lists them as not in the model.
  """
  del model_name  # One model: the table serves inception_v3 alone.
  if weight_file.format == files.TORCH:
    raise DataError(f'{weight_file.path!r} is a PyTorch file; Keras InceptionV3 weights come in '
                    f'Keras files. {WHERE_TO_GET}')
  kinds = _layers_by_kind(weight_file)
  params, batch_stats = {}, {}
  for index, (name, arrays) in enumerate(kinds.pop(CONV, [])):
    convs = _expected(CONV)
    params[convs[index][0] if index < len(convs) else name] = {'kernel': arrays[0]}
  for index, (name, (beta, mean, variance)) in enumerate(kinds.pop(BATCH_NORM, [])):
    norms = _expected(BATCH_NORM)
    name = norms[index][0] if index < len(norms) else name
    params[name] = {'bias': beta}
    batch_stats[name] = {'mean': mean, 'var': variance}
  dense = kinds.pop(DENSE, [])
  for index, (name, (kernel, bias)) in enumerate(dense):
    params['predictions' if index == 0 else name] = {'kernel': kernel, 'bias': bias}
  for arrays_of_kind in kinds.values():
    for name, arrays in arrays_of_kind:
      params[name] = {f'weight{i}': np.asarray(a) for i, a in enumerate(arrays)}
  return {'params': params, 'batch_stats': batch_stats}


def identify(weight_file: files.WeightFile) -> str | None:
  """'inception_v3' when the file's convolutions and BatchNormalizations have exactly
  InceptionV3's shapes in Keras' order (and at most one dense layer besides)."""
  if weight_file.format == files.TORCH:
    return None
  kinds = _layers_by_kind(weight_file)
  if set(kinds) - {CONV, BATCH_NORM, DENSE} or len(kinds.get(DENSE, [])) > 1:
    return None
  for kind in (CONV, BATCH_NORM):
    found = [tuple(np.shape(a) for a in arrays) for _, arrays in kinds.get(kind, [])]
    if found != [shapes for _, shapes in _expected(kind)]:
      return None
  return MODEL


registry.register_weights(registry.WeightTable(
    family='InceptionV3 (Keras)', models=(MODEL,), to_variables=to_variables, identify=identify,
    where_to_get=WHERE_TO_GET,
    preprocess={files.KERAS_LEGACY_H5: 'tf', files.KERAS_WEIGHTS_H5: 'tf'}))
