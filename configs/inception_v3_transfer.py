"""InceptionV3 (Keras' ImageNet weights) as a frozen feature extractor under a new head, on a
binary photo folder: Keras' "fine-tune InceptionV3 on a new set of classes" recipe, step one.

`inception_v3` in Keras' layout (cnnjax/models/inception_v3.py) at 299x299 with the 1000-class
`predictions` replaced by a new one-unit `predictions` on the 2048 globally averaged `mixed10`
features (`model.num_outputs = 1`, a sigmoid output with binary cross-entropy). The base is
everything but `predictions`, taken from Keras' `inception_v3_weights_tf_dim_ordering_tf_kernels_
notop.h5` (`model.init_from`; the address is in `cnnjax.weights.inception_v3`, a missing file is
an error that prints it; cnnjax never downloads), BatchNorm statistics included, and frozen
(`train.param_groups = ('predictions=1', '.*=frozen')`): its BatchNorms run in inference mode, as
Keras' do under `trainable = False`. 21,804,833 parameters: 2,049 trainable, 21,802,784
non-trainable (21,768,352 frozen + 34,432 moving statistics), as `--mode summary` prints (tested
in tests/test_configs.py). The model applies Keras' 'tf' preprocessing itself (x / 127.5 - 1), so
it takes RGB pixels in 0..255 (`data.pixel_scale = 1.0`). RMSprop, batch 32, 10 epochs.

Data: a photo folder, `data.dir` holding `train/`, `validation/` and `test/` with one folder per
class (two classes), resized to 299x299 RGB, e.g. the cats-vs-dogs subset of
configs/cats_vs_dogs_scratch.py.

    python launch.py --config configs/inception_v3_transfer.py --workdir runs/inception_v3 \
      --config.data.dir=PHOTO_FOLDER \
      --config.model.init_from=inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5

Not trained here: neither the ImageNet weights nor a photo folder can be had on the machines this
project is built on. `--config.train.cache_features=True` runs the frozen base once per image and
trains the head on the cached 2048 features.
"""

from configs import cats_vs_dogs_scratch

KERAS_NO_TOP_WEIGHTS = 'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5'
BASE = ('conv2d.*', 'batch_normalization.*')  # Everything but predictions.


def get_config():
  config = cats_vs_dogs_scratch.get_config()
  data = config.data
  data.name = 'photos'
  data.image_size = (299, 299)
  data.pixel_scale = 1.0  # 0..255: the model's 'tf' preprocessing expects pixels.
  model = config.model
  model.name = 'inception_v3'
  model.input_shape = (299, 299, 3)
  model.num_outputs = 1
  model.preprocess = 'tf'
  model.init_from = KERAS_NO_TOP_WEIGHTS  # --config.model.init_from=PATH.
  model.init_layers = BASE
  config.augment.kind = 'none'
  train = config.train
  train.loss = 'binary_crossentropy'
  train.optimizer = 'rmsprop'
  train.learning_rate = 1e-3
  train.batch_size = 32
  train.eval_batch_size = 64
  train.epochs = 10
  train.param_groups = ('predictions=1', '.*=frozen')
  return config
