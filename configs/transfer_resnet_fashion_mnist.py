"""The ResNet transfer study's common base: resnet_small on T-shirt/top vs Shirt.

The same small-data task as configs/transfer_fashion_mnist.py (Fashion-MNIST's T-shirt/top vs
Shirt, 1,000 / 500 / 1,000 images per class, one sigmoid output, binary cross-entropy, RMSprop
1e-3, batch 32, 12 epochs) with `resnet_small` (cnnjax/models/resnet.py: a BatchNorm ResNet-8,
conv1 3x3 16 - bn1, then one BasicBlock per stage, layer1 16 / layer2 32 / layer3 64 channels,
global average, fc) instead of vgg_small, its `fc` one unit on the 64 pooled features: 77,169
trainable parameters (77,104 in the base, 65 in fc) and 672 BatchNorm moving statistics.
The from-scratch recipe is vgg_small's; the workflows that start from the pretrained base
train their new fc at a higher rate, HEAD_LEARNING_RATE = 1e-2.

Hyperparameters were chosen on the validation split only (seed 0, best epoch by val_loss;
the test split was not looked at), a few runs each:
- from scratch: RMSprop 1e-3 (val_loss 0.323, val accuracy 0.848) against RMSprop 1e-2 (0.336,
  0.851) and Adam 1e-3 (0.330, 0.844): vgg_small's recipe stays;
- (1) the fc on cached features, 30 epochs: 1e-3 (0.388, 0.832) was still improving at epoch 30,
  1e-2 (0.361, 0.832) and 3e-2 (0.355, 0.835) about equal;
- (2) the fc on the frozen base with augmentation, 12 epochs: 1e-3 (0.415, 0.801), 1e-2 (0.386,
  0.821), 3e-2 (0.385, 0.816): 1e-2 for (1) and (2), one head rate;
- (3) fine-tuning from (2): (2)'s rate / 10 = 1e-3 (0.269, 0.878) against 1e-4 (0.305, 0.857);
- (4) end to end: fc 1e-2 / base 1e-3 (0.259, 0.886) against fc 1e-3 / base 1e-4 (0.305,
  0.857).
vgg_small's rows (docs/transfer_results.md) were not tuned so; a 65-parameter linear head needs
a larger step than vgg_small's 148k-parameter dense head.

The pretrained base is that of configs/fashion_mnist_8class_resnet.py (PRETRAIN_WORKDIR), taken
for everything but `fc` (BACKBONE; the 8-class fc is replaced by the new one-unit fc). The last
stage, unfrozen by the fine-tuning, is `layer3` (resnet_small has three stages).

Trained as it is, this is the from-scratch baseline (configs/transfer_resnet_scratch.py). The
workflows:

- transfer_resnet_scratch.py, transfer_resnet_scratch_augment.py: resnet_small from random
  weights, without and with augmentation (the baselines);
- transfer_resnet_feature_extraction.py: (1) the frozen base's 64 pooled features cached, fc
  trained on them;
- transfer_resnet_feature_extraction_augment.py: (2) frozen base + new fc, with augmentation;
- transfer_resnet_fine_tuning.py: (3) phase 2 from (2)'s best checkpoint, layer3 unfrozen, lr / 10;
- transfer_resnet_end_to_end.py: (4) the pretrained base at 0.1x fc's learning rate.

`python -m cnnjax.transfer.experiment --base resnet_small --workdir runs/transfer_resnet` runs
them all; results in docs/transfer_results.md.
"""

from configs import transfer_fashion_mnist

PRETRAIN_WORKDIR = 'runs/transfer_resnet/pretrain'
HEAD_LEARNING_RATE = 1e-2  # The new fc's rate in the workflows from the pretrained base.
BACKBONE = ('conv1', 'bn1', 'layer.*')  # Everything but fc.
augment_fashion = transfer_fashion_mnist.augment_fashion


def get_config():
  config = transfer_fashion_mnist.get_config()
  config.model.name = 'resnet_small'
  return config


def pretrained(config):
  """The base (everything but fc) from the 8-class pretraining run, fc at HEAD_LEARNING_RATE."""
  config.model.init_from = PRETRAIN_WORKDIR
  config.model.init_layers = BACKBONE
  config.train.learning_rate = HEAD_LEARNING_RATE
  return config
