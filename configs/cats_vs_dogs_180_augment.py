"""Cats vs dogs at 180x180 with Keras-layer augmentation and Dropout(0.5) (2nd edition): the
reference's 83.5% test accuracy after 100 epochs.

`configs/cats_vs_dogs_180.py` plus the book's augmentation stack of Keras 3 layers,
RandomFlip('horizontal'), RandomRotation(0.1) (a tenth of a full turn: +-36 degrees) and
RandomZoom(0.2), run on the device inside the train step; Dropout(0.5) before the Dense1 output;
100 epochs. The data keep 0..255 (the model rescales), so the augmentation's value range is
(0, 255).

    python launch.py --config configs/cats_vs_dogs_180_augment.py \
      --workdir runs/cats_vs_dogs_180_augment --config.data.dir=data/cats_vs_dogs_small_2nd

Not trained on the Kaggle photos here (they cannot be downloaded on this project's machines).
"""

from configs import cats_vs_dogs_180


def get_config():
  config = cats_vs_dogs_180.get_config()
  config.augment.kind = 'keras_layers'  # Its defaults are the book's Flip/Rotation(0.1)/Zoom(0.2).
  config.augment.keras_layers.value_range = (0.0, 255.0)
  config.model.dropout_rate = 0.5
  config.train.epochs = 100
  return config
