"""Workflow 1, fast feature extraction: the pretrained base's features cached, the head trained.

The base of the 8-class pretraining run (block1..block3, taken by model.init_layers; the head
dense1 / predictions is new) runs once over the 5,000 images (`train.cache_features`); its 3x3x64
feature maps are cached in the workdir's features.npz and the Flatten-Dense256-Dropout-Dense1
head trains on them for 30 epochs: seconds, not minutes. No augmentation is possible here.

    python launch.py --config configs/fashion_mnist_8class.py --workdir runs/transfer/pretrain
    python launch.py --config configs/transfer_feature_extraction.py \
      --workdir runs/transfer/feature_extraction

Measured on 2026-11-23 (2-core AMD EPYC CPU, no GPU, jax 0.10.2): test accuracy 0.8553
(0.8520-0.8595), 4 s of training after the base ran once, mean (min-max) over seeds 0-2; the whole
table is in docs/transfer_results.md.
"""

from configs import transfer_fashion_mnist


def get_config():
  config = transfer_fashion_mnist.get_config()
  config.model.init_from = transfer_fashion_mnist.PRETRAIN_WORKDIR
  config.model.init_layers = ('block.*',)
  config.train.param_groups = ('block.*=frozen', '.*=1')
  config.train.cache_features = True
  config.train.epochs = 30
  return config
