"""The PyTorch lecture's workflow 2 on ResNet18: new linear head, the last stage `layer4` unfrozen.

From torchvision's ImageNet weights (everything but `fc`), `layer4` (two BasicBlocks, 512
channels, 8,393,728 parameters) and the new one-unit `fc` train together; conv1, bn1 and
layer1..layer3 stay frozen, their BatchNorm layers in inference mode. 8,394,241 trainable /
2,792,384 non-trainable (2,782,784 frozen parameters + 9,600 BatchNorm moving statistics). Adam
1e-4 (ten times lower than the head alone, so the pretrained layer4 is adjusted, not overwritten),
10 epochs, the lecture's augmentation. The lecture reports 96-97% accuracy this way.

    python launch.py --config configs/resnet18_fine_tuning.py \
      --workdir runs/resnet18_fine_tuning --config.data.dir=PHOTO_FOLDER \
      --config.model.init_from=resnet18-f37072fd.pth

Not trained here: it needs torchvision's weight file and a photo folder (train/ validation/ test/,
one folder per class), neither of which this machine has; its summary is tested. The same
workflows on Fashion-MNIST with resnet_small: docs/transfer_results.md.
"""

from configs import resnet18_transfer


def get_config():
  config = resnet18_transfer.get_config()
  config.train.param_groups = ('layer4=1', 'fc=1', '.*=frozen')
  config.train.learning_rate = 1e-4
  return config
