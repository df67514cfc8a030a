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
the usual eager loop. Prediction workloads time Keras' `model.predict`, a `jax.jit` of the cnnjax
model and PyTorch under `torch.inference_mode()`.

Frameworks (row names): 'cnnjax', 'keras', 'torch', 'torch_compile' (`torch.compile`), and cnnjax
variants used to choose its defaults, options after commas: 'cnnjax,bf16' (bfloat16 compute,
float32 parameters), 'cnnjax,conv=lax' / 'cnnjax,conv=im2col' (the formulation of every Conv2D).
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


def cnnjax_worker(workload: str, steps: int, variant: str):
  """(epoch function, info) for cnnjax: its real jitted train step, or a jitted prediction."""
  import functools  # pylint: disable=import-outside-toplevel
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from cnnjax.training import steps as steps_lib  # pylint: disable=import-outside-toplevel
  from cnnjax.config import base_config  # pylint: disable=import-outside-toplevel
  from cnnjax.training.losses import get_objective  # pylint: disable=import-outside-toplevel
  from cnnjax.models import create_model, layers  # pylint: disable=import-outside-toplevel
  from cnnjax.models.vgg16 import VGG16  # pylint: disable=import-outside-toplevel
  from cnnjax.training.optimizers import create_optimizer  # pylint: disable=import-outside-toplevel
  from cnnjax.training.parallel import create_parallel  # pylint: disable=import-outside-toplevel
  from cnnjax.training.train_state import create_train_state  # pylint: disable=import-outside-toplevel

  dtype, conv = 'float32', None
  for option in variant.split(',')[1:]:
    key, _, value = option.partition('=')
    if key in ('threads', 'ynn', 'hugepages'):
      continue  # Set in XLA_FLAGS before JAX started (`main`), or in the process environment.
    if key == 'bf16':
      dtype = 'bfloat16'
    elif key == 'conv':
      # Every Conv2D that does not name its formulation uses the module default (VGG16), and the
      # convnets are told explicitly below.
      layers.CONV_IMPLEMENTATION = conv = value
    else:
      raise ValueError(f'unknown cnnjax variant option {option!r}')
  jdtype = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[dtype]

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
  info = {}

  def analyse(jitted, *args):
    compiled = jitted.lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    memory = compiled.memory_analysis()
    info['flops_per_step'] = float(cost['flops'])
    info['xla_temp_bytes'] = int(getattr(memory, 'temp_size_in_bytes', 0) or 0)

  if workload in ('small_convnet', 'small_convnet_fashion_mnist', 'cats_vs_dogs_150'):
    model = create_model(ml_collections.ConfigDict({'name': workload.split('_fashion')[0],
                                                    'dtype': dtype}))
    if conv:
      model = model.clone(conv_implementation=conv)
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

  else:  # vgg16_predict_224
    model = VGG16(include_top=True, dtype=jdtype)
    params = jax.device_put(
        jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, *shape)))['params'], device)
    predict = jax.jit(lambda p, x: jax.nn.softmax(model.apply({'params': p}, x)))
    analyse(predict, params, jax.device_put(images[:batch], device))
    info['dtype'] = dtype

    def epoch():
      jax.block_until_ready([predict(params, jax.device_put(b['image'], device))
                             for b in host_batches])
    return epoch, info

  info['dtype'] = dtype
  box = {'state': state}

  def epoch():
    total = None
    state_ = box['state']
    for b in host_batches:
      state_, sums = train_step(state_, jax.device_put(b, device))
      total = steps_lib.add_metrics(total, sums)
    box['state'] = state_
    steps_lib.summarize(total)

  predict = jax.jit(lambda params, x: jnp.argmax(box['state'].apply_fn({'params': params}, x),
                                                 -1))
  info['evaluate'] = lambda x: np.asarray(predict(box['state'].params, x))
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
  else:
    model = keras.applications.VGG16(weights=None, include_top=True, input_shape=shape)

  if kind == 'predict':
    def epoch():
      model.predict(images, batch_size=batch, verbose=0)
    return epoch, {'keras': keras.__version__}

  loss = 'sparse_categorical_crossentropy' if outputs == 10 else 'binary_crossentropy'
  model.compile(optimizer=keras.optimizers.RMSprop(LEARNING_RATE, rho=0.9, epsilon=1e-7),
                loss=loss, metrics=['accuracy'])
  y = labels if outputs == 10 else labels.astype(np.float32)

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
  return epoch, {'keras': keras.__version__, 'evaluate': evaluate}


# -- PyTorch --------------------------------------------------------------------------------------


def torch_worker(workload: str, steps: int, variant: str):
  """(epoch function, info) for PyTorch on the CPU: the eager loop, or with `torch.compile`."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

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
    trainable = model.parameters()
  elif workload == 'vgg16_frozen_150':
    base = vgg_features().requires_grad_(False)
    head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 4 * 4, 256), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(256, 1))
    model = nn.Sequential(base, head)
    trainable = head.parameters()
  else:
    model = nn.Sequential(vgg_features(), nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(),
                          nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
  for option in variant.split(',')[1:]:
    key, _, value = option.partition('=')
    if key == 'hugepages':
      continue  # Set in the process environment by `speed_suite.py`.
    if key != 'threads':
      raise ValueError(f'unknown torch variant option {option!r}')
    torch.set_num_threads(int(value))
  info = {'torch': torch.__version__, 'threads': torch.get_num_threads()}
  if variant.split(',')[0] == 'torch_compile':
    model = torch.compile(model)

  # NCHW batches, made once (the conversion a torch user's DataLoader would do is not timed).
  x_batches = [torch.from_numpy(np.ascontiguousarray(
      images[i * batch:(i + 1) * batch].transpose(0, 3, 1, 2))) for i in range(steps)]
  if kind == 'predict':
    model.eval()

    def epoch():
      with torch.inference_mode():
        for x in x_batches:
          torch.softmax(model(x), dim=-1)
    return epoch, info

  y_batches = [torch.from_numpy(labels[i * batch:(i + 1) * batch]).long() for i in range(steps)]
  if outputs == 1:
    y_batches = [y.float() for y in y_batches]
    loss_fn = nn.BCEWithLogitsLoss()
  else:
    loss_fn = nn.CrossEntropyLoss()
  optimizer = torch.optim.RMSprop(trainable, lr=LEARNING_RATE, alpha=0.9, eps=1e-7)
  model.train()

  def epoch():
    total_loss, correct = 0.0, 0
    for x, y in zip(x_batches, y_batches):
      optimizer.zero_grad()
      logits = model(x)
      loss = loss_fn(logits[:, 0], y) if outputs == 1 else loss_fn(logits, y)
      loss.backward()
      optimizer.step()
      total_loss += loss.item()
      with torch.no_grad():
        predicted = (logits[:, 0] > 0).float() if outputs == 1 else logits.argmax(-1)
        correct += int((predicted == y).sum())

  def evaluate(x):
    model.eval()
    with torch.inference_mode():
      predicted = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    model.train()
    return predicted.argmax(-1).numpy()
  info['evaluate'] = evaluate
  return epoch, info


def matmul_peak(framework: str, size: int = 4096, repeats: int = 5) -> dict:
  """Best GFLOP/s of a (size x size) @ (size x size) matmul, float32 and bfloat16."""
  flops = 2.0 * size ** 3
  result = {}
  if framework == 'jax':
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    for name, dtype in (('float32', jnp.float32), ('bfloat16', jnp.bfloat16)):
      a = jax.random.normal(jax.random.key(0), (size, size), dtype)
      b = jax.random.normal(jax.random.key(1), (size, size), dtype)
      dot = jax.jit(jnp.dot)
      dot(a, b).block_until_ready()
      best = float('inf')
      for _ in range(repeats):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
      result[name] = flops / best / 1e9
  else:
    import torch  # pylint: disable=import-outside-toplevel
    for name, dtype in (('float32', torch.float32), ('bfloat16', torch.bfloat16)):
      a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
      a @ b
      best = float('inf')
      for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
      result[name] = flops / best / 1e9
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workload', choices=sorted(WORKLOADS) + ['peak'])
  parser.add_argument('framework')
  parser.add_argument('--steps', type=int, default=0)
  args = parser.parse_args()
  if args.workload == 'peak':
    print(json.dumps(matmul_peak(args.framework)))
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
      answer(maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
      return


if __name__ == '__main__':
  main()
