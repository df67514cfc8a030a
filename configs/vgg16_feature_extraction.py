"""Workflow 1 on VGG16: fast feature extraction, the head trained on cached ImageNet features.

The reference's first way (1st edition): the pretrained base runs once over the 3,000 photos
(`train.cache_features`; 4x4x512 features each, cached in the workdir's features.npz and
recomputed only if the weights or the data change), then Dense(256)-Dropout(0.5)-Dense(1) trains
on them: RMSprop 2e-5, batch 20, 30 epochs. Reference: about 90% validation accuracy, overfitting
fast. Base frozen: 2,097,665 trainable / 14,714,688 non-trainable parameters.

    python launch.py --config configs/vgg16_feature_extraction.py \
      --workdir runs/vgg16_feature_extraction --config.data.dir=data/cats_vs_dogs_small \
      --config.model.init_from=vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5

Not trained here (no ImageNet weights or Kaggle photos on this machine); the same workflow on
Fashion-MNIST is measured in docs/transfer_results.md.
"""

from configs import vgg16_cats_vs_dogs


def get_config():
  config = vgg16_cats_vs_dogs.get_config()
  config.train.param_groups = ('block.*=frozen', '.*=1')
  config.train.cache_features = True
  return config
