"""Where a convnet's train step spends its time, layer by layer (a benchmark, not a test).

For a registered model and batch: the whole jitted forward pass and forward + backward
(`jax.value_and_grad` of the mean logit), then every Conv2D on its own at its input shape: its
forward, its kernel gradient and its input gradient (each a jitted `jax.vjp`), in milliseconds,
best of `--repeats`. This is the profile behind the speed notes in the README: on XLA:CPU a
convolution's two gradients cost several times its forward.

    python benchmarks/conv_profile.py [--model small_convnet --size 28 --channels 1 --batch 64]
    python benchmarks/conv_profile.py --model cats_vs_dogs_150 --size 150 --channels 3 --batch 32
"""

import argparse
import time

import jax
import jax.numpy as jnp
import ml_collections

from cnnjax.models import create_model, layer_outputs, layers
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


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', default='small_convnet')
  parser.add_argument('--size', type=int, default=28)
  parser.add_argument('--channels', type=int, default=1)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--implementations', default='lax,im2col',
                      help='Conv2D implementations to time each conv layer with')
  args = parser.parse_args()
  print(machine_description())
  model = create_model(ml_collections.ConfigDict({'name': args.model}))
  images = jax.random.uniform(jax.random.key(0), (args.batch, args.size, args.size, args.channels))
  variables = jax.jit(model.init)(jax.random.key(1), images)

  forward = jax.jit(lambda p, x: model.apply({'params': p}, x))
  grad = jax.jit(jax.value_and_grad(lambda p, x: model.apply({'params': p}, x).mean()))
  whole_forward = best_ms(forward, variables['params'], images, repeats=args.repeats)
  whole_step = best_ms(grad, variables['params'], images, repeats=args.repeats)
  print(f'{args.model}, batch {args.batch} of {images.shape[1:]}: forward {whole_forward:.2f} ms, '
        f'forward + backward {whole_step:.2f} ms ({whole_step / whole_forward:.1f}x)')

  outputs = layer_outputs(model, variables, images)
  types = layer_types(model, variables, images)
  names = list(outputs)
  print(f'{"layer":<10s} {"conv":<7s} {"input":<16s} {"forward":>9s} {"d kernel":>9s} '
        f'{"d input":>9s}  (ms)')
  for (i, name), implementation in ((item, impl) for item in enumerate(names)
                                    for impl in args.implementations.split(',')):
    if types[name] != 'Conv2D':
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


if __name__ == '__main__':
  main()
