"""Pretraining for the ResNet transfer study: resnet_small on 8 of the 10 Fashion-MNIST classes.

The same pretraining task as configs/fashion_mnist_8class.py (every class but T-shirt/top (0)
and Shirt (6), relabelled 0..7; 10% of the 48,000 training images held out for validation), with
`resnet_small` (cnnjax/models/resnet.py: a BatchNorm ResNet-8, conv1 3x3 16 - bn1, one BasicBlock
per stage, layer1 16 / layer2 32 / layer3 64 channels, global average, fc 8): 77,624 trainable
parameters and 672 BatchNorm moving statistics. The transfer configs
(configs/transfer_resnet_*.py) take everything but fc from it.

A usual BatchNorm-ResNet recipe, not tuned (the time was spent on the transfer runs): SGD with
Nesterov momentum 0.9, learning rate 0.1 decayed to 0 by a cosine, L2 weight decay 5e-4, batch
128. Epochs: one epoch took 132 s on the shared 2-core machine (326 images/s), so 4 epochs keep
the pretraining near the 10 minutes allowed.

    python launch.py --config configs/fashion_mnist_8class_resnet.py \
      --workdir runs/transfer_resnet/pretrain

`python -m cnnjax.transfer.experiment --base resnet_small --workdir runs/transfer_resnet` runs it
first. Measured on 2026-11-29 (2-core Intel Xeon CPU, shared, no GPU): 4 epochs in 506 s (158,
148, 105 and 95 s as the load of the other jobs changed), validation accuracy 0.9610, test
accuracy 0.9599 over the 8 classes (vgg_small: 0.9589 after 3 epochs); the transfer figures are
in docs/transfer_results.md.
"""

from cnnjax.config import base_config
from configs import fashion_mnist_8class


def get_config():
  config = base_config()
  config.data.classes = fashion_mnist_8class.PRETRAIN_CLASSES
  config.model.name = 'resnet_small'
  config.model.num_outputs = len(fashion_mnist_8class.PRETRAIN_CLASSES)
  config.train.batch_size = 128
  config.train.epochs = 4
  config.train.optimizer = 'sgd'
  config.train.momentum = 0.9
  config.train.nesterov = True
  config.train.learning_rate = 0.1
  config.train.weight_decay = 5e-4
  config.train.schedule = 'cosine'
  return config
