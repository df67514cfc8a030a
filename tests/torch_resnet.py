"""A torch.nn ResNet in torchvision's module layout (no torchvision here), for reference outputs.

The modules, their names and their computation follow torchvision/models/resnet.py (v1.5: the
Bottleneck's stride on conv2; bias-free convolutions; BatchNorm2d with eps 1e-5, momentum 0.1), so
`state_dict()` has torchvision's keys ('layer1.0.downsample.1.running_mean', 'fc.weight', ...)
and its files load as torchvision's would. Written from the architecture, not copied; the modules
are the speed suite's (benchmarks/torch_models.py), with `randomize_batch_norms` for the tests.
"""

import pytest

torch = pytest.importorskip('torch')
nn = torch.nn

# pylint: disable=wrong-import-position,unused-import
from benchmarks.torch_models import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50


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
