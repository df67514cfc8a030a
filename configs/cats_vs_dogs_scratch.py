"""Cats vs dogs from scratch at 150x150 (1st edition): 3,453,121 parameters.

Conv32-P-Conv64-P-Conv128-P-Conv128-P-Flatten-Dense512-Dense1 with a sigmoid output, binary
cross-entropy, RMSprop lr 1e-4, batch 20, 30 epochs, on the small subset of the Kaggle photos
(1,000 / 500 / 500 per class, built by `python -m cnnjax.data.cats_vs_dogs --edition 1`). The
reference reports validation accuracy stalling at 70-72% after overfitting sets in around epochs
5-10.

    python -m cnnjax.data.cats_vs_dogs --source kaggle/train --dest data/cats_vs_dogs_small \
      --edition 1
    python launch.py --config configs/cats_vs_dogs_scratch.py --workdir runs/cats_vs_dogs \
      --config.data.dir=data/cats_vs_dogs_small

`data.dir` holds `train/`, `validation/` and `test/`, each with one folder per class (`cats`,
`dogs`; labels follow the sorted folder names). The Kaggle photos cannot be downloaded on the
machines this project is built on, so this config has not been trained on them here; the README's
"Photos" section runs the same pipeline end to end on Fashion-MNIST classes exported as JPEGs.
"""

from cnnjax.config import base_config


def get_config():
  config = base_config()
  data = config.data
  data.source = 'image_folder'
  data.name = 'cats_vs_dogs'
  data.dir = ''  # Required: --config.data.dir=DIR.
  data.train_split = 'train'
  data.val_split = 'validation'
  data.test_split = 'test'
  data.num_classes = 2
  data.image_size = (150, 150)
  config.model.name = 'cats_vs_dogs_150'
  config.model.input_shape = (150, 150, 3)
  config.train.loss = 'binary_crossentropy'
  config.train.learning_rate = 1e-4
  config.train.batch_size = 20
  config.train.eval_batch_size = 100
  config.train.epochs = 30
  return config
