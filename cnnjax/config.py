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
  data.source = 'idx'          # 'idx': IDX files in data.dir; 'tfds': tensorflow-datasets;
                               # 'image_folder': data.dir/SPLIT/CLASS/*.jpg|png|bmp|gif.
  data.name = 'fashion_mnist'  # The data set (TFDS name for source='tfds').
  data.dir = ''                # IDX: '' = $CNNJAX_DATA_DIR, else the Debian package's directory.
                               # image_folder: the root holding the split directories.
  data.train_split = 'train'   # TFDS split strings may slice: 'train[:90%]'; image_folder: the
                               # split's directory under data.dir.
  data.val_split = ''          # '' carves val_fraction of the training split off, seeded.
  data.test_split = 'test'
  data.val_fraction = 0.1
  data.seed = 0                # Seed of the validation carve (independent of the run's seed).
  data.num_classes = 10        # image_folder: the number of class folders (2 for a sigmoid).
  data.limit_train = 0         # Keep only the first N training / test examples; 0 keeps all.
  data.limit_test = 0          # (image_folder: the first files of each class in turn.)
  # Photos ('image_folder' and TFDS photo sets such as cats_vs_dogs; cnnjax/data/image_folder.py):
  data.image_size = (0, 0)     # (height, width) to resize to, bilinear; (0, 0): keep (then all
                               # images must share one size).
  data.color_mode = 'rgb'      # 'rgb' or 'grayscale'; for IDX / TFDS only with an image_size.
  data.pixel_scale = 255.0     # Pixels are divided by this (255: [0, 1]; 1: keep 0..255).
  data.strict = False          # True: an undecodable photo is an error, not skipped (warning).
  data.cache_dir = ''          # Where decoded image-folder arrays are cached ('': no cache).
  data.decode_workers = 0      # Parallel photo decoding threads; 0: one per CPU core.
  # Image folders and TFDS data sets larger than memory are read from disk batch by batch
  # (cnnjax/data/streaming.py, grain): 'true' streams, 'false' decodes everything into memory,
  # 'auto' streams when the decoded uint8 images of all splits (examples x height x width x
  # channels) exceed memory_budget_mb. An image folder streams only with data.image_size (a TFDS
  # set without one keeps its stored shape); the batches are those of the in-memory path.
  data.streaming = 'auto'
  data.memory_budget_mb = 8192.0
  data.streaming_workers = 2   # grain worker processes decoding (0: in the training process).
  # Streamed training batches only: torchvision's RandomResizedCrop at decode, from the full-size
  # photo, before the resize to image_size: (scale low, high, ratio low, high), e.g. (0.08, 1.0,
  # 0.75, 1.333); () for none. Validation and test images are resized whole.
  data.random_resized_crop = ()
  # Class selection and per-class counts (cnnjax/data/subsets.py), applied after loading:
  data.classes = ()            # Labels to keep, relabelled 0, 1, ... in this order; (): all.
  data.per_class = (0, 0, 0)   # (train, validation, test) examples per class, drawn seeded by
                               # data.seed: train and validation from the training examples,
                               # test from the test split; 0 keeps all of that split.

  config.model = model = ml_collections.ConfigDict()
  model.name = 'small_convnet'
  model.input_shape = (28, 28, 1)  # For --mode summary; training takes the data's shape.
  model.num_outputs = config_dict.placeholder(int)     # None keeps the model's own.
  model.dropout_rate = config_dict.placeholder(float)  # None keeps the model's own.
  model.preprocess = config_dict.placeholder(str)  # preprocess_input mode ('caffe', 'torch',
                               # 'tf', 'none') of models that take one; None keeps the model's.
  model.dtype = 'float32'
  # BatchNorm models (ResNet, ...): momentum of the moving statistics in Flax's convention
  # (new = momentum * old + (1 - momentum) * batch; torchvision's momentum 0.1 is Flax's 0.9) and
  # epsilon; None keeps the model's own, which are those of its weight source (torchvision:
  # 0.9 / 1e-5; Keras: 0.99 / 1.001e-5).
  model.bn_momentum = config_dict.placeholder(float)
  model.bn_epsilon = config_dict.placeholder(float)
  # How every Conv2D of the model computes: 'lax', 'im2col', 'taps' or 'auto' (the formulation
  # measured fastest on the backend; cnnjax/models/convolution.py); None keeps the model's own.
  model.conv_implementation = config_dict.placeholder(str)
  # The shape of a plain convnet (bn_convnet): channels of each stage, convolutions per stage (one
  # number, or one per stage), and the first convolution's stride (2: strided instead of pooled).
  # None keeps the model's own; a model without the field refuses it.
  model.widths = config_dict.placeholder(tuple)
  model.convs_per_stage = config_dict.placeholder(object)
  model.first_stride = config_dict.placeholder(int)
  # A ResNet's blocks per stage (resnet_small's (1, 1, 1): (3, 3, 3) is the CIFAR ResNet-20); its
  # channels per stage are model.widths, one entry per stage.
  model.stage_sizes = config_dict.placeholder(tuple)
  # Pretrained initialization (cnnjax/transfer/pretrained.py): a weight file (VGG16's Keras .h5,
  # .weights.h5 or torchvision .pth) or the workdir of a cnnjax run (its best checkpoint); ''
  # starts from scratch. init_layers: regexes of the parameters taken from it (as in
  # train.param_groups); the others keep their fresh initialization (a new head).
  model.init_from = ''
  model.init_layers = ('.*',)

  # On-device augmentation of training batches (`cnnjax.augment`); kind 'none' turns it off.
  config.augment = augment.default_config()

  config.train = train = ml_collections.ConfigDict()
  train.epochs = 5
  train.batch_size = 64
  train.eval_batch_size = 512   # Splits evenly across 1, 2, 4, 8, ... devices.
  train.loss = 'sparse_categorical_crossentropy'
  train.optimizer = 'rmsprop'
  train.learning_rate = 1e-3
  train.schedule = 'constant'  # 'cosine', 'warmup_cosine', 'warmup_linear', 'one_cycle',
                               # 'exponential' (cnnjax/training/optimizers.py).
  train.warmup_epochs = 0.0
  train.decay_rate = 0.9       # 'exponential' schedule: factor per epoch.
  train.weight_decay = 0.0
  train.momentum = 0.9         # 'sgd' only.
  train.nesterov = False
  train.grad_clip_norm = 0.0   # 0: no clipping.
  train.smoothing = 0.8        # EMA factor of the smoothed learning curves.
  # Techniques of the Fashion-MNIST records (configs/fashion_mnist_speedrun.py, _best.py):
  train.label_smoothing = 0.0  # Target (1 - a) one-hot + a / classes (cnnjax/training/losses.py).
  train.ema_decay = 0.0        # > 0: validate, select and test a moving average of the
                               # parameters and BatchNorm statistics (training/train_state.py).
  train.tta_flip = False       # Evaluation averages the logits over the mirrored image too,
  train.tta_shift = 0          # and over each view moved by this many pixels both ways along
                               # the diagonal (cnnjax/training/test_time.py).
  train.evaluate_test = True   # False: stop at the best epoch by val_loss without evaluating on the
                               # test split (settings chosen on validation, as in a search).
  # Checkpoints within epochs (cnnjax/training/checkpointing.py), besides the one at each epoch's
  # end: every N global steps and every N minutes since the last checkpoint; 0 turns either
  # off. A run resumed from one continues exactly where it was. SIGTERM / SIGINT always write one.
  train.checkpoint_every_steps = 0
  train.checkpoint_every_minutes = 5.0
  # TensorBoard events in WORKDIR/tensorboard (cnnjax/training/event_log.py): training loss,
  # accuracy, learning rate and images/s every log_every_steps steps (0: per epoch only).
  train.log_every_steps = 50
  # A jax.profiler trace of global steps (first, last) into WORKDIR/tensorboard; () for none.
  train.profile_steps = ()
  train.parallel = 'auto'      # 'single', 'sharded' (jit over a device mesh), 'pmap'; 'auto':
                               # sharded when there is more than one device.
  # Freezing and per-group learning rates (cnnjax/training/optimizers.py): 'PATTERN=VALUE' strings, the
  # first matching pattern wins, VALUE 'frozen' or a learning-rate multiplier; e.g.
  # ('block[1-4]_.*=frozen', '.*=1'). Every parameter must match one; (): all train at 1x.
  train.param_groups = ()
  # Fast feature extraction (cnnjax/transfer/features.py): run the frozen base once over the data,
  # cache its outputs in the workdir and train the head on them (no augmentation).
  train.cache_features = False

  # Speed choices measured on the machine the run lands on, once, then cached per CPU model,
  # versions and shapes (cnnjax/tuning.py, cnnjax/process_settings.py; README, Speed).
  config.tuning = tuning = ml_collections.ConfigDict()
  tuning.measure = True        # False: the rules measured on a 2-core AMD EPYC instead (also
                               # CNNJAX_TUNING=rules in the environment, which wins).
  tuning.cache_dir = ''        # '': $CNNJAX_CACHE_DIR, else the user's cache dir (~/.cache/cnnjax).
  tuning.huge_pages = 'auto'   # glibc malloc with transparent huge pages: 'auto' (measured, or
                               # the rule: on), 'on', 'off'.
  tuning.ynn_fusions = 'auto'  # XLA:CPU's YNNPACK fusions: 'auto' (measured, or the rule: off),
                               # 'on', 'off'.
  return config
