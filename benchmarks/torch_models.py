"""torch.nn models of `speed_workers.py`'s PyTorch rows: the architectures cnnjax runs.

- `resnet18`, `resnet34`, `resnet50`: ResNet in torchvision's module layout (torchvision/models/resnet.py:
  v1.5, the Bottleneck's stride on its 3x3 conv2; bias-free convolutions; BatchNorm2d eps 1e-5),
  the architecture of cnnjax's 'resnet18' / 'resnet34' / 'resnet50' (`cnnjax/models/resnet.py`),
  written from the architecture; the tests' reference ResNets too (tests/torch_resnet.py).
- `inception_v3`: InceptionV3 as Keras builds it (`keras.applications.InceptionV3`,
  keras/src/applications/inception_v3.py), the architecture of cnnjax's 'inception_v3': every
  `conv2d_bn` a bias-free convolution and a BatchNorm with Keras' epsilon 1e-3 and no learned
  scale (`scale=False`: here the scale is fixed at 1, requires_grad False, so that BatchNorm2d
  stays one fused kernel), 'same' convolutions padded symmetrically (kernel // 2: every 'same'
  convolution of InceptionV3 has stride 1 and an odd kernel), the 3x3 stride-1 'same' average
  pools dividing by the cells inside the image (`count_include_pad=False`, Keras' way), 'valid'
  max pools, the top a global average and a 1000-way Linear. torchvision's Inception3 differs
  (bias-free BatchNorm with a scale, eps 1e-3, an auxiliary head, other branch layouts), so its
  arithmetic is not cnnjax's.

Parameter counts at the 1000-class top (checked in tests/test_speed_suite.py): resnet18
11,689,512 and resnet50 25,557,032 trainable, as torchvision's; inception_v3 23,817,352
trainable, as Keras' InceptionV3 counts (23,851,784 with its 34,432 moving statistics).
"""

import torch
from torch import nn


def _conv3x3(inputs: int, outputs: int, stride: int = 1) -> nn.Conv2d:
  return nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)


def _conv1x1(inputs: int, outputs: int, stride: int = 1) -> nn.Conv2d:
  return nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
  """conv1 3x3 (stride) - bn1 - ReLU - conv2 3x3 - bn2, plus the shortcut, then ReLU."""

  expansion = 1

  def __init__(self, inputs: int, planes: int, stride: int = 1):
    super().__init__()
    self.conv1 = _conv3x3(inputs, planes, stride)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = _conv3x3(planes, planes)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = (nn.Sequential(_conv1x1(inputs, planes, stride), nn.BatchNorm2d(planes))
                       if stride != 1 or inputs != planes else None)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x if self.downsample is None else self.downsample(x)
    y = self.relu(self.bn1(self.conv1(x)))
    return self.relu(self.bn2(self.conv2(y)) + shortcut)


class Bottleneck(nn.Module):
  """conv1 1x1 - bn1 - ReLU - conv2 3x3 (stride: v1.5) - bn2 - ReLU - conv3 1x1 (4x) - bn3, plus
  the shortcut, then ReLU."""

  expansion = 4

  def __init__(self, inputs: int, planes: int, stride: int = 1):
    super().__init__()
    outputs = planes * self.expansion
    self.conv1 = _conv1x1(inputs, planes)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = _conv3x3(planes, planes, stride)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = _conv1x1(planes, outputs)
    self.bn3 = nn.BatchNorm2d(outputs)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = (nn.Sequential(_conv1x1(inputs, outputs, stride), nn.BatchNorm2d(outputs))
                       if stride != 1 or inputs != outputs else None)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x if self.downsample is None else self.downsample(x)
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    return self.relu(self.bn3(self.conv3(y)) + shortcut)


class ResNet(nn.Module):
  """torchvision's ResNet: conv1 7x7/2 - bn1 - ReLU - maxpool 3x3/2 - layer1..4 - avgpool - fc."""

  def __init__(self, block, layers, num_classes: int = 1000):
    super().__init__()
    self.inputs = 64
    self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    self.layer1 = self._stage(block, 64, layers[0], 1)
    self.layer2 = self._stage(block, 128, layers[1], 2)
    self.layer3 = self._stage(block, 256, layers[2], 2)
    self.layer4 = self._stage(block, 512, layers[3], 2)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(512 * block.expansion, num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

  def _stage(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
    stage = [block(self.inputs, planes, stride)]
    self.inputs = planes * block.expansion
    stage += [block(self.inputs, planes) for _ in range(1, blocks)]
    return nn.Sequential(*stage)

  def features(self, x: torch.Tensor) -> torch.Tensor:
    """The globally averaged (N, 512 * expansion) features that `fc` classifies."""
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return torch.flatten(self.avgpool(x), 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.fc(self.features(x))


def resnet18(num_classes: int = 1000) -> ResNet:
  return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet34(num_classes: int = 1000) -> ResNet:
  return ResNet(BasicBlock, (3, 4, 6, 3), num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
  return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)


# -- InceptionV3 in Keras' architecture -----------------------------------------------------------


class ConvBN(nn.Module):
  """Keras' `conv2d_bn`: a bias-free convolution, BatchNorm (eps 1e-3, no scale), ReLU."""

  def __init__(self, inputs: int, outputs: int, kernel, stride: int = 1, same: bool = True):
    super().__init__()
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    padding = (kernel[0] // 2, kernel[1] // 2) if same else 0
    self.conv = nn.Conv2d(inputs, outputs, kernel, stride=stride, padding=padding, bias=False)
    # Keras' momentum 0.99 is torch's 0.01. scale=False: the scale stays 1 and does not train.
    self.bn = nn.BatchNorm2d(outputs, eps=1e-3, momentum=0.01)
    self.bn.weight.requires_grad_(False)
    self.relu = nn.ReLU(inplace=True)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.relu(self.bn(self.conv(x)))


def _avg_pool_same() -> nn.AvgPool2d:
  return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def _chain(inputs: int, *layers) -> nn.Sequential:
  """ConvBN layers one after another: each `(outputs, kernel[, stride, same])`."""
  modules = []
  for spec in layers:
    modules.append(ConvBN(inputs, *spec))
    inputs = spec[0]
  return nn.Sequential(*modules)


class InceptionA(nn.Module):
  """mixed0..2 (35x35): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 (pool_features)."""

  def __init__(self, inputs: int, pool_features: int):
    super().__init__()
    self.branch1x1 = _chain(inputs, (64, 1))
    self.branch5x5 = _chain(inputs, (48, 1), (64, 5))
    self.branch3x3dbl = _chain(inputs, (64, 1), (96, 3), (96, 3))
    self.pool = _avg_pool_same()
    self.branch_pool = _chain(inputs, (pool_features, 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([self.branch1x1(x), self.branch5x5(x), self.branch3x3dbl(x),
                      self.branch_pool(self.pool(x))], 1)


class ReductionA(nn.Module):
  """mixed3 (35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool 3x3/2."""

  def __init__(self, inputs: int):
    super().__init__()
    self.branch3x3 = _chain(inputs, (384, 3, 2, False))
    self.branch3x3dbl = _chain(inputs, (64, 1), (96, 3), (96, 3, 2, False))
    self.pool = nn.MaxPool2d(3, stride=2)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([self.branch3x3(x), self.branch3x3dbl(x), self.pool(x)], 1)


class InceptionC(nn.Module):
  """mixed4..7 (17x17): 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1, width c7."""

  def __init__(self, inputs: int, c7: int):
    super().__init__()
    self.branch1x1 = _chain(inputs, (192, 1))
    self.branch7x7 = _chain(inputs, (c7, 1), (c7, (1, 7)), (192, (7, 1)))
    self.branch7x7dbl = _chain(inputs, (c7, 1), (c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)),
                               (192, (1, 7)))
    self.pool = _avg_pool_same()
    self.branch_pool = _chain(inputs, (192, 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([self.branch1x1(x), self.branch7x7(x), self.branch7x7dbl(x),
                      self.branch_pool(self.pool(x))], 1)


class ReductionB(nn.Module):
  """mixed8 (17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool 3x3/2."""

  def __init__(self, inputs: int):
    super().__init__()
    self.branch3x3 = _chain(inputs, (192, 1), (320, 3, 2, False))
    self.branch7x7x3 = _chain(inputs, (192, 1), (192, (1, 7)), (192, (7, 1)), (192, 3, 2, False))
    self.pool = nn.MaxPool2d(3, stride=2)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([self.branch3x3(x), self.branch7x7x3(x), self.pool(x)], 1)


class InceptionE(nn.Module):
  """mixed9, mixed10 (8x8): 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | avgpool-1x1."""

  def __init__(self, inputs: int):
    super().__init__()
    self.branch1x1 = _chain(inputs, (320, 1))
    self.branch3x3 = _chain(inputs, (384, 1))
    self.branch3x3_1 = _chain(384, (384, (1, 3)))
    self.branch3x3_2 = _chain(384, (384, (3, 1)))
    self.branch3x3dbl = _chain(inputs, (448, 1), (384, 3))
    self.branch3x3dbl_1 = _chain(384, (384, (1, 3)))
    self.branch3x3dbl_2 = _chain(384, (384, (3, 1)))
    self.pool = _avg_pool_same()
    self.branch_pool = _chain(inputs, (192, 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    a = self.branch3x3(x)
    b = self.branch3x3dbl(x)
    return torch.cat([self.branch1x1(x), self.branch3x3_1(a), self.branch3x3_2(a),
                      self.branch3x3dbl_1(b), self.branch3x3dbl_2(b),
                      self.branch_pool(self.pool(x))], 1)


class InceptionV3(nn.Module):
  """Keras' InceptionV3 (include_top=True, no auxiliary head) on (N, 3, 299, 299) inputs."""

  def __init__(self, num_classes: int = 1000):
    super().__init__()
    self.stem = nn.Sequential(
        ConvBN(3, 32, 3, 2, False), ConvBN(32, 32, 3, 1, False), ConvBN(32, 64, 3),
        nn.MaxPool2d(3, stride=2),
        ConvBN(64, 80, 1, 1, False), ConvBN(80, 192, 3, 1, False), nn.MaxPool2d(3, stride=2))
    self.mixed = nn.Sequential(
        InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64),  # mixed0..2
        ReductionA(288),  # mixed3: 768
        InceptionC(768, 128), InceptionC(768, 160), InceptionC(768, 160),
        InceptionC(768, 192),  # mixed4..7
        ReductionB(768),  # mixed8: 1280
        InceptionE(1280), InceptionE(2048))  # mixed9, mixed10
    self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
    self.predictions = nn.Linear(2048, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.mixed(self.stem(x))
    return self.predictions(torch.flatten(self.avg_pool(x), 1))


def inception_v3(num_classes: int = 1000) -> InceptionV3:
  return InceptionV3(num_classes)


MODELS = {'resnet18': resnet18, 'resnet50': resnet50, 'inception_v3': inception_v3}
