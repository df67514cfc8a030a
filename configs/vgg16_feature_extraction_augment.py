"""Workflow 2 on VGG16: the ImageNet base frozen, a new head trained end to end with augmentation.

Every photo goes through the frozen base at every epoch, augmented as the 1st edition does
(ImageDataGenerator: rotation 40, shifts 0.2, shear 0.2, zoom 0.2, horizontal flips, nearest
fill); only the head's gradients are computed. RMSprop 2e-5, batch 20, 30 epochs. Reference:
about 96% validation accuracy. Base frozen: 2,097,665 trainable / 14,714,688 non-trainable. This
is also phase 1 of the fine-tuning (configs/vgg16_fine_tuning.py). Meant for a GPU.

    python launch.py --config configs/vgg16_feature_extraction_augment.py \
      --workdir runs/vgg16_feature_extraction_augment --config.data.dir=data/cats_vs_dogs_small \
      --config.model.init_from=vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5

Not trained here (no ImageNet weights or Kaggle photos on this machine); the same workflow on
Fashion-MNIST is measured in docs/transfer_results.md.
"""

from configs import vgg16_cats_vs_dogs


def get_config():
  config = vgg16_cats_vs_dogs.get_config()
  config.train.param_groups = ('block.*=frozen', '.*=1')
  config.augment.kind = 'image_data_generator'  # The 1st edition's settings are the defaults.
  return config
