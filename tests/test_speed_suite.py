"""The speed suite's reference models and bookkeeping (benchmarks/; the timings themselves are
never tests).

The PyTorch and Keras rows must compute cnnjax's architecture: the torch.nn models of
benchmarks/torch_models.py and the suite's Keras ResNet18 are checked against Keras' own
InceptionV3 and against torch's ResNet18 layer by layer, with the weights copied across. The
suite credits a row with the FLOPs of its own architecture and compares it with rivals of the
same architecture only.
"""

import os
import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
torch = pytest.importorskip('torch')
import speed_suite  # pylint: disable=wrong-import-position
import speed_workers  # pylint: disable=wrong-import-position
import torch_models  # pylint: disable=wrong-import-position


def trainable(model) -> int:
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize('name, count', [('resnet18', 11_689_512), ('resnet50', 25_557_032),
                                         ('inception_v3', 23_817_352)])
def test_torch_models_have_the_reference_parameter_counts(name, count):
  """torchvision's counts for the ResNets, Keras' trainable count for InceptionV3."""
  model = torch_models.MODELS[name](1000)
  assert trainable(model) == count
  size = 75 if name == 'inception_v3' else 64
  with torch.inference_mode():
    assert model.eval()(torch.zeros(2, 3, size, size)).shape == (2, 1000)


def randomize_batch_norms(model, seed=0):
  """Random statistics and offsets (and scales where they train): with torch's defaults a
  BatchNorm in eval mode is nearly the identity and a wrong one would pass."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        c = m.num_features
        if m.weight.requires_grad:
          m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
        m.bias.copy_(torch.randn(c, generator=generator) * 0.3)
        m.running_mean.copy_(torch.randn(c, generator=generator) * 0.3)
        m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
  return model


def keras_layers(model, kind):
  """The model's layers of a kind in the order they were created: their automatic names count
  up ('conv2d', 'conv2d_1', ...); `model.layers` is in the graph's order, which lists a block's
  projection shortcut before its residual path."""
  def created(layer):
    suffix = layer.name.rsplit('_', 1)[-1]
    return int(suffix) if suffix.isdigit() else 0
  return sorted((layer for layer in model.layers if type(layer).__name__ == kind), key=created)


def copy_torch_to_keras(torch_model, keras_model):
  """Every Conv2d, BatchNorm2d and Linear of the torch model into the Keras model's layers of
  that kind, in the order both create them."""
  convs = [m for m in torch_model.modules() if isinstance(m, torch.nn.Conv2d)]
  norms = [m for m in torch_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  linears = [m for m in torch_model.modules() if isinstance(m, torch.nn.Linear)]
  k_convs = keras_layers(keras_model, 'Conv2D')
  k_norms = keras_layers(keras_model, 'BatchNormalization')
  k_dense = keras_layers(keras_model, 'Dense')
  assert (len(convs), len(norms), len(linears)) == (len(k_convs), len(k_norms), len(k_dense))
  for m, layer in zip(convs, k_convs):
    kernel = m.weight.detach().numpy().transpose(2, 3, 1, 0)
    assert layer.get_weights()[0].shape == kernel.shape, layer.name
    layer.set_weights([kernel] + ([m.bias.detach().numpy()] if m.bias is not None else []))
  for m, layer in zip(norms, k_norms):
    weights = [m.bias, m.running_mean, m.running_var]
    if layer.scale:
      weights.insert(0, m.weight)
    else:
      assert torch.all(m.weight == 1) and not m.weight.requires_grad
    assert m.eps == pytest.approx(layer.epsilon), layer.name
    layer.set_weights([w.detach().numpy() for w in weights])
  for m, layer in zip(linears, k_dense):
    layer.set_weights([m.weight.detach().numpy().T, m.bias.detach().numpy()])


@pytest.mark.slow  # Keras builds a functional model slowly: 20-50 s each on the 2-core CPU.
@pytest.mark.filterwarnings('ignore::DeprecationWarning')
@pytest.mark.parametrize('name', ['inception_v3', 'resnet18'])
def test_torch_and_keras_rows_compute_the_same_function(name):
  """The torch InceptionV3 is Keras' (the rows of inceptionv3_predict_299), and the suite's
  Keras ResNet18 is torch's (the rows of resnet18_train_224): the same outputs from the same
  weights, in inference mode, BatchNorm statistics randomized."""
  os.environ.setdefault('KERAS_BACKEND', 'jax')
  keras = pytest.importorskip('keras')
  torch.manual_seed(0)
  model = randomize_batch_norms(torch_models.MODELS[name](10)).eval()
  shape = (75, 75, 3) if name == 'inception_v3' else (64, 64, 3)
  if name == 'inception_v3':
    keras_model = keras.applications.InceptionV3(weights=None, input_shape=shape, classes=10,
                                                 classifier_activation=None)
  else:
    keras_model = speed_workers.keras_resnet18(keras, shape, 10, activation=None)
    assert sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights) == 11_181_642
  copy_torch_to_keras(model, keras_model)
  images = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
  with torch.inference_mode():
    expected = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
  got = keras_model.predict(images, verbose=0)  # Inference mode, jitted.
  assert np.abs(expected).max() > 0.1
  np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def row(architecture, ips, dtype='float32', flops=None):
  out = {'architecture': architecture, 'images_per_second_best': ips, 'dtype': dtype}
  if flops:
    out['flops_per_step'] = flops
  return out


def test_rows_are_compared_within_their_architecture():
  """ResNet50: cnnjax's v1.5 row against torch's v1.5, its v1 row against Keras' v1; a ratio
  across architectures would compare different arithmetic."""
  v15, v1 = speed_workers.ARCHITECTURES['resnet50'], speed_workers.ARCHITECTURES['resnet50_keras']
  result = {'rows': {'cnnjax': row(v15, 20.0), 'cnnjax,model=resnet50_keras': row(v1, 21.0),
                     'keras': row(v1, 7.0), 'torch': row(v15, 10.0),
                     'torch,hugepages=on': row(v15, 12.5), 'torch_compile': row(v15, 30.0)}}
  assert speed_suite.reference_speeds(result) == {('keras', v1): 7.0, ('torch', v15): 12.5}


def test_each_row_gets_the_flops_of_its_architecture(tmp_path, monkeypatch, capsys):
  """run_workload's bookkeeping with fake workers: v1 and v1.5 rows get their own cnnjax FLOPs,
  a row whose architecture cnnjax did not run gets none, bf16 rows are never the FLOP source."""
  v15, v1 = speed_workers.ARCHITECTURES['resnet50'], speed_workers.ARCHITECTURES['resnet50_keras']
  answers = {'cnnjax,bf16': row(v15, 0, 'bfloat16', flops=1.0),
             'cnnjax': row(v15, 0, flops=4e9), 'cnnjax,model=resnet50_keras': row(v1, 0, flops=3e9),
             'keras': row(v1, 0), 'torch': row(v15, 0), 'other': row('something else', 0)}

  class FakeWorker:
    def __init__(self, workload, framework, steps, log_dir):
      del workload, steps, log_dir
      self.framework = framework

    def read(self):
      return {'ready': True, **answers[self.framework]}

    def ask(self, command):
      assert command == 'run'
      return {'seconds': 2.0 if self.framework.startswith('cnnjax') else 4.0}

    def close(self):
      return {'maxrss_mib': 1.0}

  monkeypatch.setattr(speed_suite, 'Worker', FakeWorker)
  result = speed_suite.run_workload('resnet50_predict_224', list(answers), steps=2, rounds=2,
                                    log_dir=str(tmp_path), parallel_start=True)
  rows = result['rows']
  assert result['flops_per_step_by_architecture'] == {v15: 4e9, v1: 3e9}
  assert rows['cnnjax']['achieved_gflops'] == pytest.approx(4e9 * 2 / 2.0 / 1e9)
  assert rows['cnnjax,model=resnet50_keras']['achieved_gflops'] == pytest.approx(3.0)
  assert rows['keras']['achieved_gflops'] == pytest.approx(3e9 * 2 / 4.0 / 1e9)
  assert rows['torch']['achieved_gflops'] == pytest.approx(2.0)
  assert 'achieved_gflops' not in rows['other']
  assert rows['cnnjax']['images_per_second_best'] == pytest.approx(8 * 2 / 2.0)
  assert rows['cnnjax,bf16']['achieved_gflops'] == pytest.approx(4.0)  # v1.5's f32 FLOPs.

  results = {'machine': {'machine': 'test'}, 'workloads': {'resnet50_predict_224': {
      **result, 'load_before': [0.0], 'load_after': [0.0]}},
             'matmul_peak_gflops': {'jax': {'float32': 8.0, 'bfloat16': 16.0}, 'torch': {}}}
  speed_suite.print_table(results)
  lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()
           if line.startswith('resnet50_predict_224')}
  # cnnjax v1.5 at 8 img/s against torch's 4: 2x; its v1 row against Keras' v1 (4 img/s): 2x,
  # and no torch ratio (torch ran no v1); the bf16 row's share is of the bf16 peak (4 / 16).
  assert lines['cnnjax'].split()[4:6] == ['2.00x', '-']
  assert lines['cnnjax,model=resnet50_keras'].split()[4:6] == ['-', '2.00x']
  assert lines['cnnjax,bf16'].split()[7] == '25'
  assert lines['cnnjax'].split()[7] == '50'


def test_a_missing_cnnjax_model_is_a_clear_error(monkeypatch):
  from cnnjax import models  # pylint: disable=import-outside-toplevel
  monkeypatch.delitem(models.MODELS, 'inception_v3', raising=False)
  with pytest.raises(ValueError, match="no model 'inception_v3'.*inceptionv3_predict_299"):
    speed_workers.cnnjax_worker('inceptionv3_predict_299', 1, 'cnnjax')


def test_zoo_workloads_name_their_models():
  for workload, (keras_model, torch_model) in speed_workers.RIVAL_MODELS.items():
    assert workload in speed_workers.WORKLOADS and workload in speed_suite.DEFAULT_FRAMEWORKS
    assert torch_model in torch_models.MODELS
    assert speed_workers.CNNJAX_MODELS[workload] in speed_workers.ARCHITECTURES
    assert keras_model in speed_workers.ARCHITECTURES
