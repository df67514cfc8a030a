"""Workflow 3 on VGG16, phase 2 of fine-tuning: block5_conv1..3 unfrozen, RMSprop 1e-5.

Phase 1 is configs/vgg16_feature_extraction_augment.py (the head trained on the frozen base).
Phase 2 starts from phase 1's best checkpoint (model.init_from = its workdir, every parameter
taken), unfreezes block5_conv1..3 and trains them jointly with the head at RMSprop 1e-5 for 100
epochs, with the same augmentation. Reference: about 97% test accuracy. 9,177,089 trainable /
7,635,264 non-trainable parameters.

    python launch.py --config configs/vgg16_feature_extraction_augment.py \
      --workdir runs/vgg16_feature_extraction_augment --config.data.dir=data/cats_vs_dogs_small \
      --config.model.init_from=vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
    python launch.py --config configs/vgg16_fine_tuning.py --workdir runs/vgg16_fine_tuning \
      --config.data.dir=data/cats_vs_dogs_small

Not trained here (no ImageNet weights or Kaggle photos on this machine); the same workflow on
Fashion-MNIST is measured in docs/transfer_results.md.
"""

from configs import vgg16_cats_vs_dogs

PHASE1_WORKDIR = 'runs/vgg16_feature_extraction_augment'


def get_config():
  config = vgg16_cats_vs_dogs.get_config()
  config.model.init_from = PHASE1_WORKDIR
  config.model.init_layers = ('.*',)
  config.train.param_groups = ('block[1-4]_.*=frozen', '.*=1')
  config.train.learning_rate = 1e-5
  config.train.epochs = 100
  config.augment.kind = 'image_data_generator'
  return config
