"""Where a convnet's train step spends its time, layer by layer (a benchmark, not a test).

For a registered model and batch: the whole jitted forward pass and forward + backward
(`jax.value_and_grad` of the mean logit), then every Conv2D on its own at its input shape: its
forward, its kernel gradient and its input gradient (each a jitted `jax.vjp` of the layer with its
bias and ReLU, so each gradient column includes the forward pass that the ReLU's mask needs), in
milliseconds, best of `--repeats` (this per-layer table only for the convnets: a sequence of
named 3x3 layers; a BatchNorm model such as `resnet18` gets the whole passes in evaluation mode
and the operation list below). This is the profile behind the speed notes in the README: on
XLA:CPU a convolution's two gradients cost several times its forward.

    python benchmarks/conv_profile.py [--model small_convnet --size 28 --channels 1 --batch 64]
    python benchmarks/conv_profile.py --model cats_vs_dogs_150 --size 150 --channels 3 --batch 32
    python benchmarks/conv_profile.py --implementations lax,im2col,taps --layers conv1,conv2
    python benchmarks/conv_profile.py --implementations auto,lax --torch

`--torch` adds each layer as PyTorch computes it on the CPU (`torch.nn.functional.conv2d` with
the same kernel, bias and ReLU, NCHW, its oneDNN kernels; autograd for the gradients), timed
after all the JAX rows: which of a step's convolutions XLA:CPU's kernels lose, and by how much.

Then, with `--ops N`, the N XLA operations of cnnjax's real train step (`cnnjax.training.steps.train_step`,
RMSprop, random batches) that take the most time per step, from a `jax.profiler` trace: each with
its output shape and the JAX operation (and layer) it was compiled from (XLA's own operations,
such as layout copies, have none), and the time by kind of operation. That is where the step's
time goes after XLA's fusion. With `--predict` the same for the evaluation-mode forward pass
(an inference workload such as the zoo's ResNet50 at 224).

    python benchmarks/conv_profile.py --model resnet50 --size 224 --channels 3 --batch 8 --predict --ops 20

The process runs as launch.py runs it (glibc malloc with huge pages, XLA:CPU without YNNPACK
fusions), unless GLIBC_TUNABLES or XLA_FLAGS set those themselves.
"""

import argparse
import collections
import functools
import glob
import gzip
import json
import os
import re
import tempfile
import time

from cnnjax import xla_cpu  # Imports no JAX.

if __name__ == '__main__':
  xla_cpu.run_as_launched()  # Before anything starts JAX.

# pylint: disable=wrong-import-position
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnnjax.training import steps
from cnnjax.config import base_config
from cnnjax.training.losses import get_objective
from cnnjax.models import create_model, layer_outputs, layers
from cnnjax.training.optimizers import create_optimizer
from cnnjax.training.train_state import create_train_state
from cnnjax.models.layer_outputs import layer_types
from machine import machine_description


def best_ms(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # Compiles.
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best * 1e3


def torch_conv_ms(x: np.ndarray, params: dict, expected: np.ndarray,
                  repeats: int) -> tuple[float, float, float]:
  """The same layer (3x3 VALID convolution, bias, ReLU) in PyTorch on the CPU (its oneDNN
  kernels, NCHW as torch.nn runs it): (forward, kernel gradient, input gradient) in ms, each
  gradient with its forward pass, as the JAX columns."""
  import torch  # pylint: disable=import-outside-toplevel
  x = torch.from_numpy(np.array(x.transpose(0, 3, 1, 2)))  # A writable copy.
  kernel = torch.from_numpy(np.ascontiguousarray(
      np.asarray(params['kernel']).transpose(3, 2, 0, 1)))
  bias = torch.from_numpy(np.array(params['bias']))

  def layer(x, kernel):
    return torch.relu(torch.nn.functional.conv2d(x, kernel, bias))

  def grad(wrt: int):
    inputs = [x.clone().requires_grad_(wrt == 0), kernel.clone().requires_grad_(wrt == 1)]
    out = layer(*inputs)
    return torch.autograd.grad(out, inputs[wrt], torch.ones_like(out))

  # `best_ms`'s first call warms up (oneDNN builds its kernels then); PyTorch's CPU calls return
  # when done, which `jax.block_until_ready` passes through.
  with torch.no_grad():
    out = layer(x, kernel).numpy().transpose(0, 2, 3, 1)
    if not np.allclose(out, expected, rtol=1e-4, atol=1e-4):
      raise AssertionError(f'PyTorch computes another layer: largest difference '
                           f'{np.abs(out - expected).max()} from the JAX layer\'s output')
    forward = best_ms(layer, x, kernel, repeats=repeats)
  return forward, best_ms(grad, 1, repeats=repeats), best_ms(grad, 0, repeats=repeats)


def in_ops_names(total: collections.Counter, ops: dict) -> list[str]:
  """The traced events that are XLA operations of the step (not runtime or Python events)."""
  return [name for name in total if name in ops]


def op_profile(model, images: jax.Array, outputs: int, top: int, repeats: int,
               predict: bool = False) -> None:
  """Prints the `top` XLA operations of the jitted train step (or, with `predict`, of the jitted
  evaluation-mode forward pass) by time per call."""
  if predict:
    variables = jax.jit(model.init)(jax.random.key(1), images)
    program = jax.jit(lambda variables, x: model.apply(variables, x))
    hlo = program.lower(variables, images).compile().as_text()
    call = lambda: program(variables, images)
  else:
    objective = get_objective('binary_crossentropy' if outputs == 1 else
                              'sparse_categorical_crossentropy')
    state = [create_train_state(model, create_optimizer(base_config().train, 10),
                                images.shape[1:], seed=0)]
    program = jax.jit(functools.partial(steps.train_step, objective=objective),
                      donate_argnums=0)
    n = images.shape[0]
    batch = {'image': images, 'label': jnp.arange(n) % max(outputs, 2),
             'mask': jnp.ones(n, jnp.float32)}
    hlo = program.lower(state[0], batch).compile().as_text()

    def call():
      state[0], sums = program(state[0], batch)
      return sums

  for _ in range(2):
    jax.block_until_ready(call())
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(repeats):
        out = call()
      jax.block_until_ready(out)
    trace = glob.glob(f'{trace_dir}/**/*.trace.json.gz', recursive=True)[0]
    with gzip.open(trace) as f:
      events = json.load(f)['traceEvents']
  total = collections.Counter()
  for event in events:
    if event.get('ph') == 'X':
      total[event['name']] += event['dur'] / 1e3 / repeats
  # An XLA operation's line in the compiled HLO: its output shape and the JAX op it came from.
  # Every instruction: XLA's own (layout copies and transposes) carry no op_name.
  ops = {m.group(1): (m.group(2), m.group(3) or '(XLA: no JAX operation)') for m in re.finditer(
      r'^\s+%(\S+) = (\S+) (?:.*?op_name="([^"]*)")?', hlo, re.M)}
  step_ms = total.get('ThunkExecutor::Execute (wait for completion)', float('nan'))
  in_ops = [total[name] for name in in_ops_names(total, ops)]
  print(f'\n{"prediction" if predict else "train step"}: {step_ms:.2f} ms per call in the trace, '
        f'{sum(in_ops):.2f} ms in its '
        f'{len(in_ops)} XLA operations (two threads can run operations side by side); the top '
        'ones:')
  # By kind (the operation's name without its number): where XLA's lowering, not one layer,
  # spends the time (e.g. the layout transposes in front of the kernel-gradient convolutions).
  kinds = collections.Counter()
  for name in in_ops_names(total, ops):
    kinds[re.sub(r'\.\d+$', '', name)] += total[name]
  print('by kind: ' + ', '.join(f'{kind} {ms:.1f} ms' for kind, ms in kinds.most_common(8)))
  print(f'{"ms/step":>8} {"share":>6}  {"operation":<28s} {"output":<30s} from')
  for name, ms in total.most_common():
    if name not in ops:
      continue  # Runtime and Python events.
    shape, origin = ops[name]
    print(f'{ms:8.3f} {100 * ms / step_ms:5.1f}%  {name[:28]:<28s} {shape[:30]:<30s} '
          f'{origin.replace("jit(train_step)/", "")[-70:]}')
    top -= 1
    if not top:
      break


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', default='small_convnet')
  parser.add_argument('--size', type=int, default=28)
  parser.add_argument('--channels', type=int, default=1)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--implementations', default='auto,lax',
                      help='Conv2D implementations to time each conv layer with')
  parser.add_argument('--layers', default='',
                      help='comma-separated conv layers to time (default: every one)')
  parser.add_argument('--predict', action='store_true',
                      help='profile the evaluation-mode forward pass instead of the train step')
  parser.add_argument('--torch', action='store_true',
                      help='add each conv layer timed in PyTorch (oneDNN) to the per-layer table')
  parser.add_argument('--ops', type=int, default=0,
                      help='then list this many XLA operations of the train step by time')
  args = parser.parse_args()
  print(machine_description())
  print(f'load average at the start: {os.getloadavg()}')
  model = create_model(ml_collections.ConfigDict({'name': args.model}))
  images = jax.random.uniform(jax.random.key(0), (args.batch, args.size, args.size, args.channels))
  variables = jax.jit(model.init)(jax.random.key(1), images)

  # Evaluation mode: a BatchNorm model (ResNet) normalizes with its moving statistics here.
  forward = jax.jit(lambda p, x: model.apply({**variables, 'params': p}, x))
  grad = jax.jit(jax.value_and_grad(lambda p, x: model.apply({**variables, 'params': p},
                                                              x).mean()))
  whole_forward = best_ms(forward, variables['params'], images, repeats=args.repeats)
  whole_step = best_ms(grad, variables['params'], images, repeats=args.repeats)
  print(f'{args.model}, batch {args.batch} of {images.shape[1:]}: forward {whole_forward:.2f} ms, '
        f'forward + backward {whole_step:.2f} ms ({whole_step / whole_forward:.1f}x)')

  outputs = layer_outputs(model, variables, images)
  types = layer_types(model, variables, images)
  names = list(outputs)
  if any(types[name] == 'Conv2D' and (name not in variables['params'] or variables['params'][
      name]['kernel'].shape[:2] != (3, 3) or 'bias' not in variables['params'][name])
         for name in names):
    # Nested layers (ResNet's blocks, whose inputs are not the previous output) or convolutions
    # other than the convnets' 3x3 VALID ones with bias and ReLU (bn_convnet's are 'SAME',
    # without bias, followed by pooling and BatchNorm).
    names = []
    print('layer by layer: only for the convnets (a sequence of named 3x3 layers); skipped')
  print(f'{"layer":<10s} {"conv":<7s} {"input":<16s} {"forward":>9s} {"d kernel":>9s} '
        f'{"d input":>9s}  (ms)')
  for (i, name), implementation in ((item, impl) for item in enumerate(names)
                                    for impl in args.implementations.split(',')):
    if types[name] != 'Conv2D' or (args.layers and name not in args.layers.split(',')):
      continue
    x = images if i == 0 else outputs[names[i - 1]]
    params = variables['params'][name]
    # Conv2D's other defaults (3x3, VALID, ReLU) are the models'.
    conv = layers.Conv2D(params['kernel'].shape[-1], implementation=implementation)
    apply = lambda p, x, conv=conv: conv.apply({'params': p}, x)  # pylint: disable=cell-var-from-loop
    out = apply(params, x)
    cotangent = jnp.ones_like(out)
    kernel_grad = jax.jit(lambda p, x, apply=apply: jax.vjp(lambda p: apply(p, x), p)[1](cotangent))
    input_grad = jax.jit(lambda p, x, apply=apply: jax.vjp(lambda x: apply(p, x), x)[1](cotangent))
    print(f'{name:<10s} {implementation:<7s} {str(tuple(x.shape[1:])):<16s} '
          f'{best_ms(jax.jit(apply), params, x, repeats=args.repeats):9.2f} '
          f'{best_ms(kernel_grad, params, x, repeats=args.repeats):9.2f} '
          f'{best_ms(input_grad, params, x, repeats=args.repeats):9.2f}')
  if args.torch and names:
    # After every JAX row: PyTorch's OpenMP threads spin on for a while after their work.
    for i, name in enumerate(names):
      if types[name] == 'Conv2D' and not (args.layers and name not in args.layers.split(',')):
        x = images if i == 0 else outputs[names[i - 1]]
        params = variables['params'][name]
        expected = layers.Conv2D(params['kernel'].shape[-1]).apply({'params': params}, x)
        times = torch_conv_ms(np.asarray(x), params, np.asarray(expected), args.repeats)
        print(f'{name:<10s} {"torch":<7s} {str(tuple(x.shape[1:])):<16s} '
              + ' '.join(f'{t:9.2f}' for t in times))

  if args.ops:
    outputs = jax.eval_shape(forward, variables['params'], images).shape[-1]
    op_profile(model, images, outputs, args.ops, args.repeats, args.predict)
  print(f'load average at the end: {os.getloadavg()}')


if __name__ == '__main__':
  main()
