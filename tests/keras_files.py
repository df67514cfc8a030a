"""Weight files in every Keras layout cnnjax reads, written by the tests (no network).

- `write_keras_file(path, keras_model, layout)`: a Keras 3 model's weights as Keras 3's
  `.weights.h5` (with or without the layer-name attributes older Keras 3 versions lack), Keras'
  legacy HDF5 writer, a whole model's `.h5`, or a file laid out as the ImageNet files are;
- `write_weights_h5(path, params)`: cnnjax parameters ({layer: {kernel, bias}}) as a legacy HDF5
  weights file, for models Keras does not build.
"""

import os

import h5py
import numpy as np
import pytest

LAYOUTS = ('keras3.weights.h5', 'keras3_unnamed.weights.h5', 'legacy.h5', 'model.h5',
           'imagenet.h5', 'imagenet_chunked.h5')


def import_keras():
  os.environ.setdefault('KERAS_BACKEND', 'jax')
  return pytest.importorskip('keras')


def vgg16_file_names(layer, variable, index):
  """Dataset names of vgg16_weights_tf_dim_ordering_tf_kernels*.h5: 'block1_conv1_W_1:0'."""
  del variable
  return f'{layer.name}_{"Wb"[index]}_1:0'


def tf_keras_names(layer, variable, index):
  """Dataset names of resnet50_weights_tf_dim_ordering_tf_kernels*.h5 (tf.keras):
  'conv1_bn/gamma:0', in nested groups."""
  del index
  return f'{layer.name}/{variable.name}:0'


def write_imagenet_layout(path, keras_model, chunks=1, dataset_name=vgg16_file_names):
  """An HDF5 file laid out as Keras' ImageNet weight files are.

  Every layer (weightless ones included) is listed in the root's `layer_names`; each layer's group
  lists its datasets, named by `dataset_name(layer, variable, index)`, in `weight_names`, in the
  layer's weight order (a BatchNormalization's gamma before beta, though HDF5 sorts the datasets
  beta first). With chunks > 1 the names are split over `layer_names0`, `layer_names1`, ... as
  Keras does for large attributes.
  """
  names = [layer.name for layer in keras_model.layers]
  with h5py.File(path, 'w') as f:
    if chunks == 1:
      f.attrs['layer_names'] = np.array(names, dtype='S')
    else:
      for i, part in enumerate(np.array_split(np.array(names, dtype='S'), chunks)):
        f.attrs[f'layer_names{i}'] = part
    for layer in keras_model.layers:
      group = f.create_group(layer.name)
      weight_names = [dataset_name(layer, v, i) for i, v in enumerate(layer.weights)]
      for name, variable in zip(weight_names, layer.weights):
        group.create_dataset(name, data=np.asarray(variable))
      group.attrs['weight_names'] = np.array(weight_names, dtype='S')
  return str(path)


def write_keras_file(path, keras_model, layout, dataset_name=vgg16_file_names):
  """The model's weights at `path` in one of LAYOUTS; returns the path as a string."""
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=import-outside-toplevel
  if layout.startswith('keras3'):
    keras_model.save_weights(path)
    if layout == 'keras3_unnamed.weights.h5':
      # Older Keras 3 versions store no layer names: only the class keys (conv2d_1, ...) remain.
      with h5py.File(path, 'r+') as f:
        for group in f['layers'].values():
          if 'vars' in group and 'name' in group['vars'].attrs:
            del group['vars'].attrs['name']
  elif layout == 'legacy.h5':
    with h5py.File(path, 'w') as f:
      legacy_h5_format.save_weights_to_hdf5_group(f, keras_model)
  elif layout == 'model.h5':
    legacy_h5_format.save_model_to_hdf5(keras_model, path)
  elif layout.startswith('imagenet'):
    write_imagenet_layout(path, keras_model, chunks=3 if layout == 'imagenet_chunked.h5' else 1,
                          dataset_name=dataset_name)
  else:
    raise ValueError(f'unknown layout {layout!r}; one of {LAYOUTS}')
  return str(path)


def write_weights_h5(path, params):
  """A legacy Keras HDF5 file (the layout of the ImageNet files) holding `params` by layer name."""
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = np.array(list(params), dtype='S')
    for layer, weights in params.items():
      group = f.create_group(layer)
      names = [f'{layer}_W_1:0', f'{layer}_b_1:0']
      group.create_dataset(names[0], data=np.asarray(weights['kernel']))
      group.create_dataset(names[1], data=np.asarray(weights['bias']))
      group.attrs['weight_names'] = np.array(names, dtype='S')
  return str(path)


def randomize_keras_model(keras, model, seed):
  """Random BatchNormalization statistics and parameters, and random biases, in any Keras model.

  Keras initializes BatchNormalization to gamma 1, beta 0, moving mean 0 and variance 1, and biases
  to 0, which make BatchNorm nearly the identity in inference mode: a port that mixed its arrays up
  would pass. Works for BatchNormalizations with or without gamma (`scale=False`, InceptionV3's).
  """
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      c = layer.moving_mean.shape[0]
      values = {'gamma': rng.uniform(0.5, 1.5, c), 'beta': rng.uniform(-0.5, 0.5, c),
                'moving_mean': rng.uniform(-0.5, 0.5, c),
                'moving_variance': rng.uniform(0.5, 2.0, c)}
      layer.set_weights([values[w.name] for w in layer.weights])
    elif getattr(layer, 'bias', None) is not None:
      layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape).astype(np.float32))
  return model
