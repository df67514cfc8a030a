"""The 2nd-edition MNIST convnet: Conv32-P-Conv64-P-Conv128-Flatten-Dense10 (104,202 params).

RMSprop, batch 64, 5 epochs, as in the reference (99.1% test there). MNIST is not packaged for
this machine: point `data.dir` (or $CNNJAX_DATA_DIR) at a directory with the four MNIST IDX files
(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
t10k-labels-idx1-ubyte.gz), or use TFDS with `--config.data.source=tfds` where it is prepared.

    python launch.py --config configs/mnist.py --workdir runs/mnist --config.data.dir=/path/to/mnist

Not measured here: no MNIST files can be had on this machine.
"""

from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.data.name = 'mnist'
  config.model.name = 'mnist_convnet'
  return config
