"""Seeing inside InceptionV3 with Keras' ImageNet weights: mixed blocks, filters, CAMs, channels.

The same figures as configs/visualize_resnet50.py, for Keras' InceptionV3 (299x299, 'tf'
preprocessing, read from the file). cnnjax never downloads: Keras'
`inception_v3_weights_tf_dim_ordering_tf_kernels.h5` (address in cnnjax/weights/inception_v3.py):

    python launch.py --config configs/visualize_inception_v3.py \
      --workdir runs/visualize_inception_v3 \
      --config.visualize.weights=inception_v3_weights_tf_dim_ordering_tf_kernels.h5 \
      --config.visualize.image=elephant.jpg

- activations/: the stem (max_pooling2d_1, 35x35x192) and the last block at each resolution:
  mixed2 (35x35x288), mixed7 (17x17x768), mixed10 (8x8x2048), the first 256 channels of each;
- filter_patterns/: the stem's last convolution conv2d_4 and mixed2, mixed5, mixed7, mixed10;
- class_activation_maps/: CAM (exact: mixed10 - global average pooling - predictions), the
  gradient methods, Score-CAM and Eigen-CAM of mixed10, Grad-CAM for the top-8 classes, and the
  activation maps of the 8 channels of mixed10 with the highest weight for the predicted class.

Keras names InceptionV3's convolutions by creation order (conv2d, conv2d_1, ..., conv2d_93), as a
fresh Keras process does; cnnjax's model has those names whatever the file's (its weights load by
Keras' layer order). Meant for an accelerator, as the ResNet50 config.

Measured (2026-11-30, 2 CPU cores shared with other jobs; no ImageNet weights on this machine):
on a random-weight file written by Keras 3, the slow test's cut-down run (one filter layer, CAM and
Grad-CAM of mixed10) takes 85-150 s with Keras' model building; tests/test_visualize_zoo.py checks
that the job's top-5 classes, their logits and the top channels are Keras' own.
"""

import ml_collections

from configs import visualize_resnet50

STAGES = ('mixed2', 'mixed7', 'mixed10')  # The last block at 35x35, 17x17 and 8x8.


def per_model() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'inception_v3': {
          'activation_layers': ('max_pooling2d_1',) + STAGES,
          'filter_layers': ('conv2d_4', 'mixed2', 'mixed5', 'mixed7', 'mixed10'),
          'cam_layer': STAGES[-1],
      },
  })


def get_config():
  config = visualize_resnet50.get_config()
  config.model.name = 'inception_v3'
  config.model.input_shape = (299, 299, 3)
  v = config.visualize
  v.per_model = per_model()  # model_from_weights: another architecture's file is an error.
  v.image_size = 299
  return config
