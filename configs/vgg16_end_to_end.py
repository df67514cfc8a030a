"""Workflow 4 on VGG16: everything trains, the ImageNet base at 0.1x the new head's rate.

As the PyTorch lecture fine-tunes a whole ResNet18 (backbone learning rate = 0.1 x the head's):
RMSprop, the head at 1e-4 and the base at 1e-5, with the 1st edition's augmentation, 30 epochs.
16,812,353 trainable parameters (in two groups). Meant for a GPU.

    python launch.py --config configs/vgg16_end_to_end.py --workdir runs/vgg16_end_to_end \
      --config.data.dir=data/cats_vs_dogs_small \
      --config.model.init_from=vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5

Not trained here (no ImageNet weights or Kaggle photos on this machine); the same workflow on
Fashion-MNIST is measured in docs/transfer_results.md.
"""

from configs import vgg16_cats_vs_dogs


def get_config():
  config = vgg16_cats_vs_dogs.get_config()
  config.train.param_groups = ('block.*=0.1', '.*=1')
  config.train.learning_rate = 1e-4
  config.augment.kind = 'image_data_generator'
  return config
