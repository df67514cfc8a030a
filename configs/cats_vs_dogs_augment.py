"""Cats vs dogs at 150x150 with data augmentation and Dropout(0.5) (1st edition): the reference's
82% validation accuracy after 100 epochs.

`configs/cats_vs_dogs_scratch.py` plus Keras' ImageDataGenerator augmentation with the book's
arguments (rotation_range=40, width/height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
horizontal_flip=True, fill_mode='nearest'), run on the device inside the train step with a new
transform every time an image is seen; Dropout(0.5) before the Dense512 classifier; batch 32,
100 epochs.

    python launch.py --config configs/cats_vs_dogs_augment.py --workdir runs/cats_vs_dogs_augment \
      --config.data.dir=data/cats_vs_dogs_small

Not trained on the Kaggle photos here (they cannot be downloaded on this project's machines).
"""

from configs import cats_vs_dogs_scratch


def get_config():
  config = cats_vs_dogs_scratch.get_config()
  config.augment.kind = 'image_data_generator'  # Its defaults are the book's arguments.
  config.model.dropout_rate = 0.5
  config.train.batch_size = 32
  config.train.eval_batch_size = 100
  config.train.epochs = 100
  return config
