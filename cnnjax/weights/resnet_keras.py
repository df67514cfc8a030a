"""Keras' ResNet50 weight files as `cnnjax.models.resnet_keras.ResNet50Keras` variables.

cnnjax never downloads; get a file and pass its path (the images need `preprocess_input(x,
mode='caffe')`, or the model's `preprocess='caffe'`, for pixels in 0..255):
KERAS_URL (with the top) or KERAS_NO_TOP_URL (without). Both Keras formats load:

- legacy HDF5, as the ImageNet files are: the root's `layer_names` lists every layer, each
  layer's `weight_names` its arrays in Keras' order (read by `keras_h5.read_legacy_h5`);
- Keras 3 `model.save_weights('x.weights.h5')`: `layers/<class key>/vars/0..n`, where the class
  key counts layers of a class in `model.layers` order (conv2d, conv2d_1, ..., batch_normalization,
  ..., dense) and Keras 3.15 stores the layer's name as the `vars` group's `name` attribute.
  Files without that attribute map class keys to names through KERAS3_LAYERS_BY_CLASS, Keras'
  `model.layers` order (in a stage's first block: _1_, _2_, then _0_conv, _3_conv, _0_bn, _3_bn).

Layers map by name: a convolution's [kernel, bias] (HWIO, as cnnjax's) and the dense
'predictions' [kernel, bias] go to 'params'; a BatchNormalization's [gamma, beta, moving_mean,
moving_variance] to params `scale`, `bias` and batch_stats `mean`, `var`. A with-top file serves a
model without the top once 'predictions' is dropped from the loaded params; a no-top file serves a
model with a new head through `merge_variables(..., allow_missing=('predictions',))`.
"""

import numpy as np

from cnnjax.errors import DataError
from cnnjax.models.resnet_keras import BN_LAYERS, CONV_LAYERS
from cnnjax.weights import files, keras_h5, registry

MODEL = 'resnet50_keras'
KERAS_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/resnet/'
             'resnet50_weights_tf_dim_ordering_tf_kernels.h5')
KERAS_NO_TOP_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/resnet/'
                    'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5')
WHERE_TO_GET = (f'Download the Keras ImageNet weights of ResNet50, {KERAS_URL} (with the top) or '
                f'{KERAS_NO_TOP_URL} (without), and pass the downloaded file\'s path.')

KERAS3_LAYERS_BY_CLASS = {'conv2d': CONV_LAYERS, 'batch_normalization': BN_LAYERS,
                          'dense': ('predictions',)}


def _layer_arrays(weight_file: files.WeightFile) -> dict[str, list[np.ndarray]]:
  if weight_file.format == files.TORCH:
    raise DataError(f'{weight_file.path!r} is a PyTorch file; Keras ResNet50 weights come in '
                    f'Keras files. {WHERE_TO_GET}')
  if weight_file.format == files.KERAS_WEIGHTS_H5:
    return {keras_h5.layer_name(key, KERAS3_LAYERS_BY_CLASS): arrays
            for key, arrays in weight_file.arrays.items()}
  return dict(weight_file.arrays)


def to_variables(weight_file: files.WeightFile, model_name: str = MODEL) -> dict:
  """{'params': ..., 'batch_stats': ...} from a Keras ResNet50 file, whatever layers it holds.

  Layers with four arrays are BatchNormalizations, with one or two a kernel and a bias; a layer
  with another number keeps its arrays as 'weight0', 'weight1', ... so a merge lists it as not in
  the model. Unknown names stay as they are, for the same reason.
  """
  del model_name  # One model: the table serves resnet50_keras alone.
  params, batch_stats = {}, {}
  for name, arrays in _layer_arrays(weight_file).items():
    if len(arrays) == 4:
      gamma, beta, mean, variance = arrays
      params[name] = {'scale': gamma, 'bias': beta}
      batch_stats[name] = {'mean': mean, 'var': variance}
    elif len(arrays) in (1, 2):
      params[name] = dict(zip(('kernel', 'bias'), arrays))
    else:
      params[name] = {f'weight{i}': array for i, array in enumerate(arrays)}
  return {'params': params, 'batch_stats': batch_stats}


def identify(weight_file: files.WeightFile) -> str | None:
  """'resnet50_keras' when the file has Keras ResNet50's layer names (not ResNet101/152 or V2's)."""
  if weight_file.format == files.TORCH:
    return None
  names = set(_layer_arrays(weight_file))
  resnet = {'conv1_conv', 'conv4_block6_3_conv', 'conv5_block3_3_conv'} <= names
  deeper = 'conv4_block7_1_conv' in names
  v2 = 'post_bn' in names or 'conv2_block1_preact_bn' in names
  return MODEL if resnet and not deeper and not v2 else None


registry.register_weights(registry.WeightTable(
    family='ResNet50 (Keras)', models=(MODEL,), to_variables=to_variables, identify=identify,
    where_to_get=WHERE_TO_GET,
    preprocess={files.KERAS_LEGACY_H5: 'caffe', files.KERAS_WEIGHTS_H5: 'caffe'}))
