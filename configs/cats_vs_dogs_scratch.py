"""Cats vs dogs from scratch at 150x150 (1st edition): 3,453,121 parameters.

Conv32-P-Conv64-P-Conv128-P-Conv128-P-Flatten-Dense512-Dense1 with a sigmoid output, binary
cross-entropy, RMSprop lr 1e-4, batch 20, 30 epochs. The reference reports validation accuracy
stalling at 70-72% after overfitting sets in around epochs 5-10.

    python launch.py --config configs/cats_vs_dogs_scratch.py --mode summary

Training needs the image-folder data pipeline, which is not built yet: for now this config serves
`--mode summary` only.
"""

from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.data.source = 'image_folder'
  config.data.name = 'cats_vs_dogs'
  config.data.num_classes = 2
  config.model.name = 'cats_vs_dogs_150'
  config.model.input_shape = (150, 150, 3)
  config.train.loss = 'binary_crossentropy'
  config.train.learning_rate = 1e-4
  config.train.batch_size = 20
  config.train.epochs = 30
  return config
