"""Parameterizing an image in a decorrelated space, for feature visualization that looks natural.

Optimizing raw pixels to excite a filter yields high-frequency noise that the filter happens to
like. Olah et al. ("Feature Visualization", Distill 2017; the Lucid library) optimize instead in a
space where the directions of steepest ascent are closer to natural images:

- Fourier space: the image is the inverse real FFT of a learned spectrum whose coefficients are
  scaled by 1 / frequency, so every frequency starts at the energy natural images have there and
  low frequencies are as easy to change as high ones.
- decorrelated colour: the three channels are a fixed linear mix (the square root of the colour
  correlation of ImageNet, as Lucid measured it) of three uncorrelated ones; a grayscale image is
  left as it is.
- a sigmoid maps the result to valid pixel values in [0, 1].

Functions are pure: `init_spectrum` makes the parameters, `spectrum_to_image` maps them to images.
"""

import jax
import jax.numpy as jnp
import numpy as np

# Square root of ImageNet's RGB colour correlation, from Lucid (columns: uncorrelated components).
COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02],
                                         [0.27, 0.00, -0.05],
                                         [0.27, -0.09, 0.03]], np.float32)
# Normalized so that no component is amplified: the largest column norm becomes 1.
COLOR_MIX = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))

# Lucid divides the inverse FFT by this constant so that the initial image has a moderate contrast.
_FFT_DAMPING = 4.0


def spectrum_frequencies(height: int, width: int) -> np.ndarray:
  """|frequency| in cycles per pixel of each rfft2 coefficient of an (height, width) image."""
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.rfftfreq(width)[None, :]
  return np.sqrt(fx ** 2 + fy ** 2)


def init_spectrum(key: jax.Array, batch: int, height: int, width: int, channels: int,
                  sd: float = 0.01) -> jax.Array:
  """Small random spectra: (batch, channels, height, width // 2 + 1, 2) real and imaginary parts."""
  shape = (batch, channels, height, width // 2 + 1, 2)
  return sd * jax.random.normal(key, shape, jnp.float32)


def spectrum_to_pixels(spectrum: jax.Array, height: int, width: int,
                       decay_power: float = 1.0) -> jax.Array:
  """Unconstrained (pre-sigmoid) images (batch, height, width, channels) from their spectra."""
  freqs = spectrum_frequencies(height, width)
  # Frequencies below one cycle per image share the lowest one's scale (the DC term included).
  scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay_power
  coefficients = jax.lax.complex(spectrum[..., 0], spectrum[..., 1]) * scale.astype(np.float32)
  images = jnp.fft.irfft2(coefficients, s=(height, width), norm='ortho') / _FFT_DAMPING
  return jnp.moveaxis(images, 1, -1)


def decorrelate_colors(images: jax.Array) -> jax.Array:
  """Maps uncorrelated channels to correlated RGB; other channel counts are returned unchanged."""
  if images.shape[-1] != 3:
    return images
  return images @ jnp.asarray(COLOR_MIX).T


def spectrum_to_image(spectrum: jax.Array, height: int, width: int, decorrelate: bool = True,
                      decay_power: float = 1.0) -> jax.Array:
  """Images in [0, 1], (batch, height, width, channels), from spectra made by `init_spectrum`."""
  pixels = spectrum_to_pixels(spectrum, height, width, decay_power)
  if decorrelate:
    pixels = decorrelate_colors(pixels)
  return jax.nn.sigmoid(pixels)
