"""The PyTorch lecture's workflow 1 on ResNet18: frozen ImageNet backbone, new linear head.

Everything but `fc` is frozen (`train.param_groups = ('fc=1', '.*=frozen')`); its BatchNorm
layers run in inference mode (their moving statistics stay ImageNet's). Only the new one-unit `fc`
on the 512 pooled features trains: 513 trainable / 11,186,112 non-trainable (11,176,512 frozen
parameters + 9,600 BatchNorm moving statistics). Adam 1e-3, 10 epochs, with the lecture's
augmentation (configs/resnet18_transfer.py). The lecture reports about 94% accuracy this way.
`--config.train.cache_features=True --config.augment.kind=none` runs the backbone once and trains
`fc` on the cached 512 features instead (seconds, but without augmentation).

    python launch.py --config configs/resnet18_feature_extraction.py \
      --workdir runs/resnet18_feature_extraction --config.data.dir=PHOTO_FOLDER \
      --config.model.init_from=resnet18-f37072fd.pth

Not trained here: it needs torchvision's weight file and a photo folder (train/ validation/ test/,
one folder per class), neither of which this machine has; its summary is tested. The same
workflows on Fashion-MNIST with resnet_small: docs/transfer_results.md.
"""

from configs import resnet18_transfer


def get_config():
  config = resnet18_transfer.get_config()
  config.train.param_groups = ('fc=1', '.*=frozen')
  return config
