"""Seeing inside the main job's Fashion-MNIST convnet: convolutions, activations, filters, CAMs.

Reads the best checkpoint of the main job's run and writes every figure of the visualize job
(see cnnjax/visualize/job.py) for it. Train first, then visualize:

    python launch.py --config configs/fashion_mnist.py --workdir runs/fashion_mnist
    python launch.py --config configs/visualize_fashion_mnist.py \
      --workdir runs/visualize_fashion_mnist

Point it at another run with --config.visualize.checkpoint_dir=DIR (e.g. the GAP variant's
runs/fashion_mnist_gap, where CAM applies too); the model is rebuilt from that run's config.json.

Measured (2026-11-23, 2 shared AMD EPYC cores, CPU only): 21 figures in 88 s from the main job's
best checkpoint (epoch 5, test accuracy 0.911); the Lucid-mode patterns take 57 s of it.
"""

import ml_collections

from cnnjax.data import FASHION_MNIST_CLASS_NAMES
from configs import fashion_mnist

CAM_METHODS = ('cam', 'grad_cam', 'grad_cam_plus_plus', 'hires_cam', 'layer_cam', 'score_cam',
               'eigen_cam')
SECTIONS = ('convolution', 'activations', 'filter_patterns', 'class_activation_maps')


def visualize_group() -> ml_collections.ConfigDict:
  """The visualize job's fields, with the values for a small convnet trained on [0, 1] images."""
  v = ml_collections.ConfigDict()
  # Where the model comes from: a training run's workdir, or a pretrained weight file.
  v.checkpoint_dir = 'runs/fashion_mnist'
  v.weights = ''             # A pretrained file (e.g. VGG16's .h5); overrides checkpoint_dir.
  v.image = ''               # With weights: the photo to look at.
  v.image_size = 224         # With weights: the photo is resized to image_size x image_size.
  v.preprocess = ''          # With weights: 'caffe', 'torch', 'tf' or 'none'; '' from the file.
  v.model_from_weights = False  # With weights: the file's architecture picks model.name.
  v.sections = SECTIONS      # What to draw.
  # Images: the first example of each class in the split, in order of appearance.
  v.split = 'test'
  v.num_examples = 6
  v.class_names = FASHION_MNIST_CLASS_NAMES
  # Convolution by hand (data sets of small grayscale images only).
  v.convolution_demos = True
  v.gabor_demo = (0.81, 2.7, 0.9)      # (frequency, theta, sigma) of the lecture's Fashion demo.
  v.filter_bank_classes = (9, 6, 3)    # Ankle boot, shirt, dress, as in the lecture.
  # Intermediate activations of one example image.
  v.activation_example = 0
  v.activation_layers = ()             # Empty: every conv and pool layer.
  v.activation_channel = 3
  v.activation_channels = 0            # Channels drawn per layer; 0: all of them.
  v.images_per_row = 16
  # Filter patterns by gradient ascent in input space.
  v.filter_layers = ('conv1', 'conv2', 'conv3')
  v.filter_count = 64
  v.filter_size = 0                    # 0: the images' size.
  v.filter_steps = 40
  v.filter_step_size = 1.0
  v.filter_input_scale = 1 / 255       # The model takes [0, 1] images, not 0..255 pixels.
  v.filter_columns = 8
  v.filter_margin = 5
  v.lucid = True
  v.lucid_size = 42                    # 1.5 times the images: room for a few repetitions.
  v.lucid_steps = 128
  v.lucid_learning_rate = 0.02         # Lucid's 0.05 saturates this small net's patterns to 0/1.
  # Class activation maps.
  v.cam_methods = CAM_METHODS
  v.cam_layer = ''                     # Empty: the last convolution layer.
  # The reference adds the heatmap x0.4 to the picture ('add'); on white garments on black that
  # saturates to white and hides the map, so these images blend it in instead.
  v.cam_intensity = 0.5
  v.cam_overlay = 'blend'              # 'add' (the reference) or 'blend'.
  v.cam_top_classes = 8                # Classes shown per image when there are many.
  v.top_channels = 0                   # A GAP + dense model's top-weighted channels; 0: none.
  v.score_cam_batch_size = 64
  return v


def get_config():
  config = fashion_mnist.get_config()
  config.job = 'visualize'
  config.visualize = visualize_group()
  return config
