"""The main job: the seed's small convnet with the Flatten-Dense64 head on Fashion-MNIST.

Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dense10 (93,322 parameters), RMSprop lr 1e-3,
batch 64, 5 epochs, 10% of the training images held out for validation; the best epoch by
val_loss is tested on the 10,000 test images.

    python launch.py --config configs/fashion_mnist.py --workdir runs/fashion_mnist

Measured: MEASURED_PLACEHOLDER
"""

from cnnjax.config import base_config


def get_config():
  return base_config()
