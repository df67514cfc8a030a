"""The small convnet with the GlobalAveragePooling-Dense10 head on Fashion-MNIST (56,394 params).

Same data and optimizer as the main job; global average pooling keeps 64 numbers per image
instead of 576, so the head has 650 parameters instead of 37,578.

    python launch.py --config configs/fashion_mnist_gap.py --workdir runs/fashion_mnist_gap

Measured: MEASURED_PLACEHOLDER
"""

from configs import fashion_mnist


def get_config():
  config = fashion_mnist.get_config()
  config.model.name = 'small_convnet_gap'
  return config
