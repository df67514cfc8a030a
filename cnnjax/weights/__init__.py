"""Pretrained weights: reading Keras and PyTorch files and putting them into Flax parameters.

    import jax
    import jax.numpy as jnp
    from cnnjax.imagenet import preprocess_input
    from cnnjax.models.vgg16 import VGG16
    from cnnjax.weights import load_vgg16_weights, merge_params

    path = 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5'
    conv_base = VGG16(include_top=False)
    # Shapes suffice as the target when the file provides every parameter.
    shapes = jax.eval_shape(conv_base.init, jax.random.key(0), jnp.zeros((1, 150, 150, 3)))
    params = merge_params(shapes['params'], load_vgg16_weights(path, include_top=False),
                          source=path)
    # photos: (N, 150, 150, 3) RGB in 0..255.
    features = conv_base.apply({'params': params}, preprocess_input(photos, mode='caffe'))

A model with a new head loads the base the same way from its initialized parameters, and the head
keeps its initialization: `merge_params(params, loaded, allow_missing=('fc1', 'fc2', 'predictions'))` for
`VGG16(num_outputs=2)`, or `merge_params(params, {'conv_base': loaded}, allow_missing=('head',))`
for a model holding the base as a submodule named conv_base.

Readers (`keras_h5`, `torch_state_dict`) know file formats and nothing about models; per-model
modules (`vgg16`) map a file's names onto a model's layers; `merge_params` checks the result against
the model and lists everything that does not fit. Nothing here downloads.
"""

from cnnjax.weights.files import FORMATS, WeightFile, detect_format, read_weights
from cnnjax.weights.merge import merge_params, merge_variables
from cnnjax.weights.registry import (WeightTable, identify_architecture, load_weights,
                                     register_weights, weight_table)
from cnnjax.weights.torch_state_dict import read_state_dict
from cnnjax.weights.vgg16 import load_vgg16_weights

__all__ = ['FORMATS', 'WeightFile', 'WeightTable', 'detect_format', 'identify_architecture',
           'load_vgg16_weights', 'load_weights', 'merge_params', 'merge_variables',
           'read_state_dict', 'read_weights', 'register_weights', 'weight_table']
