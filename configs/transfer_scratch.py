"""The baseline of the transfer experiment: vgg_small trained from scratch on T-shirt vs Shirt.

2,000 training images (configs/transfer_fashion_mnist.py), RMSprop 1e-3, 12 epochs, no
pretrained weights, no augmentation.

    python launch.py --config configs/transfer_scratch.py --workdir runs/transfer/scratch

Measured on 2026-11-23 (2-core AMD EPYC CPU, no GPU, jax 0.10.2): test accuracy 0.8460
(0.8340-0.8550), 30 s of training, mean (min-max) over seeds 0-2; the whole table is in
docs/transfer_results.md.
"""

from configs import transfer_fashion_mnist


def get_config():
  return transfer_fashion_mnist.get_config()
