"""The PyTorch lecture's workflow 3 on ResNet18: everything trains, the backbone at 0.1x the head.

From torchvision's ImageNet weights (everything but `fc`) the whole network trains, in two
parameter groups as the lecture's optimizer has them: the new one-unit `fc` at Adam 1e-3 and the
backbone (conv1, bn1, layer1..layer4) at a tenth of it, 1e-4 (`train.param_groups = ('fc=1',
'.*=0.1')`); every BatchNorm layer trains (batch statistics, moving averages updated). 11,177,025
trainable / 9,600 non-trainable (the BatchNorm moving statistics). 10 epochs, the lecture's
augmentation. Meant for a GPU.

    python launch.py --config configs/resnet18_end_to_end.py \
      --workdir runs/resnet18_end_to_end --config.data.dir=PHOTO_FOLDER \
      --config.model.init_from=resnet18-f37072fd.pth

Not trained here: it needs torchvision's weight file and a photo folder (train/ validation/ test/,
one folder per class), neither of which this machine has; its summary is tested. The same
workflows on Fashion-MNIST with resnet_small: docs/transfer_results.md.
"""

from configs import resnet18_transfer


def get_config():
  config = resnet18_transfer.get_config()
  config.train.param_groups = ('fc=1', '.*=0.1')
  return config
