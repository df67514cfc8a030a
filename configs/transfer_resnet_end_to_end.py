"""ResNet workflow 4: everything trains, the pretrained base at 0.1x the new fc's learning rate.

As the PyTorch lecture fine-tunes a whole ResNet18: the pretrained base (conv1, bn1,
layer1..layer3; every BatchNorm trains) at RMSprop 1e-3, the new fc at 1e-2 (chosen on the
validation split over 1e-4 / 1e-3, see configs/transfer_resnet_fashion_mnist.py), with
augmentation.
77,169 trainable / 672 non-trainable (BatchNorm moving statistics).

    python launch.py --config configs/transfer_resnet_end_to_end.py \
      --workdir runs/transfer_resnet/end_to_end

Measured on 2026-11-29 (2-core Intel Xeon CPU, shared, no GPU, jax 0.10.2): test accuracy 0.8672
(0.8620-0.8745), 85 s of training, mean (min-max) over seeds 0-2; the whole table, beside
vgg_small's, is in docs/transfer_results.md.
"""

from configs import transfer_resnet_fashion_mnist


def get_config():
  config = transfer_resnet_fashion_mnist.pretrained(transfer_resnet_fashion_mnist.get_config())
  config.train.param_groups = ('fc=1', '.*=0.1')
  transfer_resnet_fashion_mnist.augment_fashion(config)
  return config
