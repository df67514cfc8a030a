"""The framework side of `speed_suite.py`: one workload in one framework, in its own process.

`speed_suite.py` starts `python benchmarks/speed_workers.py WORKLOAD FRAMEWORK [--steps N]` once
per row, so each framework is imported alone and its peak memory (maxrss) is its own. The worker
builds the model, compiles and runs one warm-up epoch, then answers commands on stdin, one per
line, with one JSON line each on its original stdout (anything the frameworks print goes to
stderr):

- `run`: times one epoch of `steps` batches and answers `{"seconds": ...}`;
- `evaluate` (workloads on real data): answers `{"test_accuracy": ...}` on the held-out test set;
- `quit`: answers the peak memory and exits.

Every framework trains the same architecture with the same optimizer (RMSprop, rho 0.9, epsilon
1e-7 outside the square root, learning rate 1e-3) on the same random batches held in host memory,
fed one batch at a time as its users feed them: cnnjax by its own jitted train step
(`cnnjax.training.parallel.create_parallel('single', ...)`), Keras 3 (JAX backend) by `model.fit` on the
arrays without shuffling, so that every framework sees the same batches in the same order (the
epoch timed from inside by a callback, so `fit`'s set-up is not counted), PyTorch by
the usual eager loop (its loss and accuracy summed on the device and read once per epoch, as
cnnjax's metric sums are; until 2026-11-30 it read the loss every step, which on the CPU costs
nothing and on a GPU would make the host wait for every step). Prediction workloads time Keras'
`model.predict`, a `jax.jit` of the cnnjax model and PyTorch under `torch.inference_mode()`.

Frameworks (row names): 'cnnjax', 'keras', 'torch', 'torch_compile' (`torch.compile`), and cnnjax
variants used to choose its defaults, options after commas: 'cnnjax,bf16' (bfloat16 compute,
float32 parameters), 'cnnjax,conv=lax' / 'cnnjax,conv=im2col' (the formulation of every Conv2D),
'cnnjax,model=NAME' (the zoo workloads: another registered model, e.g. resnet50_keras). PyTorch
options: 'device=cuda', 'bf16' (autocast), 'channels_last', 'cudnn_benchmark', 'threads=N'
(`torch_worker`).
Every row reports the architecture it computed (`ARCHITECTURES`), its compute dtype and device;
at 'quit', its peak accelerator memory beside maxrss.
cnnjax rows run XLA:CPU without its YNNPACK fusions, as `launch.py` does (`cnnjax.xla_cpu`), and
'cnnjax,ynn=on' with XLA's default; Keras rows run XLA's default, and 'keras,ynn=off' without.
'hugepages=on|off' (any framework) is the process's malloc setting, which glibc reads at start-up:
`speed_suite.py` starts the worker with it (`row_environment`).
`python benchmarks/speed_workers.py peak jax|torch` measures the matmul peak instead.
"""

import argparse
import json
import os
import resource
import sys
import time
import traceback

import numpy as np

# (input shape, batch, outputs, kind, default steps per epoch). outputs 1: sigmoid + binary CE.
WORKLOADS = {
    'small_convnet': ((28, 28, 1), 64, 10, 'train', 100),
    # The same model on the real Fashion-MNIST training set (pixels / 255, the files' order, the
    # last partial batch dropped: 937 batches of 64), scored on its 10,000 test images.
    'small_convnet_fashion_mnist': ((28, 28, 1), 64, 10, 'train', 937),
    'cats_vs_dogs_150': ((150, 150, 3), 32, 1, 'train', 8),
    'vgg16_frozen_150': ((150, 150, 3), 20, 1, 'train', 3),
    'vgg16_predict_224': ((224, 224, 3), 8, 1000, 'predict', 3),
    # The zoo's ImageNet models, 1000 classes, BatchNorm in inference mode when predicting.
    'resnet50_predict_224': ((224, 224, 3), 8, 1000, 'predict', 6),
    'resnet18_train_224': ((224, 224, 3), 16, 1000, 'train', 4),
    'inceptionv3_predict_299': ((299, 299, 3), 8, 1000, 'predict', 5),
}
# The cnnjax model (`cnnjax.models.MODELS` name) each zoo workload runs by default; a
# 'cnnjax,model=NAME' row runs another (resnet50_keras, Keras' ResNet50 v1, beside Keras' row).
CNNJAX_MODELS = {
    'small_convnet': 'small_convnet',
    'small_convnet_fashion_mnist': 'small_convnet',
    'cats_vs_dogs_150': 'cats_vs_dogs_150',
    'resnet50_predict_224': 'resnet50',
    'resnet18_train_224': 'resnet18',
    'inceptionv3_predict_299': 'inception_v3',
}
# The architecture each row computes, where the frameworks' models differ (the ResNet50s) or
# where one is not what its name suggests: the suite compares FLOPs and speed only between rows
# of the same architecture. Keras' ResNet50 is v1 (a stage's stride on the first 1x1
# convolution, convolutions with biases); torchvision's is v1.5 (the stride on the 3x3
# convolution, which then runs at the higher resolution: more FLOPs).
ARCHITECTURES = {
    'resnet50': 'ResNet50 v1.5 (torchvision)',
    'resnet50_keras': 'ResNet50 v1 (Keras)',
    'resnet18': 'ResNet18 (torchvision)',
    'inception_v3': 'InceptionV3 (Keras)',
}
RIVAL_MODELS = {  # (Keras, PyTorch) models of each zoo workload, as ARCHITECTURES keys.
    'resnet50_predict_224': ('resnet50_keras', 'resnet50'),
    'resnet18_train_224': ('resnet18', 'resnet18'),
    'inceptionv3_predict_299': ('inception_v3', 'inception_v3'),
}
LEARNING_RATE = 1e-3


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
  """Fashion-MNIST's 'train' or 'test' split: float32 images in [0, 1], int32 labels."""
  from cnnjax.data.idx import FASHION_MNIST_DIR, load_idx_split  # pylint: disable=import-outside-toplevel
  images, labels = load_idx_split(FASHION_MNIST_DIR, split)
  return images.astype(np.float32) / 255.0, labels.astype(np.int32)


def real_data(workload: str) -> bool:
  return workload.endswith('_fashion_mnist')


def random_data(workload: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
  """The same images (uniform [0, 1)) and labels for every framework (real data for a real-data
  workload: its first `steps` batches)."""
  shape, batch, outputs, _, _ = WORKLOADS[workload]
  if real_data(workload):
    images, labels = fashion_mnist('train')
    return images[:batch * steps], labels[:batch * steps]
  rng = np.random.default_rng(0)
  n = batch * steps
  images = rng.random((n, *shape), dtype=np.float32)
  labels = rng.integers(0, max(outputs, 2), n).astype(np.int32)
  return images, labels


def conv_stack(workload: str) -> tuple[tuple[int, ...], bool, tuple[int, ...]]:
  """(conv features, pool after the last conv, hidden dense units) of the two plain convnets."""
  if workload.startswith('small_convnet'):
    return (32, 64, 64), False, (64,)
  return (32, 64, 128, 128), True, (512,)


VGG_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))

# -- cnnjax ---------------------------------------------------------------------------------------


def architecture(workload: str, model: str | None = None) -> str:
  """What a row computes: the model's architecture for the zoo workloads, else the workload."""
  return ARCHITECTURES.get(model, workload) if workload in RIVAL_MODELS else workload


def device_memory_peak(framework: str) -> dict:
  """Peak accelerator memory of this process (nothing on the CPU)."""
  if framework == 'jax':
    import jax  # pylint: disable=import-outside-toplevel
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != 'cpu' else None
    if stats and 'peak_bytes_in_use' in stats:
      return {'device_peak_mib': stats['peak_bytes_in_use'] / 2**20}
    return {}
  import torch  # pylint: disable=import-outside-toplevel
  if torch.cuda.is_available() and torch.cuda.is_initialized():
    return {'device_peak_mib': torch.cuda.max_memory_allocated() / 2**20}
  return {}


def cnnjax_worker(workload: str, steps: int, variant: str):
  """(epoch function, info) for cnnjax: its real jitted train step, or a jitted prediction."""
  import functools  # pylint: disable=import-outside-toplevel
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  from cnnjax.training import steps as steps_lib  # pylint: disable=import-outside-toplevel
  from cnnjax.config import base_config  # pylint: disable=import-outside-toplevel
  from cnnjax.training.losses import get_objective  # pylint: disable=import-outside-toplevel
  from cnnjax.models import MODELS, create_model, layers  # pylint: disable=import-outside-toplevel
  from cnnjax.models.vgg16 import VGG16  # pylint: disable=import-outside-toplevel
  from cnnjax.training.optimizers import create_optimizer  # pylint: disable=import-outside-toplevel
  from cnnjax.training.parallel import create_parallel  # pylint: disable=import-outside-toplevel
  from cnnjax.training.train_state import create_train_state  # pylint: disable=import-outside-toplevel

  dtype, conv, model_name = 'float32', None, CNNJAX_MODELS.get(workload)
  for option in variant.split(',')[1:]:
    key, _, value = option.partition('=')
    if key in ('threads', 'ynn', 'hugepages', 'rules'):
      # Set in XLA_FLAGS before JAX started (`main`), or in the process environment (huge pages;
      # 'rules': CNNJAX_TUNING, `speed_suite.row_environment`).
      continue
    if key == 'bf16':
      dtype = 'bfloat16'
    elif key == 'conv':
      # Every Conv2D that does not name its formulation uses the module default (VGG16), and the
      # convnets are told explicitly below.
      layers.CONV_IMPLEMENTATION = conv = value
    elif key == 'model' and workload in RIVAL_MODELS:
      model_name = value
    else:
      raise ValueError(f'unknown cnnjax variant option {option!r} for {workload}')
  jdtype = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[dtype]
  if model_name is not None and model_name not in MODELS:
    raise ValueError(f'cnnjax has no model {model_name!r} (cnnjax.models.MODELS has '
                     f'{sorted(MODELS)}): workload {workload} needs it')

  def zoo_model():
    fields = {'name': model_name, 'dtype': dtype}
    if workload in RIVAL_MODELS:
      fields['num_outputs'] = WORKLOADS[workload][2]
    model = create_model(ml_collections.ConfigDict(fields))
    return model.clone(conv_implementation=conv) if conv else model

  shape, batch, outputs, kind, _ = WORKLOADS[workload]
  images, labels = random_data(workload, steps)
  host_batches = [{'image': images[i * batch:(i + 1) * batch],
                   'label': labels[i * batch:(i + 1) * batch],
                   'mask': np.ones(batch, np.float32)} for i in range(steps)]
  train_config = base_config().train
  train_config.learning_rate = LEARNING_RATE
  objective = get_objective('binary_crossentropy' if outputs == 1 else
                            'sparse_categorical_crossentropy')
  device = jax.devices()[0]
  info = {'architecture': architecture(workload, model_name), 'dtype': dtype,
          'device': device.device_kind}

  def analyse(jitted, *args):
    compiled = jitted.lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    memory = compiled.memory_analysis()
    info['flops_per_step'] = float(cost['flops'])
    info['xla_temp_bytes'] = int(getattr(memory, 'temp_size_in_bytes', 0) or 0)

  if kind == 'train' and workload != 'vgg16_frozen_150':
    # The convnets, and the zoo's models (BatchNorm statistics updated in the step).
    model = zoo_model()
    parallel = create_parallel('single', objective)
    state = parallel.place_state(create_train_state(
        model, create_optimizer(train_config, steps), shape, seed=0))
    first = parallel.place_batch(host_batches[0])
    analyse(jax.jit(functools.partial(steps_lib.train_step, objective=objective)), state, first)
    train_step = parallel.train_step

  elif workload == 'vgg16_frozen_150':
    base = VGG16(include_top=False, dtype=jdtype)

    class Head(nn.Module):
      """Flatten - Dense256 ReLU - Dropout 0.5 - Dense1, the new classifier on the frozen base."""

      @nn.compact
      def __call__(self, x, train=False):
        x = layers.Flatten(name='flatten')(x)
        x = layers.Dense(256, activation='relu', name='dense1')(x)
        x = layers.Dropout(0.5, deterministic=not train, name='dropout')(x)
        return layers.Dense(1, name='predictions')(x)

    head = Head()
    base_params = jax.device_put(
        jax.jit(base.init)(jax.random.key(1), jnp.zeros((1, *shape)))['params'], device)
    feature_shape = (4, 4, 512)
    state = jax.device_put(create_train_state(
        head, create_optimizer(train_config, steps), feature_shape, seed=0), device)

    def frozen_step(state, base_params, batch):
      """`cnnjax.training.steps.train_step` with the base's output a constant: only the head trains."""
      rngs = {'dropout': state.step_key(steps_lib.DROPOUT)}
      features = base.apply({'params': base_params}, batch['image']).astype(jnp.float32)

      def loss_sum(params):
        logits = state.apply_fn({'params': params}, features, train=True, rngs=rngs)
        loss = jnp.sum(objective.loss(logits, batch['label']) * batch['mask'])
        return loss, logits

      (loss, logits), grads = jax.value_and_grad(loss_sum, has_aux=True)(state.params)
      count = jnp.maximum(jnp.sum(batch['mask']), 1.0)
      grads = jax.tree.map(lambda g: g / count, grads)
      sums = {'loss': loss, 'count': count,
              'correct': jnp.sum(objective.correct(logits, batch['label']) * batch['mask'])}
      return state.apply_gradients(grads=grads), sums

    jitted = jax.jit(frozen_step, donate_argnums=0)
    first = jax.device_put(host_batches[0], device)
    analyse(jitted, state, base_params, first)

    def train_step(state, batch):
      return jitted(state, base_params, batch)

  else:  # Prediction: VGG16 with its top, or a zoo model with BatchNorm in inference mode.
    model = VGG16(include_top=True, dtype=jdtype) if workload == 'vgg16_predict_224' else (
        zoo_model())
    variables = jax.device_put(
        jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, *shape))), device)
    predict = jax.jit(lambda v, x: jax.nn.softmax(model.apply(v, x, train=False)))
    analyse(predict, variables, jax.device_put(images[:batch], device))

    def epoch():
      jax.block_until_ready([predict(variables, jax.device_put(b['image'], device))
                             for b in host_batches])
    return epoch, info

  box = {'state': state}

  def epoch():
    total = None
    state_ = box['state']
    for b in host_batches:
      state_, sums = train_step(state_, jax.device_put(b, device))
      total = steps_lib.add_metrics(total, sums)
    box['state'] = state_
    steps_lib.summarize(total)

  predict = jax.jit(lambda variables, x: jnp.argmax(box['state'].apply_fn(variables, x), -1))
  info['evaluate'] = lambda x: np.asarray(predict(box['state'].variables(), x))
  return epoch, info


# -- Keras 3 on JAX -------------------------------------------------------------------------------


def keras_worker(workload: str, steps: int, variant: str):
  """(epoch function, info) for Keras 3 on the JAX backend: `fit` / `predict` on arrays."""
  del variant  # Its options: threads and ynn set in XLA_FLAGS (`main`), hugepages by the suite.
  os.environ['KERAS_BACKEND'] = 'jax'
  import keras  # pylint: disable=import-outside-toplevel

  shape, batch, outputs, kind, _ = WORKLOADS[workload]
  images, labels = random_data(workload, steps)
  keras.utils.set_random_seed(0)
  L = keras.layers
  if workload in ('small_convnet', 'small_convnet_fashion_mnist', 'cats_vs_dogs_150'):
    features, pool_last, hidden = conv_stack(workload)
    stack = [keras.Input(shape)]
    for i, f in enumerate(features):
      stack.append(L.Conv2D(f, 3, activation='relu'))
      if i < len(features) - 1 or pool_last:
        stack.append(L.MaxPooling2D(2))
    stack.append(L.Flatten())
    stack += [L.Dense(u, activation='relu') for u in hidden]
    stack.append(L.Dense(10, activation='softmax') if outputs == 10 else
                 L.Dense(1, activation='sigmoid'))
    model = keras.Sequential(stack)
  elif workload == 'vgg16_frozen_150':
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=shape)
    base.trainable = False
    model = keras.Sequential([keras.Input(shape), base, L.Flatten(),
                              L.Dense(256, activation='relu'), L.Dropout(0.5),
                              L.Dense(1, activation='sigmoid')])
  elif workload == 'resnet50_predict_224':
    model = keras.applications.ResNet50(weights=None, include_top=True, input_shape=shape)
  elif workload == 'inceptionv3_predict_299':
    model = keras.applications.InceptionV3(weights=None, include_top=True, input_shape=shape)
  elif workload == 'resnet18_train_224':
    model = keras_resnet18(keras, shape, outputs)
  else:
    model = keras.applications.VGG16(weights=None, include_top=True, input_shape=shape)
  info = {'keras': keras.__version__,
          'architecture': architecture(workload, RIVAL_MODELS.get(workload, (None,))[0])}

  if kind == 'predict':
    def epoch():
      model.predict(images, batch_size=batch, verbose=0)
    return epoch, info

  loss = 'sparse_categorical_crossentropy' if outputs > 1 else 'binary_crossentropy'
  model.compile(optimizer=keras.optimizers.RMSprop(LEARNING_RATE, rho=0.9, epsilon=1e-7),
                loss=loss, metrics=['accuracy'])
  y = labels if outputs > 1 else labels.astype(np.float32)

  class EpochTimer(keras.callbacks.Callback):
    seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
      self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      EpochTimer.seconds = time.perf_counter() - self.start

  timer = EpochTimer()

  def epoch():
    # No shuffling: every framework sees the same batches in the same order.
    model.fit(images, y, batch_size=batch, epochs=1, verbose=0, callbacks=[timer], shuffle=False)
    return EpochTimer.seconds

  def evaluate(x):
    return np.argmax(model.predict(x, batch_size=1000, verbose=0), -1)
  return epoch, {**info, 'evaluate': evaluate}


def keras_resnet18(keras, shape: tuple[int, ...], outputs: int, activation='softmax'):
  """ResNet18 in torchvision's layout from Keras layers (Keras' applications have no ResNet18):
  bias-free convolutions, BatchNormalization with torch's epsilon 1e-5 and momentum (0.9 in
  Keras' convention), symmetric zero padding as torch pads (explicit ZeroPadding2D before every
  strided convolution and the max pooling: Keras' 'same' would pad (0, 1) on an even input),
  a 1x1 strided projection where a block changes the stride or the width, global average, Dense.
  11,689,512 trainable parameters, as torchvision's resnet18."""
  L = keras.layers

  def conv(x, features, size, strides=1):
    if strides > 1 and size > 1:
      x = L.ZeroPadding2D(size // 2)(x)
    return L.Conv2D(features, size, strides, padding='same' if strides == 1 else 'valid',
                    use_bias=False)(x)

  def bn(x):
    return L.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)

  inputs = keras.Input(shape)
  x = L.ReLU()(bn(conv(inputs, 64, 7, 2)))
  x = L.MaxPooling2D(3, 2)(L.ZeroPadding2D(1)(x))
  for stage, features in enumerate((64, 128, 256, 512)):
    for block in range(2):
      strides = 2 if stage > 0 and block == 0 else 1
      y = L.ReLU()(bn(conv(x, features, 3, strides)))
      y = bn(conv(y, features, 3))
      shortcut = x
      if strides != 1 or x.shape[-1] != features:
        shortcut = bn(conv(x, features, 1, strides))
      x = L.ReLU()(L.Add()([y, shortcut]))
  x = L.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, L.Dense(outputs, activation=activation)(x))


# -- PyTorch --------------------------------------------------------------------------------------


def torch_worker(workload: str, steps: int, variant: str):
  """(epoch function, info) for PyTorch: the eager loop, or with `torch.compile`.

  Options after commas: 'threads=N' (intra-op threads), 'device=cuda' (the GPU; batches stay in
  host memory and are copied per step, as cnnjax's are), 'bf16' (`torch.autocast` to bfloat16,
  parameters float32: cnnjax's 'bf16'), 'channels_last' (NHWC memory format, the fast one for
  cuDNN's bfloat16 convolutions), 'cudnn_benchmark' (`torch.backends.cudnn.benchmark`: cuDNN
  picks its fastest algorithm per shape during the warm-up, as XLA autotunes its GPU
  convolutions), 'hugepages=on' (the suite's process setting).
  """
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel
  import torch_models  # pylint: disable=import-outside-toplevel

  torch.manual_seed(0)
  shape, batch, outputs, kind, _ = WORKLOADS[workload]
  images, labels = random_data(workload, steps)
  h, w, c = shape

  def vgg_features():
    stack, cin = [], 3
    for convs, f in VGG_BLOCKS:
      for _ in range(convs):
        stack += [nn.Conv2d(cin, f, 3, padding=1), nn.ReLU()]
        cin = f
      stack.append(nn.MaxPool2d(2))
    return nn.Sequential(*stack)

  model_name = None
  if workload in ('small_convnet', 'small_convnet_fashion_mnist', 'cats_vs_dogs_150'):
    features, pool_last, hidden = conv_stack(workload)
    stack, cin, size = [], c, h
    for i, f in enumerate(features):
      stack += [nn.Conv2d(cin, f, 3), nn.ReLU()]
      cin, size = f, size - 2
      if i < len(features) - 1 or pool_last:
        stack.append(nn.MaxPool2d(2))
        size //= 2
    stack.append(nn.Flatten())
    width = cin * size * size
    for u in hidden:
      stack += [nn.Linear(width, u), nn.ReLU()]
      width = u
    stack.append(nn.Linear(width, outputs))
    model = nn.Sequential(*stack)
    trainable = model
  elif workload == 'vgg16_frozen_150':
    base = vgg_features().requires_grad_(False)
    head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 4 * 4, 256), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(256, 1))
    model = nn.Sequential(base, head)
    trainable = head
  elif workload in RIVAL_MODELS:
    model_name = RIVAL_MODELS[workload][1]
    model = trainable = torch_models.MODELS[model_name](outputs)
  else:
    model = nn.Sequential(vgg_features(), nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(),
                          nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
  device, autocast, memory_format = 'cpu', None, torch.contiguous_format
  for option in variant.split(',')[1:]:
    key, _, value = option.partition('=')
    if key == 'hugepages':
      continue  # Set in the process environment by `speed_suite.py`.
    if key == 'threads':
      torch.set_num_threads(int(value))
    elif key == 'device':
      device = value
    elif key == 'bf16':
      autocast = torch.bfloat16
    elif key == 'channels_last':
      memory_format = torch.channels_last
    elif key == 'cudnn_benchmark':
      torch.backends.cudnn.benchmark = True  # cuDNN times its algorithms, as XLA autotunes.
    else:
      raise ValueError(f'unknown torch variant option {option!r}')
  if device != 'cpu' and not (device.startswith('cuda') and torch.cuda.is_available()):
    raise ValueError(f'torch device {device!r} is not available here')
  model = model.to(device, memory_format=memory_format)
  info = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'device': device,
          'dtype': 'bfloat16' if autocast else 'float32',
          'architecture': architecture(workload, model_name)}
  if device != 'cpu':
    info['device'] = torch.cuda.get_device_name(device)
  if variant.split(',')[0] == 'torch_compile':
    model = torch.compile(model)

  def forward(x):
    if autocast is None:
      return model(x)
    with torch.autocast(device.split(':')[0], dtype=autocast):
      return model(x).float()

  def synchronize():
    if device != 'cpu':
      torch.cuda.synchronize(device)

  # NCHW batches in host memory, made once (the conversion a torch user's DataLoader would do is
  # not timed); each step copies its batch to the device, as cnnjax's `device_put` does.
  x_batches = [torch.from_numpy(np.ascontiguousarray(
      images[i * batch:(i + 1) * batch].transpose(0, 3, 1, 2))) for i in range(steps)]

  def to_device(x):
    return x.to(device, memory_format=memory_format) if (
        device != 'cpu' or memory_format != torch.contiguous_format) else x

  if kind == 'predict':
    model.eval()

    def epoch():
      with torch.inference_mode():
        for x in x_batches:
          torch.softmax(forward(to_device(x)), dim=-1)
      synchronize()
    return epoch, info

  y_batches = [torch.from_numpy(labels[i * batch:(i + 1) * batch]).long() for i in range(steps)]
  if outputs == 1:
    y_batches = [y.float() for y in y_batches]
    loss_fn = nn.BCEWithLogitsLoss()
  else:
    loss_fn = nn.CrossEntropyLoss()
  optimizer = torch.optim.RMSprop([p for p in trainable.parameters() if p.requires_grad],
                                  lr=LEARNING_RATE, alpha=0.9, eps=1e-7)
  model.train()

  def epoch():
    # The loss and accuracy summed on the device and read once per epoch, as cnnjax's metric
    # sums are (a `.item()` per step would make the host wait for the device every step).
    total_loss = correct = 0
    for x, y in zip(x_batches, y_batches):
      x, y = to_device(x), y.to(device)
      optimizer.zero_grad()
      logits = forward(x)
      loss = loss_fn(logits[:, 0], y) if outputs == 1 else loss_fn(logits, y)
      loss.backward()
      optimizer.step()
      with torch.no_grad():
        predicted = (logits[:, 0] > 0).float() if outputs == 1 else logits.argmax(-1)
        total_loss = total_loss + loss.detach()
        correct = correct + (predicted == y).sum()
    _ = float(total_loss), int(correct)  # The host reads the sums: the epoch's work is done.

  def evaluate(x):
    model.eval()
    with torch.inference_mode():
      predicted = forward(to_device(torch.from_numpy(np.ascontiguousarray(
          x.transpose(0, 3, 1, 2)))))
    model.train()
    return predicted.argmax(-1).cpu().numpy()
  info['evaluate'] = evaluate
  return epoch, info


def matmul_peak(framework: str, size: int = 4096, repeats: int = 5) -> dict:
  """Best GFLOP/s of a (size x size) @ (size x size) matmul, float32 and bfloat16.

  `framework` 'jax' (its default device: the GPU where there is one) or 'torch' (the CPU), with
  ',device=cuda' for torch's GPU. On a GPU each timing covers 10 products (one would time the
  launch), and float32 runs at the framework's default precision (TF32 on NVIDIA's tensor cores
  in JAX; torch's default keeps IEEE float32 unless told otherwise), as the models do.
  """
  flops = 2.0 * size ** 3
  result = {'size': size}
  family, *options = framework.split(',')
  if family == 'jax':
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    per_timing = 1 if jax.default_backend() == 'cpu' else 10
    result['device'] = jax.devices()[0].device_kind
    for name, dtype in (('float32', jnp.float32), ('bfloat16', jnp.bfloat16)):
      a = jax.random.normal(jax.random.key(0), (size, size), dtype)
      b = jax.random.normal(jax.random.key(1), (size, size), dtype)
      dot = jax.jit(jnp.dot)
      dot(a, b).block_until_ready()
      best = float('inf')
      for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready([dot(a, b) for _ in range(per_timing)])
        best = min(best, (time.perf_counter() - start) / per_timing)
      result[name] = flops / best / 1e9
  else:
    import torch  # pylint: disable=import-outside-toplevel
    device = 'cuda' if 'device=cuda' in options else 'cpu'
    per_timing = 1 if device == 'cpu' else 10
    result['device'] = torch.cuda.get_device_name() if device == 'cuda' else 'cpu'
    for name, dtype in (('float32', torch.float32), ('bfloat16', torch.bfloat16)):
      a = torch.randn(size, size, dtype=dtype, device=device)
      b = torch.randn(size, size, dtype=dtype, device=device)
      a @ b
      best = float('inf')
      for _ in range(repeats):
        if device == 'cuda':
          torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(per_timing):
          a @ b
        if device == 'cuda':
          torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / per_timing)
      result[name] = flops / best / 1e9
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workload', choices=sorted(WORKLOADS) + ['peak'])
  parser.add_argument('framework')
  parser.add_argument('--steps', type=int, default=0)
  parser.add_argument('--peak-size', type=int, default=4096,
                      help="'peak': the matrices' size (8192 fills a GPU)")
  args = parser.parse_args()
  if args.workload == 'peak':
    print(json.dumps(matmul_peak(args.framework, args.peak_size)))
    return
  # The protocol goes to the original stdout; whatever the frameworks print goes to stderr.
  protocol = os.fdopen(os.dup(1), 'w', buffering=1)
  os.dup2(2, 1)
  steps = args.steps or WORKLOADS[args.workload][4]

  def answer(**message):
    protocol.write(json.dumps(message) + '\n')

  try:
    start = time.perf_counter()
    family = args.framework.split(',')[0]
    threads = [o.split('=')[1] for o in args.framework.split(',')[1:] if o.startswith('threads=')]
    options = args.framework.split(',')[1:]
    if family in ('cnnjax', 'keras') and (
        'ynn=off' in options or (family == 'cnnjax' and 'ynn=on' not in options)):
      # XLA:CPU without its YNNPACK fusions, as `launch.py` runs cnnjax: convolutions and dots go
      # to XLA's own (Eigen) kernels. Keras rows keep XLA's default unless asked.
      from cnnjax import xla_cpu  # pylint: disable=import-outside-toplevel
      xla_cpu.turn_off_ynn_fusions()
    if threads and family in ('cnnjax', 'keras'):
      # One intra-op thread: XLA:CPU runs each op on the calling thread.
      os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                                 ' --xla_cpu_multi_thread_eigen=false'
                                 f' intra_op_parallelism_threads={threads[0]}').strip()
    if family.startswith('cnnjax'):
      epoch, info = cnnjax_worker(args.workload, steps, args.framework)
    elif family == 'keras':
      epoch, info = keras_worker(args.workload, steps, args.framework)
    elif family in ('torch', 'torch_compile'):
      epoch, info = torch_worker(args.workload, steps, args.framework)
    else:
      raise ValueError(f'unknown framework {args.framework!r}')
    epoch()  # Compiles and warms up (on real data, this is the first epoch of training).
    info['setup_and_warmup_seconds'] = time.perf_counter() - start
    evaluate = info.pop('evaluate', None)
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    answer(error=f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}'
           [:300])
    return
  answer(ready=True, steps=steps, **info)
  for line in sys.stdin:
    command = line.strip()
    if command == 'run':
      start = time.perf_counter()
      inner = epoch()
      seconds = time.perf_counter() - start
      answer(seconds=inner if isinstance(inner, float) else seconds, outer_seconds=seconds)
    elif command == 'evaluate':
      if evaluate is None or not real_data(args.workload):
        answer(error=f'{args.framework} on {args.workload} cannot evaluate: no test set')
        continue
      images, labels = fashion_mnist('test')
      predicted = np.concatenate([evaluate(images[i:i + 1000])
                                  for i in range(0, len(images), 1000)])
      answer(test_accuracy=float(np.mean(predicted == labels)))
    elif command == 'quit':
      answer(maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             **device_memory_peak('torch' if family.startswith('torch') else 'jax'))
      return


if __name__ == '__main__':
  main()
