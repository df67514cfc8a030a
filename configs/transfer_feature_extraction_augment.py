"""Workflow 2: the pretrained base frozen, a new head trained end to end with augmentation.

Every image goes through the frozen base each epoch, so it can be augmented (flips, small
rotations and zooms); only the head's gradients are computed (nothing is back-propagated into
the base). This is also phase 1 of the fine-tuning (configs/transfer_fine_tuning.py).

    python launch.py --config configs/transfer_feature_extraction_augment.py \
      --workdir runs/transfer/feature_extraction_augment

Measured on 2026-11-23 (2-core AMD EPYC CPU, no GPU, jax 0.10.2): test accuracy 0.8457
(0.8425-0.8480), 11 s of training, mean (min-max) over seeds 0-2; the whole table is in
docs/transfer_results.md.
"""

from configs import transfer_fashion_mnist


def get_config():
  config = transfer_fashion_mnist.get_config()
  config.model.init_from = transfer_fashion_mnist.PRETRAIN_WORKDIR
  config.model.init_layers = ('block.*',)
  config.train.param_groups = ('block.*=frozen', '.*=1')
  transfer_fashion_mnist.augment_fashion(config)
  return config
