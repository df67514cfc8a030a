"""The offline transfer task: T-shirt/top vs Shirt from 1,000 / 500 / 1,000 images per class.

Fashion-MNIST's two most confusable classes, held out of the pretraining
(configs/fashion_mnist_8class.py), with the reference's small-data split sizes (the 2nd edition's
cats vs dogs: 1,000 training, 500 validation and 1,000 test images per class): training and
validation images drawn from the training split, test images from the test split, seeded
(cnnjax/data/subsets.py). Binary: one sigmoid output, binary cross-entropy; T-shirt/top is label 0
and Shirt label 1.

This file is the common base of the transfer configs; trained as it is, it is the from-scratch
baseline (configs/transfer_scratch.py). The workflows:

- transfer_scratch.py: vgg_small from random weights (the baseline);
- transfer_scratch_augment.py: the same with augmentation;
- transfer_feature_extraction.py: (1) cached features of the pretrained base (frozen), the head
  trained on them;
- transfer_feature_extraction_augment.py: (2) the pretrained base frozen, the head trained with
  augmentation;
- transfer_fine_tuning.py: (3) phase 2, from (2)'s best checkpoint with block3 unfrozen, lr / 10;
- transfer_end_to_end.py: (4) the pretrained base at 0.1x the head's learning rate.

`python -m cnnjax.transfer.experiment --workdir runs/transfer` runs them all; results in
docs/transfer_results.md.
"""

from cnnjax.config import base_config

HELD_OUT = (0, 6)  # T-shirt/top, Shirt.
PRETRAIN_WORKDIR = 'runs/transfer/pretrain'


def augment_fashion(config):
  """Mild augmentation for centred garments on black: flips, +-11 degrees, 10% zoom."""
  config.augment.kind = 'keras_layers'
  layers = config.augment.keras_layers
  layers.flip = 'horizontal'
  layers.rotation = 0.03
  layers.zoom_height = 0.1
  layers.fill_mode = 'constant'
  layers.fill_value = 0.0


def get_config():
  config = base_config()
  config.data.classes = HELD_OUT
  config.data.per_class = (1000, 500, 1000)
  config.model.name = 'vgg_small'
  config.model.num_outputs = 1
  config.train.loss = 'binary_crossentropy'
  config.train.batch_size = 32
  config.train.eval_batch_size = 500
  config.train.epochs = 12
  config.train.learning_rate = 1e-3
  return config
