"""Heatmaps made visible: the jet colormap and heatmaps superimposed on their images.

The reference colours a class activation map in [0, 1] with the jet colormap and adds it, times an
intensity of 0.4, to the picture (values above full brightness saturate). `superimpose` does that
('add') or mixes the two ('blend': (1 - intensity) x image + intensity x colours), in JAX, on
batches. Images are floats in [0, 1]; grayscale images are repeated into RGB.
"""

import jax
import jax.numpy as jnp
import numpy as np

# Matplotlib's 'jet': per channel, the colormap value at each breakpoint, linear in between.
_JET = {
    'red': ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    'green': ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    'blue': ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}

OVERLAY_MODES = ('add', 'blend')


def jet(values: jax.Array) -> jax.Array:
  """Maps values in [0, 1] (clipped) to jet RGB colours in [0, 1]: shape (..., 3)."""
  values = jnp.clip(jnp.asarray(values, jnp.float32), 0.0, 1.0)
  channels = []
  for name in ('red', 'green', 'blue'):
    points = np.asarray(_JET[name], np.float32)
    channels.append(jnp.interp(values, points[:, 0], points[:, 1]))
  return jnp.stack(channels, axis=-1)


def to_rgb(images: jax.Array) -> jax.Array:
  """(..., H, W, 1) or (..., H, W, 3) images to (..., H, W, 3)."""
  if images.shape[-1] == 1:
    return jnp.repeat(images, 3, axis=-1)
  if images.shape[-1] != 3:
    raise ValueError(f'images must have 1 or 3 channels to be shown in colour, got {images.shape}')
  return images


def superimpose(images: jax.Array, heatmaps: jax.Array, intensity: float = 0.4,
                mode: str = 'add') -> jax.Array:
  """Jet-coloured heatmaps on their images.

  Args:
    images: (..., H, W, C) floats in [0, 1], C = 1 or 3.
    heatmaps: (..., H, W) in [0, 1], the images' size (upsample them first, see
      `cam.upsample`); leading axes broadcast against the images'.
    intensity: weight of the heatmap colours (0.4 in the reference).
    mode: 'add' (the reference: image + intensity x colours, clipped to 1) or 'blend'
      ((1 - intensity) x image + intensity x colours).

  Returns:
    (..., H, W, 3) RGB floats in [0, 1].
  """
  if mode not in OVERLAY_MODES:
    raise ValueError(f'overlay mode must be one of {OVERLAY_MODES}, not {mode!r}')
  if images.shape[-3:-1] != heatmaps.shape[-2:]:
    raise ValueError(f'heatmaps of size {heatmaps.shape[-2:]} do not match images of size '
                     f'{images.shape[-3:-1]}; upsample them first')
  colours = jet(heatmaps)
  rgb = to_rgb(jnp.asarray(images, jnp.float32))
  if mode == 'add':
    return jnp.clip(rgb + intensity * colours, 0.0, 1.0)
  return jnp.clip((1 - intensity) * rgb + intensity * colours, 0.0, 1.0)
