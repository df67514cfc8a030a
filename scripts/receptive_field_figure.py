"""Draws docs/figures/receptive_field_dilation.png: the receptive fields of a plain and a dilated
stack of three 3x3 convolutions, as gradients.

    .venv/bin/python scripts/receptive_field_figure.py [--out PATH]

Two stacks of three 3x3 'same' convolutions on a 19x19 one-channel image, every weight 1, no
bias, no activation: dilations 1, 1, 1 (fields 3, 5, 7) and 1, 2, 4 (fields 3, 7, 15, the same
9 weights per layer). Each panel is the gradient of the central output unit of one layer with
respect to the input pixels: with every weight 1 it counts the paths from a pixel to the unit,
and its nonzero pixels are the pixels the unit depends on. The dashed box is the field that
`cnnjax.receptive_field` computes from the model's jaxpr, independently of the gradient.
"""

import argparse
import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
from matplotlib import colors, patches, ticker  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from cnnjax import receptive_field  # pylint: disable=wrong-import-position
from cnnjax.models import layers  # pylint: disable=wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, 'docs', 'figures', 'receptive_field_dilation.png')
SIZE = 19
STACKS = {'plain 3x3 stack, dilations 1, 1, 1': (1, 1, 1),
          'dilated 3x3 stack, dilations 1, 2, 4': (1, 2, 4)}


class Stack(nn.Module):
  """3x3 'same' convolutions conv1, conv2, ... with the given dilations, linear, one channel."""

  dilations: Sequence[int]

  @nn.compact
  def __call__(self, x):
    for i, d in enumerate(self.dilations, start=1):
      x = layers.Conv2D(1, (3, 3), padding='SAME', activation=None, use_bias=False,
                        dilation=(d, d), kernel_init=nn.initializers.ones, name=f'conv{i}')(x)
    return x


def draw(out: str = OUT) -> str:
  images = jnp.ones((1, SIZE, SIZE, 1))
  centre = (SIZE // 2, SIZE // 2)
  fig, axes = plt.subplots(len(STACKS), 3, figsize=(12, 8.4), constrained_layout=True)
  for row, (title, dilations) in enumerate(STACKS.items()):
    model = Stack(dilations)
    variables = model.init(jax.random.key(0), images)
    fields = receptive_field.receptive_fields(model, variables, images)
    gradients = receptive_field.unit_gradients(model, variables, images,
                                               {name: centre for name in fields})
    for col, name in enumerate(fields):
      ax, gradient, field = axes[row, col], gradients[name], fields[name]
      shown = np.ma.masked_equal(gradient, 0)  # Pixels the unit does not depend on: white.
      image = ax.imshow(shown, cmap='viridis', norm=colors.Normalize(0, gradient.max()))
      (r0, r1), (c0, c1) = field.rows.pixels(centre[0]), field.cols.pixels(centre[1])
      ax.add_patch(patches.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False,
                                     edgecolor='red', linewidth=2, linestyle='--'))
      ax.plot(*centre[::-1], marker='+', color='white', markersize=12, markeredgewidth=2)
      ax.set_xticks(np.arange(-0.5, SIZE, 1), minor=True)
      ax.set_yticks(np.arange(-0.5, SIZE, 1), minor=True)
      ax.grid(which='minor', color='0.85', linewidth=0.5)
      ax.tick_params(which='minor', length=0)
      ax.set_xticks(range(0, SIZE, 3))
      ax.set_yticks(range(0, SIZE, 3))
      nonzero = int(np.count_nonzero(gradient))
      ax.set_title(f'after {name} (dilation {dilations[col]}): field '
                   f'{field.rows.size}x{field.cols.size}\n{nonzero} pixels with a nonzero '
                   'gradient', fontsize=10)
      fig.colorbar(image, ax=ax, shrink=0.8, label='gradient = paths to the unit',
                   ticks=ticker.MaxNLocator(integer=True))
    axes[row, 0].set_ylabel(title, fontsize=11, fontweight='bold')
  fig.suptitle('Receptive field of the central unit of a 19x19 map: gradient with respect to '
               'the input (colour; white: zero)\nand the field computed from the jaxpr (red '
               'dashed box). All weights 1, no activation.', fontsize=12)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default=OUT)
  print(draw(parser.parse_args().out))


if __name__ == '__main__':
  main()
