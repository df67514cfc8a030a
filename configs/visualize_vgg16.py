"""Seeing inside VGG16 with its ImageNet weights: activations, filter patterns, Grad-CAM.

The reference's chapter: filter patterns of block1_conv1 .. block5_conv1 (8x8 grids of 64x64
patterns; block3_conv1 filter 0 responds to polka dots) and Grad-CAM of block5_conv3 (14x14x512)
on a 224x224 photo (the African elephant: class 386, 92.5%). Needs the Keras weights with the top
(cnnjax never downloads; see cnnjax/weights/vgg16.py for the address) and a photo:

    python launch.py --config configs/visualize_vgg16.py --workdir runs/visualize_vgg16 \
      --config.visualize.weights=vgg16_weights_tf_dim_ordering_tf_kernels.h5 \
      --config.visualize.image=elephant.jpg

Meant for an accelerator: 5 layers x 64 filters x 40 steps through VGG16, and Score-CAM's 512
masked forward passes.

Measured: not yet (no ImageNet weight file on the machines this was written on). On 2 CPU cores
one 64-filter grid of block3_conv1 at 64x64 takes about 3 minutes and Grad-CAM 0.22 s per 224x224
image (benchmarks/visualize_speed.py).
"""

from configs import visualize_fashion_mnist


def get_config():
  config = visualize_fashion_mnist.get_config()
  config.model.name = 'vgg16'
  config.model.input_shape = (224, 224, 3)
  config.model.num_outputs = 1000
  v = config.visualize
  v.checkpoint_dir = ''
  v.weights = ''  # Required: --config.visualize.weights=PATH.
  v.image = ''    # Required: --config.visualize.image=PATH.
  v.image_size = 224
  v.preprocess = ''  # From the weight file: 'caffe' for Keras' .h5, 'torch' for a .pth.
  v.class_names = ()  # ImageNet's, from cnnjax.imagenet.
  v.convolution_demos = False
  v.activation_layers = ('block1_conv1', 'block1_pool', 'block2_conv1', 'block2_pool',
                         'block3_conv1', 'block3_pool', 'block4_conv1', 'block4_pool')
  v.filter_layers = ('block1_conv1', 'block2_conv1', 'block3_conv1', 'block4_conv1',
                     'block5_conv1')
  v.filter_size = 64
  v.filter_input_scale = 1.0  # As in the reference: noise around 128 fed to the network as it is.
  v.lucid_size = 128
  v.lucid_steps = 512
  v.lucid_learning_rate = 0.05  # Lucid's defaults.
  v.cam_intensity = 0.4  # The reference's overlay: heatmap x0.4 added to the photo.
  v.cam_overlay = 'add'
  v.cam_methods = ('grad_cam', 'grad_cam_plus_plus', 'hires_cam', 'layer_cam', 'score_cam',
                   'eigen_cam')
  v.cam_layer = 'block5_conv3'
  return config
