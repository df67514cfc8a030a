"""ResNet18 (torchvision's ImageNet weights) on a binary photo folder: the common base of the
PyTorch lecture's three transfer workflows (configs/resnet18_*.py).

`resnet18` in torchvision's layout (cnnjax/models/resnet.py; parameter paths are torch's
state-dict keys split on '.': 'conv1/kernel', 'layer4/0/conv1/kernel', 'fc/kernel') with the
1000-class `fc` replaced by a new one-unit `fc` on the 512 globally averaged features
(`model.num_outputs = 1`, a sigmoid output with binary cross-entropy): 11,177,025 parameters
(11,176,512 in the backbone, 513 in the head) plus 9,600 BatchNorm moving statistics
(non-trainable). The model applies torchvision's preprocessing itself (`model.preprocess =
'torch'`: /255, minus the ImageNet mean, over the ImageNet std), so it takes RGB pixels in 0..255:
`data.pixel_scale = 1.0` keeps them so, and the augmentation runs on them too.

Data: a photo folder, `data.dir` holding `train/`, `validation/` and `test/` with one folder per
class (two classes; labels follow the sorted folder names), resized to 224x224 RGB, e.g. the
cats-vs-dogs subset of configs/cats_vs_dogs_scratch.py. Augmentation: the lecture's torchvision
training transform (`augment.kind = 'torchvision'`: RandomRotation(40), RandomResizedCrop(224,
scale=(0.8, 1.2)), RandomHorizontalFlip, RandomAffine(shear=20), ColorJitter(0.2, 0.2, 0.2)) on
0..255 pixels, WITHOUT its Normalize(0.5, 0.5): the model's 'torch' preprocessing is the
normalization the ImageNet weights were trained with. Adam (the lecture's optimizer), batch 32.

The backbone starts from torchvision's `resnet18-f37072fd.pth` (`model.init_from`; the address is
in `cnnjax.weights.resnet.URLS`, a missing file is an error that prints it; cnnjax never
downloads), taken for everything but `fc` (`model.init_layers = ('conv1', 'bn1', 'layer.*')`,
BatchNorm statistics included); `fc` is new.

    python launch.py --config configs/resnet18_transfer.py --mode summary

As it is (everything trainable at one learning rate) this config is not one of the lecture's
workflows; those are:

- resnet18_feature_extraction.py: (1) frozen backbone + new linear head; 513 trainable /
  11,186,112 non-trainable (11,176,512 frozen parameters + 9,600 moving statistics);
- resnet18_fine_tuning.py: (2) the same with `layer4` unfrozen; 8,394,241 / 2,792,384;
- resnet18_end_to_end.py: (3) everything trainable, the backbone at 0.1x the head's learning
  rate; 11,177,025 / 9,600.

Not trained here: neither the ImageNet weights nor a photo folder can be had on the machines this
project is built on; `--mode summary` of every resnet18_* config is checked by the tests.
"""

from configs import cats_vs_dogs_scratch

TORCHVISION_WEIGHTS = 'resnet18-f37072fd.pth'
BACKBONE = ('conv1', 'bn1', 'layer.*')  # Everything but fc.


def get_config():
  config = cats_vs_dogs_scratch.get_config()
  data = config.data
  data.name = 'photos'
  data.image_size = (224, 224)
  data.pixel_scale = 1.0  # 0..255: the model's 'torch' preprocessing expects pixels.
  model = config.model
  model.name = 'resnet18'
  model.input_shape = (224, 224, 3)
  model.num_outputs = 1
  model.preprocess = 'torch'
  model.init_from = TORCHVISION_WEIGHTS  # --config.model.init_from=PATH.
  model.init_layers = BACKBONE
  augment = config.augment
  augment.kind = 'torchvision'
  augment.torchvision.normalize_mean = ()  # The model normalizes (ImageNet mean / std).
  augment.torchvision.normalize_std = ()
  augment.torchvision.value_range = (0.0, 255.0)
  train = config.train
  train.loss = 'binary_crossentropy'
  train.optimizer = 'adam'
  train.learning_rate = 1e-3
  train.batch_size = 32
  train.eval_batch_size = 100
  train.epochs = 10
  return config
