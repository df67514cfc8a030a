"""The ResNet study's baseline: resnet_small from scratch on T-shirt/top vs Shirt.

2,000 training images (configs/transfer_resnet_fashion_mnist.py), RMSprop 1e-3, batch 32, 12
epochs, no pretrained weights, no augmentation; 77,169 trainable / 672 non-trainable (BatchNorm
moving statistics).

    python launch.py --config configs/transfer_resnet_scratch.py \
      --workdir runs/transfer_resnet/scratch

Measured on 2026-11-29 (2-core Intel Xeon CPU, shared, no GPU, jax 0.10.2): test accuracy 0.8318
(0.8225-0.8485), 85 s of training, mean (min-max) over seeds 0-2; the whole table, beside
vgg_small's, is in docs/transfer_results.md.
"""

from configs import transfer_resnet_fashion_mnist


def get_config():
  return transfer_resnet_fashion_mnist.get_config()
