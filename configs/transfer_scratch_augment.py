"""The baseline with augmentation: vgg_small from scratch on T-shirt vs Shirt, augmented.

As configs/transfer_scratch.py with the augmentation the transfer workflows (2)-(4) use (flips,
+-11 degree rotations, 10% zooms), so that every transfer row has a from-scratch counterpart
trained the same way.

    python launch.py --config configs/transfer_scratch_augment.py \
      --workdir runs/transfer/scratch_augment

Measured figures: docs/transfer_results.md.
"""

from configs import transfer_fashion_mnist


def get_config():
  config = transfer_fashion_mnist.get_config()
  transfer_fashion_mnist.augment_fashion(config)
  return config
