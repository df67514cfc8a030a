"""ResNet workflow 1, fast feature extraction: the frozen base's pooled features cached, fc trained.

The base of the 8-class pretraining run (configs/fashion_mnist_8class_resnet.py: conv1, bn1,
layer1..layer3, BatchNorm statistics included; fc is new) runs once, in inference mode, over the
5,000 images (`train.cache_features`); its 64 globally averaged features per image are cached in
the workdir's features.npz and the one-unit fc (65 parameters: logistic regression on the
features) trains on them for 30 epochs at RMSprop 1e-2 (HEAD_LEARNING_RATE, chosen on the
validation split). 65 trainable / 77,776 non-trainable (77,104 frozen + 672
moving statistics). No augmentation is possible here.

    python launch.py --config configs/fashion_mnist_8class_resnet.py \
      --workdir runs/transfer_resnet/pretrain
    python launch.py --config configs/transfer_resnet_feature_extraction.py \
      --workdir runs/transfer_resnet/feature_extraction

Measured on 2026-11-29 (2-core Intel Xeon CPU, shared, no GPU, jax 0.10.2): test accuracy 0.8425
(0.8420-0.8435), 3 s of training after the base ran once, mean (min-max) over seeds 0-2; the
whole table, beside vgg_small's, is in docs/transfer_results.md.
"""

from configs import transfer_resnet_fashion_mnist


def get_config():
  config = transfer_resnet_fashion_mnist.pretrained(transfer_resnet_fashion_mnist.get_config())
  config.train.param_groups = ('fc=1', '.*=frozen')
  config.train.cache_features = True
  config.train.epochs = 30
  return config
