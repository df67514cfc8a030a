"""A torch.nn ResNet in torchvision's module layout (no torchvision here), for reference outputs.

The modules, their names and their computation follow torchvision/models/resnet.py (v1.5: the
Bottleneck's stride on conv2; bias-free convolutions; BatchNorm2d with eps 1e-5, momentum 0.1), so
`state_dict()` has torchvision's keys ('layer1.0.downsample.1.running_mean', 'fc.weight', ...)
and its files load as torchvision's would. Written from the architecture, not copied.
"""

import pytest

torch = pytest.importorskip('torch')
nn = torch.nn


def conv3x3(inputs, outputs, stride=1):
  return nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)


def conv1x1(inputs, outputs, stride=1):
  return nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False)


def downsample(inputs, outputs, stride):
  return nn.Sequential(conv1x1(inputs, outputs, stride), nn.BatchNorm2d(outputs))


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inputs, planes, stride=1):
    super().__init__()
    self.conv1 = conv3x3(inputs, planes, stride)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = conv3x3(planes, planes)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = (downsample(inputs, planes, stride)
                       if stride != 1 or inputs != planes else None)

  def forward(self, x):
    shortcut = x if self.downsample is None else self.downsample(x)
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return self.relu(y + shortcut)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inputs, planes, stride=1):
    super().__init__()
    outputs = planes * self.expansion
    self.conv1 = conv1x1(inputs, planes)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = conv3x3(planes, planes, stride)  # v1.5: the stride on the 3x3 convolution.
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = conv1x1(planes, outputs)
    self.bn3 = nn.BatchNorm2d(outputs)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = (downsample(inputs, outputs, stride)
                       if stride != 1 or inputs != outputs else None)

  def forward(self, x):
    shortcut = x if self.downsample is None else self.downsample(x)
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return self.relu(y + shortcut)


class ResNet(nn.Module):

  def __init__(self, block, layers, num_classes=1000):
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

  def _stage(self, block, planes, blocks, stride):
    stage = [block(self.inputs, planes, stride)]
    self.inputs = planes * block.expansion
    stage += [block(self.inputs, planes) for _ in range(1, blocks)]
    return nn.Sequential(*stage)

  def features(self, x):
    """The pooled features right before fc."""
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return torch.flatten(self.avgpool(x), 1)

  def forward(self, x):
    return self.fc(self.features(x))


def resnet18(**kwargs):
  return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs):
  return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs):
  return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


def randomize_batch_norms(model, seed):
  """Random scale, offset, running mean and (positive) running variance in every BatchNorm: with
  torch's defaults (1, 0, 0, 1) a BatchNorm in eval mode is nearly the identity and a port that
  mixed them up would pass."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        c = m.num_features
        m.weight.copy_(torch.rand(c, generator=generator) * 1.5 + 0.25)
        m.bias.copy_(torch.randn(c, generator=generator) * 0.5)
        m.running_mean.copy_(torch.randn(c, generator=generator) * 0.5)
        m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.25)
        m.num_batches_tracked.fill_(1000)
  return model
