"""Cats vs dogs at 180x180 (2nd edition): Rescaling(1/255) in the model, 991,041 parameters.

Rescaling-Conv32-P-Conv64-P-Conv128-P-Conv256-P-Conv256-Flatten-Dense1 with a sigmoid output,
binary cross-entropy, RMSprop lr 1e-3 (Keras' default), batch 32, 30 epochs; the reference's
test accuracy is 69.5%. Set `--config.model.dropout_rate=0.5` for the variant with Dropout.

    python launch.py --config configs/cats_vs_dogs_180.py --mode summary

Training needs the image-folder data pipeline, which is not built yet: for now this config serves
`--mode summary` only.
"""

from configs import cats_vs_dogs_scratch


def get_config():
  config = cats_vs_dogs_scratch.get_config()
  config.model.name = 'cats_vs_dogs_180'
  config.model.input_shape = (180, 180, 3)
  config.train.learning_rate = 1e-3
  config.train.batch_size = 32
  return config
