"""VGG16 on cats vs dogs at 150x150: the common base of the transfer workflows (configs/vgg16_*.py).

`vgg16_transfer`: VGG16's convolutional base (block1_conv1 ... block5_pool, 14,714,688
parameters) with a new Flatten - Dense(256) - Dropout(0.5) - Dense(1) head (2,097,665
parameters; 4x4x512 features at 150x150), 16,812,353 in all as in the reference. The model applies
Keras' 'caffe' `preprocess_input` (RGB -> BGR, minus the ImageNet mean pixel) itself, so it takes
RGB pixels in 0..255: `data.pixel_scale = 1.0` keeps them so (augmentation runs on them too).
For torchvision's .pth weights set `--config.model.preprocess=torch`.

The base starts from Keras' ImageNet weights without the top (`model.init_from`, taken for the
layers `model.init_layers = ('block.*',)`; the head is new). cnnjax never downloads: fetch the
file from Keras' storage (the address is `cnnjax.weights.vgg16.KERAS_NO_TOP_URL`; a missing file
is an error that prints it) and pass its path. Data: the 1st edition's small subset, 1,000 /
500 / 500 photos per class (`python -m cnnjax.data.cats_vs_dogs --edition 1`, see
configs/cats_vs_dogs_scratch.py).

    python launch.py --config configs/vgg16_cats_vs_dogs.py --mode summary

Not trained here: neither the ImageNet weights nor the Kaggle photos can be had on the machines
this project is built on; `--mode summary` of every vgg16_* config is checked by the tests.
As it is (everything trainable at 2e-5, no augmentation) this config is not one of the reference's
workflows; those are:

- vgg16_feature_extraction.py: (1) fast feature extraction, cached 4x4x512 features;
  2,097,665 trainable / 14,714,688 non-trainable parameters;
- vgg16_feature_extraction_augment.py: (2) frozen base + head, with augmentation; the same;
- vgg16_fine_tuning.py: (3) phase 2 from (2), block5 unfrozen, RMSprop 1e-5; 9,177,089 /
  7,635,264;
- vgg16_end_to_end.py: (4) everything, the base at 0.1x the head's rate; 16,812,353 / 0.
"""

from configs import cats_vs_dogs_scratch

KERAS_NO_TOP_WEIGHTS = 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5'


def get_config():
  config = cats_vs_dogs_scratch.get_config()
  config.data.pixel_scale = 1.0  # 0..255: the model's 'caffe' preprocessing expects pixels.
  config.model.name = 'vgg16_transfer'
  config.model.input_shape = (150, 150, 3)
  config.model.init_from = KERAS_NO_TOP_WEIGHTS  # --config.model.init_from=PATH.
  config.model.init_layers = ('block.*',)
  config.train.learning_rate = 2e-5
  config.train.batch_size = 20
  config.train.epochs = 30
  return config
