"""Pretrained VGG16 weights from Keras or torchvision files, as `cnnjax.models.vgg16.VGG16` params.

cnnjax never downloads; get a file and pass its path:

- Keras (trained in Caffe, so the images need `preprocess_input(x, mode='caffe')`):
  KERAS_URL (with the top) or KERAS_NO_TOP_URL (the base alone). Files written by
  Keras 3's `model.save_weights('x.weights.h5')` or any legacy HDF5 writer load too.
- torchvision (`preprocess_input(x, mode='torch')`): TORCHVISION_URL, the state dict of
  `torchvision.models.vgg16(weights='IMAGENET1K_V1')`, read without torch.

Keras layers map by name; torchvision's `features.N` / `classifier.N` keys through TORCHVISION_KEYS,
with OIHW kernels turned HWIO and (out, in) dense kernels transposed. torchvision flattens the last
feature map as NCHW (channel, row, column) while cnnjax, like Keras, flattens NHWC (row, column,
channel), so fc1's input rows are reordered too. torchvision's adaptive average pooling to 7x7
before the classifier is the identity at 224x224, the only size its top fits.
"""

import math
import os

import numpy as np

from cnnjax.errors import DataError
from cnnjax.models.vgg16 import BLOCKS, CONV_LAYERS, TOP_LAYERS
from cnnjax.weights import files, keras_h5, registry

KERAS_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/vgg16/'
             'vgg16_weights_tf_dim_ordering_tf_kernels.h5')
KERAS_NO_TOP_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/vgg16/'
                    'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5')
TORCHVISION_URL = 'https://download.pytorch.org/models/vgg16-397923af.pth'
WHERE_TO_GET = (f'Download the Keras ImageNet weights, {KERAS_URL} (with the top) or '
                f'{KERAS_NO_TOP_URL} (without), or torchvision\'s, {TORCHVISION_URL}, and pass '
                'the downloaded file\'s path.')

# torchvision's nn.Sequential indices: ReLUs, max-poolings and dropouts sit between the layers.
TORCHVISION_KEYS = {
    **dict(zip(CONV_LAYERS, (f'features.{i}' for i in
                             (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)))),
    'fc1': 'classifier.0', 'fc2': 'classifier.3', 'predictions': 'classifier.6',
}
# Keras 3 .weights.h5 files without layer names key layers by class and creation order.
KERAS3_LAYERS_BY_CLASS = {'conv2d': CONV_LAYERS, 'dense': TOP_LAYERS}
_FEATURE_CHANNELS = BLOCKS[-1][2]


def nchw_to_nhwc_rows(kernel: np.ndarray, channels: int) -> np.ndarray:
  """Reorders a dense kernel's input rows from NCHW-flatten order to NHWC-flatten order.

  Args:
    kernel: (channels * side * side, out), rows indexed by (channel, row, column).
    channels: channels of the square feature map that was flattened.

  Returns:
    The same kernel with rows indexed by (row, column, channel).
  """
  inputs, outputs = kernel.shape
  side = math.isqrt(inputs // channels)
  if inputs % channels or side * side * channels != inputs:
    raise DataError(f'a dense layer with {inputs} inputs does not follow a square feature map '
                    f'of {channels} channels')
  return (kernel.reshape(channels, side, side, outputs).transpose(1, 2, 0, 3)
          .reshape(inputs, outputs))


def params_from_torchvision(state_dict: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
  """torchvision VGG16 state dict -> VGG16 params; keys outside TORCHVISION_KEYS keep their name.

  Unknown keys (e.g. another VGG's 'features.30.weight') stay under their torch name, so that
  `merge_params` lists them as not in the model rather than dropping them silently.
  """
  layer_of = {key: name for name, key in TORCHVISION_KEYS.items()}
  params: dict[str, dict[str, np.ndarray]] = {}
  for key, value in state_dict.items():
    module, _, kind = key.rpartition('.')
    name = layer_of.get(module, module)
    if kind == 'weight' and value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO; both are cross-correlations.
    elif kind == 'weight' and value.ndim == 2:
      value = value.T
      if name == 'fc1':
        value = nchw_to_nhwc_rows(value, _FEATURE_CHANNELS)
    params.setdefault(name, {})['kernel' if kind == 'weight' else kind] = value
  return params


def params_from_file(weight_file: files.WeightFile) -> dict[str, dict[str, np.ndarray]]:
  """VGG16 parameters from a weights file of any format, with whatever layers it holds."""
  if weight_file.format == files.TORCH:
    return params_from_torchvision(weight_file.arrays)
  arrays = weight_file.arrays
  if weight_file.format == files.KERAS_WEIGHTS_H5:
    arrays = {keras_h5.layer_name(key, KERAS3_LAYERS_BY_CLASS): value
              for key, value in arrays.items()}
  return keras_h5.to_flax_params(arrays)


def identify(weight_file: files.WeightFile) -> str | None:
  """'vgg16' for VGG16's layers, 'a VGG-style network' for Keras' VGG names on fewer blocks."""
  names = weight_file.names
  if weight_file.format == files.TORCH:
    return 'vgg16' if 'features.0.weight' in names and 'features.28.weight' in names else None
  if weight_file.format == files.KERAS_WEIGHTS_H5:
    names = [keras_h5.layer_name(key, KERAS3_LAYERS_BY_CLASS) for key in names]
  if 'block1_conv1' not in names:
    return None
  return 'vgg16' if 'block5_conv3' in names else 'a VGG-style network (block1_conv1, ...)'


def load_vgg16_weights(path: str | os.PathLike, *,
                       include_top: bool | None = None) -> dict[str, dict[str, np.ndarray]]:
  """VGG16 parameters from a Keras or torchvision weights file, in whichever format it is.

  Args:
    path: a Keras legacy HDF5 file (the ImageNet files, tf.keras `save_weights`, or a whole
      model's .h5), a Keras 3 `.weights.h5` file, or a torchvision state dict (.pth).
    include_top: True requires fc1, fc2 and predictions in the file; False drops them (the
      with-top file then serves the base too); None returns whatever the file has.

  Returns:
    {layer name: {'kernel': array, 'bias': array}} as NumPy arrays, ready for
    `merge_params(variables['params'], loaded)` or `model.apply({'params': loaded}, images)`.
    Nothing is checked against a model here: `merge_params` does that.
  """
  path = files.require_file(path, WHERE_TO_GET)
  params = params_from_file(files.read_weights(path))
  if include_top is False:
    params = {name: value for name, value in params.items() if name not in TOP_LAYERS}
  elif include_top:
    absent = [name for name in TOP_LAYERS if name not in params]
    if absent:
      raise DataError(f'{path!r} has no {", ".join(absent)}: it holds the convolutional base '
                      'only. Load it with include_top=False (and a model without the top, or '
                      f'with allow_missing for a new head), or use the with-top file {KERAS_URL} '
                      f'or {TORCHVISION_URL}')
  return params


def _to_variables(weight_file: files.WeightFile, model_name: str) -> dict:
  params = params_from_file(weight_file)
  if model_name == 'vgg16_base':
    params = {name: value for name, value in params.items() if name not in TOP_LAYERS}
  return {'params': params}


registry.register_weights(registry.WeightTable(
    family='VGG16', models=('vgg16', 'vgg16_base', 'vgg16_transfer', 'vgg_small'), to_variables=_to_variables,
    identify=identify, where_to_get=WHERE_TO_GET,
    preprocess={files.KERAS_LEGACY_H5: 'caffe', files.KERAS_WEIGHTS_H5: 'caffe',
                files.TORCH: 'torch'}))
