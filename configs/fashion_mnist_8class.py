"""Pretraining for the offline transfer experiment: vgg_small on 8 of the 10 Fashion-MNIST classes.

Every class except T-shirt/top (0) and Shirt (6), which are held out as the new small-data task
(configs/transfer_*.py). vgg_small is a VGG-style net with VGG16's layer names (block1_conv1,
block2_conv1, block3_conv1..2, then flatten, dense1 256, dropout 0.5, predictions), so the freeze
patterns of the VGG16 workflows apply to it unchanged. Labels are relabelled 0..7 in the order of
data.classes; 10% of the 48,000 training images are held out for validation.

    python launch.py --config configs/fashion_mnist_8class.py --workdir runs/transfer/pretrain

`python -m cnnjax.transfer.experiment --workdir runs/transfer` runs it first. Measured on
2026-11-23 (2-core AMD EPYC CPU, no GPU): test accuracy 0.9589 over the 8 classes after 3 epochs,
172 s; the transfer figures are in docs/transfer_results.md.
"""

from cnnjax.config import base_config

PRETRAIN_CLASSES = (1, 2, 3, 4, 5, 7, 8, 9)  # Trouser ... Ankle boot; not 0 (T-shirt), 6 (Shirt).


def get_config():
  config = base_config()
  config.data.classes = PRETRAIN_CLASSES
  config.model.name = 'vgg_small'
  config.model.num_outputs = len(PRETRAIN_CLASSES)
  config.train.epochs = 3
  config.train.learning_rate = 2e-3
  config.train.schedule = 'cosine'
  return config
