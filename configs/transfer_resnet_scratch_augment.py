"""The ResNet study's baseline with augmentation: resnet_small from scratch, augmented.

As configs/transfer_resnet_scratch.py with the augmentation that workflows (2)-(4) use (flips,
+-11 degree rotations, 10% zooms), so that each transfer row has a from-scratch counterpart
trained the same way. 77,169 trainable / 672 non-trainable.

    python launch.py --config configs/transfer_resnet_scratch_augment.py \
      --workdir runs/transfer_resnet/scratch_augment

Measured on 2026-11-29 (2-core Intel Xeon CPU, shared, no GPU, jax 0.10.2): test accuracy 0.8370
(0.8215-0.8520), 113 s of training, mean (min-max) over seeds 0-2; the whole table, beside
vgg_small's, is in docs/transfer_results.md.
"""

from configs import transfer_resnet_fashion_mnist


def get_config():
  config = transfer_resnet_fashion_mnist.get_config()
  transfer_resnet_fashion_mnist.augment_fashion(config)
  return config
