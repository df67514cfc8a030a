"""The config every experiment starts from, and how configs are checked before a run.

Configs are ml_collections `ConfigDict`s grouped as `data.*`, `model.*`, `augment.*` and
`train.*`, plus the run's `seed`. The files in `configs/` call `base_config()` and override what
their experiment changes; `launch.py` locks the result, so a misspelt `--config.FIELD=VALUE` is an error naming it.
"""

import ml_collections
from ml_collections import config_dict

from cnnjax import augment


def base_config() -> ml_collections.ConfigDict:
  """Defaults: the small convnet on Fashion-MNIST from the Debian IDX files, RMSprop, batch 64."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = data = ml_collections.ConfigDict()
  data.source = 'idx'          # 'idx': IDX files in data.dir; 'tfds': tensorflow-datasets.
  data.name = 'fashion_mnist'  # The data set (TFDS name for source='tfds').
  data.dir = ''                # IDX: '' = $CNNJAX_DATA_DIR, else the Debian package's directory.
  data.train_split = 'train'   # TFDS split strings may slice: 'train[:90%]'.
  data.val_split = ''          # '' carves val_fraction of the training split off, seeded.
  data.test_split = 'test'
  data.val_fraction = 0.1
  data.seed = 0                # Seed of the validation carve (independent of the run's seed).
  data.num_classes = 10
  data.limit_train = 0         # Keep only the first N training / test examples; 0 keeps all.
  data.limit_test = 0
  # Photos ('image_folder' and TFDS photo sets such as cats_vs_dogs):
  data.image_size = (0, 0)     # (height, width) to resize photos to; (0, 0): keep (IDX data).
  data.color_mode = 'rgb'      # 'rgb' or 'grayscale'.
  data.pixel_scale = 255.0     # Pixels are divided by this (255: [0, 1]; 1: keep 0..255).
  data.strict = False          # True: an undecodable photo is an error, not skipped.
  data.cache_dir = ''          # Where decoded photo arrays are cached ('' : no cache).
  data.decode_workers = 0      # Parallel photo decoders; 0: one per CPU core.

  config.model = model = ml_collections.ConfigDict()
  model.name = 'small_convnet'
  model.input_shape = (28, 28, 1)  # For --mode summary; training takes the data's shape.
  model.num_outputs = config_dict.placeholder(int)     # None keeps the model's own.
  model.dropout_rate = config_dict.placeholder(float)  # None keeps the model's own.
  model.dtype = 'float32'

  # On-device augmentation of training batches (`cnnjax.augment`); kind 'none' turns it off.
  config.augment = augment.default_config()

  config.train = train = ml_collections.ConfigDict()
  train.epochs = 5
  train.batch_size = 64
  train.eval_batch_size = 512   # Splits evenly across 1, 2, 4, 8, ... devices.
  train.loss = 'sparse_categorical_crossentropy'
  train.optimizer = 'rmsprop'
  train.learning_rate = 1e-3
  train.schedule = 'constant'
  train.warmup_epochs = 0.0
  train.decay_rate = 0.9       # 'exponential' schedule: factor per epoch.
  train.weight_decay = 0.0
  train.momentum = 0.9         # 'sgd' only.
  train.nesterov = False
  train.grad_clip_norm = 0.0   # 0: no clipping.
  train.smoothing = 0.8        # EMA factor of the smoothed learning curves.
  train.parallel = 'auto'      # 'single', 'sharded' (jit over a device mesh), 'pmap'; 'auto':
                               # sharded when there is more than one device.
  return config
