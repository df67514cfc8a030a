"""Workflow 3, phase 2 of fine-tuning: from phase 1's best checkpoint, the last block unfrozen.

Phase 1 is configs/transfer_feature_extraction_augment.py (head trained on the frozen base).
Phase 2 takes every parameter of phase 1's best checkpoint (model.init_from = its workdir,
init_layers '.*'), unfreezes block3_conv1..2 (vgg_small's last block, as the reference unfreezes
VGG16's block5_conv1..3) and trains them with the head at a learning rate ten times lower
(RMSprop 1e-4; the reference's 1e-5 is for 100 epochs of VGG16), with the same augmentation.

    python launch.py --config configs/transfer_feature_extraction_augment.py \
      --workdir runs/transfer/feature_extraction_augment
    python launch.py --config configs/transfer_fine_tuning.py --workdir runs/transfer/fine_tuning

Measured on 2026-11-23 (2-core AMD EPYC CPU, no GPU, jax 0.10.2): test accuracy 0.8520
(0.8515-0.8530), 17 s of training, mean (min-max) over seeds 0-2; the whole table is in
docs/transfer_results.md.
"""

from configs import transfer_fashion_mnist

PHASE1_WORKDIR = 'runs/transfer/feature_extraction_augment'


def get_config():
  config = transfer_fashion_mnist.get_config()
  config.model.init_from = PHASE1_WORKDIR
  config.model.init_layers = ('.*',)
  config.train.param_groups = ('block[12]_.*=frozen', '.*=1')
  config.train.learning_rate = 1e-4
  transfer_fashion_mnist.augment_fashion(config)
  return config
