"""cnnjax's ResNet against a torch.nn ResNet in torchvision's layout: same outputs, same training.

torchvision is not installed; `torch_resnet` builds its ResNets with torch.nn under torchvision's
module names, so their state dicts are torchvision's files in all but the values. Every BatchNorm is
randomized (scale, offset, running mean and variance): torch's defaults make an inference-mode
BatchNorm almost the identity, and a port that mixed up its statistics would pass. The files go
through `cnnjax.weights.load_weights` (zip and legacy torch formats) and `merge_variables`, so
the comparisons test the name table as much as the model. Fast tests use 64x64 images, batch 2;
resnet50 with its top at 224x224 is marked slow.

Differences are measured as max|ours - torch| / max|torch| ("relative" below).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnnjax.errors import DataError
from cnnjax.models import MODELS, convolution, layers, resnet
from cnnjax.summary import parameter_counts
from cnnjax.weights import files, load_weights, merge_variables
from cnnjax.weights.resnet import identify, variables_from_state_dict

torch = pytest.importorskip('torch')
import torch_resnet  # pylint: disable=wrong-import-position

SIZE = 64
TOLERANCE = 1e-4
MOMENTUM = 0.1  # torch's; Flax's is 1 - MOMENTUM = 0.9.


def relative_difference(output, reference):
  output, reference = np.asarray(output), np.asarray(reference)
  assert output.shape == reference.shape
  return float(np.max(np.abs(output - reference)) / np.max(np.abs(reference)))


def images(size=SIZE, seed=0, batch=2):
  # The range of torch-preprocessed pixels.
  return np.random.default_rng(seed).normal(0, 1.2, (batch, size, size, 3)).astype(np.float32)


def flat(tree):
  return traverse_util.flatten_dict(dict(tree), sep='/')


def nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def abstract_variables(model, size):
  return jax.eval_shape(model.init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))


def ported(model, path, model_name, size=SIZE, drop=()):
  """`model`'s variables from the file at `path`, through load_weights and merge_variables."""
  loaded = load_weights(path, model_name)
  for name in drop:
    del loaded['params'][name]
  return merge_variables(abstract_variables(model, size), loaded, source=str(path))


def torch_reference(name, seed):
  torch.manual_seed(seed)
  model = getattr(torch_resnet, name)()
  return torch_resnet.randomize_batch_norms(model, seed).eval()


@pytest.fixture(scope='module')
def torch_files(tmp_path_factory):
  """resnet18 (zip and legacy .pth) and resnet50 (zip), with their outputs on `images()`."""
  directory = tmp_path_factory.mktemp('torch_resnet')
  x = images()
  out = {}
  for name, seed in (('resnet18', 0), ('resnet50', 1)):
    model = torch_reference(name, seed)
    paths = {'zip': directory / f'{name}.pth'}
    torch.save(model.state_dict(), paths['zip'])
    if name == 'resnet18':
      paths['legacy'] = directory / f'{name}_legacy.pth'
      torch.save(model.state_dict(), paths['legacy'], _use_new_zipfile_serialization=False)
    with torch.no_grad():
      features = model.features(nchw(x))
      logits = model.fc(features)
    out[name] = {'paths': paths, 'logits': logits.numpy(), 'features': features.numpy()}
  return out


# ---------------------------------------------------------------------------------------------
# Architecture


@pytest.mark.parametrize('name, trainable, non_trainable', [
    ('resnet18', 11_689_512, 9_600), ('resnet34', 21_797_672, 17_024),
    ('resnet50', 25_557_032, 53_120)])
def test_parameter_counts_are_torchvisions(name, trainable, non_trainable):
  counts = parameter_counts(abstract_variables(MODELS[name](), 224))
  assert counts == {'trainable': trainable, 'non_trainable': non_trainable,
                    'total': trainable + non_trainable}


def test_variable_paths_are_torchvision_state_dict_keys():
  # Each torch key split on '.' is the path; only the last part is renamed, and kernels transposed.
  renamed = {'running_mean': ('batch_stats', 'mean'), 'running_var': ('batch_stats', 'var'),
             'bias': ('params', 'bias')}
  expected = {}
  for key, value in torch_resnet.resnet50().state_dict().items():
    *module, kind = key.split('.')
    shape = tuple(value.shape)
    if kind == 'num_batches_tracked':
      continue
    if kind == 'weight':
      collection, kind = 'params', {4: 'kernel', 2: 'kernel', 1: 'scale'}[len(shape)]
      shape = {4: lambda s: (s[2], s[3], s[1], s[0]), 2: lambda s: s[::-1],
               1: lambda s: s}[len(shape)](shape)
    else:
      collection, kind = renamed[kind]
    expected['/'.join([collection, *module, kind])] = shape
  ours = {'/'.join(k.key for k in path): leaf.shape for path, leaf in
          jax.tree_util.tree_flatten_with_path(abstract_variables(resnet.resnet50(), SIZE))[0]}
  assert ours == expected


def random_variables(model, shape, seed=0):
  """Variables of `model`'s shapes with random values (cheaper here than `model.init`, whose
  initializers compile one by one)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))
  return jax.tree.map(lambda s: jnp.asarray(rng.uniform(0.5, 1.0, s.shape) if len(s.shape) == 1
                                            else rng.normal(0, 0.2, s.shape), jnp.float32), shapes)


def test_resnet_small_trains_and_splits_at_the_features():
  model = MODELS['resnet_small']()
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)), jnp.float32)
  variables = random_variables(model, x.shape)
  assert parameter_counts(variables) == {'total': 78_426, 'trainable': 77_754,
                                         'non_trainable': 672}
  assert [len(variables['params'][f'layer{i}']) for i in (1, 2, 3)] == [1, 1, 1]
  logits, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert logits.shape == (4, 10) and logits.dtype == jnp.float32
  assert not np.allclose(updates['batch_stats']['bn1']['mean'],
                         variables['batch_stats']['bn1']['mean'])
  features = model.apply(variables, x, features_only=True)
  assert features.shape == (4, 64)
  np.testing.assert_allclose(model.apply(variables, features, from_features=True),
                             model.apply(variables, x), rtol=1e-5, atol=1e-6)


def test_explicit_padding_in_every_convolution_and_max_pooling():
  x = jax.random.normal(jax.random.key(0), (2, 10, 9, 2))
  kernel = jax.random.normal(jax.random.key(1), (7, 7, 2, 4))
  padding = ((3, 3), (2, 1))
  reference = jax.lax.conv_general_dilated(x, kernel, (2, 2), padding,
                                           dimension_numbers=convolution.DIMENSION_NUMBERS)
  for implementation in ('lax', 'im2col', 'taps'):
    convolve = jax.jit(lambda x, k, i=implementation:
                       convolution.convolve(x, k, (2, 2), padding, i))
    np.testing.assert_allclose(convolve(x, kernel), reference, rtol=1e-5, atol=1e-5)
  # Padded with -inf, as torch's MaxPool2d: on negative inputs zero padding would show.
  negative = -jnp.abs(x) - 1
  pooled = layers.MaxPooling2D((3, 3), (2, 2), padding=((1, 1), (1, 1))).apply({}, negative)
  with torch.no_grad():
    expected = torch.nn.functional.max_pool2d(nchw(np.asarray(negative)), 3, 2, 1)
  np.testing.assert_array_equal(pooled, expected.numpy().transpose(0, 2, 3, 1))
  with pytest.raises(ValueError, match='explicit padding'):
    convolution.convolve(x, kernel, (1, 1), ((1, 1),), 'lax')


# ---------------------------------------------------------------------------------------------
# Inference: the same outputs from the same files


@pytest.mark.parametrize('name, kind', [('resnet18', 'zip'), ('resnet18', 'legacy'),
                                        ('resnet50', 'zip')])
def test_with_top_matches_torch(torch_files, name, kind):
  reference = torch_files[name]
  model = MODELS[name]()
  variables = ported(model, reference['paths'][kind], name)
  logits = model.apply(variables, jnp.asarray(images()))
  assert relative_difference(logits, reference['logits']) < TOLERANCE


@pytest.mark.parametrize('name', ['resnet18', 'resnet50'])
def test_without_top_matches_torch(torch_files, name):
  reference = torch_files[name]
  x = jnp.asarray(images())
  base = MODELS[name](include_top=False, pooling='avg')
  variables = ported(base, reference['paths']['zip'], name, drop=('fc',))
  assert relative_difference(base.apply(variables, x), reference['features']) < TOLERANCE
  # The whole model split at the features gives the same features, and its top the logits.
  model = MODELS[name]()
  variables = ported(model, reference['paths']['zip'], name)
  features = model.apply(variables, x, features_only=True)
  assert relative_difference(features, reference['features']) < TOLERANCE
  logits = model.apply(variables, features, from_features=True)
  assert relative_difference(logits, reference['logits']) < TOLERANCE


def test_feature_map_without_pooling(torch_files):
  base = resnet.resnet18(include_top=False)
  variables = ported(base, torch_files['resnet18']['paths']['zip'], 'resnet18', drop=('fc',))
  maps = base.apply(variables, jnp.asarray(images()))
  assert maps.shape == (2, SIZE // 32, SIZE // 32, 512)
  np.testing.assert_allclose(maps.mean(axis=(1, 2)), torch_files['resnet18']['features'],
                             rtol=1e-4, atol=1e-4 * np.abs(maps).max())


def test_same_padding_in_the_stem_does_not_match_torch(torch_files, monkeypatch):
  # lax's 'SAME' pads a 7x7 stride-2 convolution on an even input (2, 3), torch's padding=3 (3, 3):
  # same shapes, different outputs.
  assert convolution.explicit_pads((SIZE, SIZE), (7, 7), (2, 2), 'SAME') == [(2, 3), (2, 3)]
  torch_padding = resnet._same  # pylint: disable=protected-access
  monkeypatch.setattr(resnet, '_same', lambda size: 'SAME' if size == 7 else torch_padding(size))
  model = resnet.resnet18()
  variables = ported(model, torch_files['resnet18']['paths']['zip'], 'resnet18')
  logits = model.apply(variables, jnp.asarray(images()))
  assert relative_difference(logits, torch_files['resnet18']['logits']) > 1e-2


@pytest.mark.slow
def test_resnet50_at_224_matches_torch(tmp_path):
  model = torch_reference('resnet50', 2)
  path = tmp_path / 'resnet50.pth'
  torch.save(model.state_dict(), path)
  x = images(224, seed=3)
  with torch.no_grad():
    expected = model(nchw(x)).numpy()
  ours = resnet.resnet50()
  logits = ours.apply(ported(ours, path, 'resnet50', size=224), jnp.asarray(x))
  assert relative_difference(logits, expected) < TOLERANCE


# ---------------------------------------------------------------------------------------------
# Training: one step in train mode from the same weights


def test_train_step_matches_torch(tmp_path):
  """Batch statistics, updated moving averages and gradients of resnet18 in train mode.

  (a) Every BatchNorm's output (normalized with the batch's mean and biased variance) agrees.
  (b) The moving means agree; the variances differ by design: torch averages in the UNBIASED
      batch variance (times n / (n - 1), n = batch * height * width; n = 8 in layer4 here, a 14%
      difference), Flax the biased one, so Flax's var == torch's running_var - (1 - m) *
      (unbiased - biased), checked with both variances measured on torch's side.
  (c) The gradients of sum(logits * w) agree within 1e-4 of each tensor's largest gradient.
      Measured: at most 1.1e-5 to 1.4e-5 from run to run (layer4's kernels), float32 rounding of
      sums of up to 2048 terms per channel, differently ordered, through 18 layers whose
      train-mode BatchNorm gradients subtract batch means from the incoming gradient. 1e-4
      leaves a margin of about 10 for other CPUs' summation orders and is far below what a
      real mistake gives (a wrong stride or padding, a kernel not transposed, inference-mode
      statistics: differences of order one).
  """
  torch_model = torch_reference('resnet18', 5)
  path = tmp_path / 'resnet18.pth'
  torch.save(torch_model.state_dict(), path)
  x = images(seed=6)
  weights = np.random.default_rng(7).normal(size=(2, 1000)).astype(np.float32)

  # torch: one train-mode forward (which updates the running statistics) and backward, with each
  # BatchNorm's input and output recorded.
  recorded = {}

  def record(name):
    def hook(module, inputs, output):
      del module
      # ReLU(inplace=True) overwrites the output after the hook: copy it.
      recorded[name] = (inputs[0].detach().clone(), output.detach().clone())
    return hook

  for name, module in torch_model.named_modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      module.register_forward_hook(record(name))
  torch_model.train()
  logits = torch_model(nchw(x))
  (logits * torch.from_numpy(weights)).sum().backward()
  torch_grads = variables_from_state_dict(
      {name: p.grad.numpy() for name, p in torch_model.named_parameters()})['params']
  torch_stats = variables_from_state_dict(
      {k: v.numpy() for k, v in torch_model.state_dict().items() if 'running' in k})
  expected_var = variables_from_state_dict({
      f'{name}.running_var': (torch_model.get_submodule(name).running_var
                              - MOMENTUM * (inputs.var(dim=(0, 2, 3), unbiased=True)
                                            - inputs.var(dim=(0, 2, 3), unbiased=False))).numpy()
      for name, (inputs, _) in recorded.items()})['batch_stats']

  # cnnjax: the same, with jax.grad and mutable batch_stats.
  model = resnet.resnet18()
  variables = ported(model, path, 'resnet18')

  def loss(params):
    logits, updates = model.apply(
        {'params': params, 'batch_stats': variables['batch_stats']}, jnp.asarray(x), train=True,
        mutable=['batch_stats', 'intermediates'],
        capture_intermediates=lambda module, _: isinstance(module, nn.BatchNorm))
    return jnp.sum(logits * weights), updates

  grads, updates = jax.jit(jax.grad(loss, has_aux=True))(variables['params'])
  batch_stats = updates['batch_stats']

  # (a) BatchNorm outputs in train mode.
  captured = updates['intermediates']
  assert len(recorded) == 20
  for name, (_, output) in recorded.items():
    ours = captured
    for part in name.split('.'):
      ours = ours[part]
    ours = ours['__call__'][0]
    assert relative_difference(ours, output.numpy().transpose(0, 2, 3, 1)) < TOLERANCE, name

  # (b) The moving averages.
  ours, theirs = flat(batch_stats), flat(torch_stats['batch_stats'])
  expected_var = flat(expected_var)
  assert set(ours) == set(theirs) and len(ours) == 40
  for key, value in ours.items():
    expected = theirs[key] if key.endswith('/mean') else expected_var[key]
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6, err_msg=key)
  # The difference is there to see: layer4's n is 2 * 2 * 2 = 8.
  assert relative_difference(batch_stats['layer4']['1']['bn2']['var'],
                             torch_stats['batch_stats']['layer4']['1']['bn2']['var']) > 1e-3

  # (c) The gradients.
  assert (jax.tree.structure(grads) == jax.tree.structure(torch_grads))
  differences = {key: relative_difference(value, flat(torch_grads)[key])
                 for key, value in flat(grads).items()}
  assert max(differences.values()) < 1e-4, sorted(differences.items(), key=lambda kv: -kv[1])[:4]


# ---------------------------------------------------------------------------------------------
# Files of the wrong architecture


def test_identify_reads_the_architecture_from_the_keys():
  for name in ('resnet18', 'resnet34', 'resnet50'):
    state = {k: v.numpy() for k, v in getattr(torch_resnet, name)().state_dict().items()}
    assert identify(files.WeightFile('x.pth', files.TORCH, state)) == name
  state = {k: v.numpy() for k, v in torch_resnet.resnet50().state_dict().items()}
  for conv2, found in (((128, 4, 3, 3), 'resnext50_32x4d'), ((128, 128, 3, 3), 'wide_resnet50_2')):
    other = {**state, 'layer1.0.conv2.weight': np.zeros(conv2, np.float32)}
    assert identify(files.WeightFile('x.pth', files.TORCH, other)) == found
  keras = files.WeightFile('x.h5', files.KERAS_LEGACY_H5, {k: [v] for k, v in state.items()})
  assert identify(keras) is None
  vgg = files.WeightFile('x.pth', files.TORCH, {'features.0.weight': np.zeros((64, 3, 3, 3))})
  assert identify(vgg) is None


def test_resnet50_file_into_resnet18_names_resnet50(torch_files):
  with pytest.raises(DataError, match=r'resnet50 weights .*not resnet18'):
    load_weights(torch_files['resnet50']['paths']['zip'], 'resnet18')


def test_vgg16_file_into_resnet18(tmp_path):
  path = tmp_path / 'vgg16.pth'
  torch.save({f'features.{i}.{kind}': torch.zeros(2) for i in (0, 28)
              for kind in ('weight', 'bias')}, path)
  with pytest.raises(DataError, match='looks like vgg16'):
    load_weights(path, 'resnet18')


def test_init_from_a_torchvision_file_under_a_new_binary_head(torch_files):
  """The transfer configs' path: model.init_from takes the backbone (BatchNorm statistics with
  it) from a torchvision .pth and leaves the new one-unit fc freshly initialized."""
  from configs import resnet18_transfer  # pylint: disable=import-outside-toplevel
  from cnnjax.transfer.pretrained import init_from_pretrained  # pylint: disable=import-outside-toplevel
  path = str(torch_files['resnet18']['paths']['zip'])
  model = resnet.resnet18(num_outputs=1)
  # Stand-in fresh variables of the model's shapes (model.init compiles its initializers one by
  # one: seconds); init_from must keep the fc's and replace all the others, whatever they are.
  fresh = random_variables(model, images().shape)
  messages = []
  merged = init_from_pretrained(fresh, path, resnet18_transfer.BACKBONE, 'resnet18',
                                log=messages.append)
  loaded = load_weights(path, 'resnet18')
  np.testing.assert_array_equal(merged['params']['layer4']['1']['conv2']['kernel'],
                                loaded['params']['layer4']['1']['conv2']['kernel'])
  np.testing.assert_array_equal(merged['batch_stats']['layer3']['0']['downsample']['1']['var'],
                                loaded['batch_stats']['layer3']['0']['downsample']['1']['var'])
  np.testing.assert_array_equal(merged['params']['fc']['kernel'], fresh['params']['fc']['kernel'])
  assert 'taken (60 parameters, 40 BatchNorm statistics)' in messages[0]
  assert 'new (freshly initialized): fc' in messages[0]
  # The torch reference's features, through the pretrained backbone of the binary model.
  features = model.apply(merged, images(), features_only=True)
  assert relative_difference(features, torch_files['resnet18']['features']) < 1e-4
