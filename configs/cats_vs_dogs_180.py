"""Cats vs dogs at 180x180 (2nd edition): Rescaling(1/255) in the model, 991,041 parameters.

Rescaling-Conv32-P-Conv64-P-Conv128-P-Conv256-P-Conv256-Flatten-Dense1 with a sigmoid output,
binary cross-entropy, RMSprop lr 1e-3 (Keras' default), batch 32, 30 epochs, on the 2nd edition's
subset (1,000 / 500 / 1,000 per class: `python -m cnnjax.data.cats_vs_dogs --edition 2`); the
reference's test accuracy is 69.5%. The model rescales the pixels itself, so the data keep 0..255
(`data.pixel_scale = 1`).

    python launch.py --config configs/cats_vs_dogs_180.py --workdir runs/cats_vs_dogs_180 \
      --config.data.dir=data/cats_vs_dogs_small_2nd

Not trained on the Kaggle photos here (they cannot be downloaded on this project's machines).
"""

from configs import cats_vs_dogs_scratch


def get_config():
  config = cats_vs_dogs_scratch.get_config()
  config.data.pixel_scale = 1.0
  config.data.image_size = (180, 180)
  config.model.name = 'cats_vs_dogs_180'
  config.model.input_shape = (180, 180, 3)
  config.train.learning_rate = 1e-3
  config.train.batch_size = 32
  config.train.eval_batch_size = 96
  return config
