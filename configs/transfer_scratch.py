"""The baseline of the transfer experiment: vgg_small trained from scratch on T-shirt vs Shirt.

2,000 training images (configs/transfer_fashion_mnist.py), RMSprop 1e-3, 12 epochs, no
pretrained weights, no augmentation.

    python launch.py --config configs/transfer_scratch.py --workdir runs/transfer/scratch

Measured figures: docs/transfer_results.md.
"""

from configs import transfer_fashion_mnist


def get_config():
  return transfer_fashion_mnist.get_config()
