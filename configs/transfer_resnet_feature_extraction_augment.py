"""ResNet workflow 2: the pretrained base frozen, a new fc trained end to end with augmentation.

Every image goes through the frozen base (BatchNorm in inference mode: the pretraining's moving
statistics) at every epoch, augmented (flips, +-11 degree rotations, 10% zooms); only fc's
gradients are computed. RMSprop 1e-2 (HEAD_LEARNING_RATE, chosen on the validation split), 12
epochs. 65 trainable / 77,776 non-trainable (77,104 frozen + 672 moving
statistics). This is also phase 1 of the fine-tuning (configs/transfer_resnet_fine_tuning.py).

    python launch.py --config configs/transfer_resnet_feature_extraction_augment.py \
      --workdir runs/transfer_resnet/feature_extraction_augment

Measured on 2026-11-29 (2-core Intel Xeon CPU, shared, no GPU, jax 0.10.2): test accuracy 0.8163
(0.8155-0.8175), 35 s of training, mean (min-max) over seeds 0-2; the whole table, beside
vgg_small's, is in docs/transfer_results.md.
"""

from configs import transfer_resnet_fashion_mnist


def get_config():
  config = transfer_resnet_fashion_mnist.pretrained(transfer_resnet_fashion_mnist.get_config())
  config.train.param_groups = ('fc=1', '.*=frozen')
  transfer_resnet_fashion_mnist.augment_fashion(config)
  return config
