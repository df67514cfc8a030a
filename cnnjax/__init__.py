"""cnnjax: convolutional neural networks in JAX/Flax, the functional way."""

__version__ = "0.1.0"
