"""ResNet workflow 3, phase 2 of fine-tuning: from phase 1's best checkpoint, layer3 unfrozen.

Phase 1 is configs/transfer_resnet_feature_extraction_augment.py (fc trained on the frozen base).
Phase 2 takes every variable of phase 1's best checkpoint (model.init_from = its workdir,
init_layers '.*'), unfreezes `layer3` (resnet_small's last stage: one BasicBlock, 64 channels,
with its projected shortcut; its BatchNorm layers now train) and trains it with fc at a learning
rate ten times lower than (2)'s (RMSprop 1e-3; chosen on the validation split over 1e-4, see
configs/transfer_resnet_fashion_mnist.py), with the same augmentation, as
configs/transfer_fine_tuning.py does for vgg_small's block3. conv1, bn1, layer1 and layer2 stay
frozen (inference-mode BatchNorm). 57,793 trainable / 20,048 non-trainable (19,376 frozen + 672
moving statistics).

    python launch.py --config configs/transfer_resnet_feature_extraction_augment.py \
      --workdir runs/transfer_resnet/feature_extraction_augment
    python launch.py --config configs/transfer_resnet_fine_tuning.py \
      --workdir runs/transfer_resnet/fine_tuning

Measured on 2026-11-29 (2-core Intel Xeon CPU, shared, no GPU, jax 0.10.2): test accuracy 0.8647
(0.8560-0.8705), 35 s of training, mean (min-max) over seeds 0-2; the whole table, beside
vgg_small's, is in docs/transfer_results.md.
"""

from configs import transfer_resnet_fashion_mnist

PHASE1_WORKDIR = 'runs/transfer_resnet/feature_extraction_augment'


def get_config():
  config = transfer_resnet_fashion_mnist.get_config()
  config.model.init_from = PHASE1_WORKDIR
  config.model.init_layers = ('.*',)
  config.train.param_groups = ('layer3=1', 'fc=1', '.*=frozen')
  config.train.learning_rate = transfer_resnet_fashion_mnist.HEAD_LEARNING_RATE / 10
  transfer_resnet_fashion_mnist.augment_fashion(config)
  return config
