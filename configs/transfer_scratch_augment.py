"""The baseline with augmentation: vgg_small from scratch on T-shirt vs Shirt, augmented.

As configs/transfer_scratch.py with the augmentation the transfer workflows (2)-(4) use (flips,
+-11 degree rotations, 10% zooms), so that every transfer row has a from-scratch counterpart
trained the same way.

    python launch.py --config configs/transfer_scratch_augment.py \
      --workdir runs/transfer/scratch_augment

Measured on 2026-11-23 (2-core AMD EPYC CPU, no GPU, jax 0.10.2): test accuracy 0.8378
(0.8225-0.8455), 30 s of training, mean (min-max) over seeds 0-2; the whole table is in
docs/transfer_results.md.
"""

from configs import transfer_fashion_mnist


def get_config():
  config = transfer_fashion_mnist.get_config()
  transfer_fashion_mnist.augment_fashion(config)
  return config
