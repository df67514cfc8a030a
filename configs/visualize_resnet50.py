"""Seeing inside ResNet50 with its ImageNet weights, Keras' or torchvision's: stages, filters, CAMs.

Takes a weight file of either ResNet50 layout and a photo; the file says which model it is
(`visualize.model_from_weights`) and how photos are prepared ('caffe' for Keras' .h5, 'torch' for a
.pth). cnnjax never downloads: Keras' `resnet50_weights_tf_dim_ordering_tf_kernels.h5` (address in
cnnjax/weights/resnet_keras.py) or torchvision's `resnet50-0676ba61.pth` / `resnet50-11ad3fa6.pth`
(cnnjax/weights/resnet.py):

    python launch.py --config configs/visualize_resnet50.py --workdir runs/visualize_resnet50 \
      --config.visualize.weights=resnet50-0676ba61.pth --config.visualize.image=elephant.jpg

Draws, with each layout's own layer names (`visualize.per_model`):

- activations/: the stem (after its max-pooling) and the output of each stage (Keras
  conv2_block3_out, conv3_block4_out, conv4_block6_out, conv5_block3_out; torchvision
  layer1..layer4), the first 256 channels of each;
- filter_patterns/: the stem convolution and the four stage outputs, gradient ascent and Lucid;
- class_activation_maps/: CAM (exact: ResNet50 ends in global average pooling and one dense
  layer, so CAM is the last stage's channels weighted by the dense kernel's column of the class),
  Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM, Score-CAM and Eigen-CAM of the last stage (7x7x2048
  at 224x224), Grad-CAM for the top-8 classes, and the PyTorch lecture's figure: the activation
  maps of the 8 channels with the highest weight in the dense kernel for the predicted class
  (top_8_channels.png).

Meant for an accelerator: 5 layers x 64 filters x 40 steps (and 512 Lucid steps) through ResNet50,
and Score-CAM's 2,048 masked forward passes.

Measured (2026-11-30, 2 CPU cores shared with other jobs, load average 8; no ImageNet weights on
this machine, so random-weight files written by Keras 3 and by a torch.nn ResNet50): the Keras file
with 16 filters x 10 steps at 64x64 per layer, Lucid at 64x64 for 8 steps and every CAM method took
14 min, about 8 of them Score-CAM's 2,048 masked passes; the slow tests' cut-down runs (one filter layer,
CAM and Grad-CAM) take 25-110 s. tests/test_visualize_zoo.py checks that the job's top-5 classes,
their logits and the top channels are Keras' and torch's own.
"""

import ml_collections

from configs import visualize_vgg16

# Each layout's layer names: the stem, then the output of each stage.
KERAS_STAGES = ('conv2_block3_out', 'conv3_block4_out', 'conv4_block6_out', 'conv5_block3_out')
TORCHVISION_STAGES = ('layer1', 'layer2', 'layer3', 'layer4')


def per_model() -> ml_collections.ConfigDict:
  """The layers each ResNet50 layout shows, by model name."""
  return ml_collections.ConfigDict({
      'resnet50_keras': {
          'activation_layers': ('pool1_pool',) + KERAS_STAGES,
          'filter_layers': ('conv1_conv',) + KERAS_STAGES,
          'cam_layer': KERAS_STAGES[-1],
      },
      'resnet50': {
          'activation_layers': ('maxpool',) + TORCHVISION_STAGES,
          'filter_layers': ('conv1',) + TORCHVISION_STAGES,
          'cam_layer': TORCHVISION_STAGES[-1],
      },
  })


def get_config():
  config = visualize_vgg16.get_config()
  config.model.name = 'resnet50_keras'  # The default; the weight file decides (model_from_weights).
  v = config.visualize
  v.model_from_weights = True
  v.per_model = per_model()
  # Left empty: each comes from per_model for the file's layout. A value given here or on the
  # command line wins.
  v.activation_layers = ()
  v.filter_layers = ()
  v.cam_layer = ''
  v.activation_channels = 256  # Of 256 to 2,048 per stage: 16 rows of 16.
  v.filter_size = 128          # conv5 / layer4 sees 4x4 of a 128x128 pattern.
  v.cam_methods = ('cam', 'grad_cam', 'grad_cam_plus_plus', 'hires_cam', 'layer_cam',
                   'score_cam', 'eigen_cam')
  v.top_channels = 8
  return config
