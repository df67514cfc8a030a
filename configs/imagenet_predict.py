"""Classifying photos with a pretrained ImageNet model: the top-5 classes of each (cnnjax/predict.py).

Pick the model with model.name, its weights file with model.init_from (cnnjax never downloads:
get the file first) and the photos with predict.images (comma-separated); --workdir DIR also
writes DIR/predictions.json. Each file's format says how the photos are prepared: Keras files
(.h5) resize the whole photo to 224x224 and use 'caffe' preprocessing, torchvision files (.pth)
resize the short side to 256, crop the central 224x224 and use 'torch' preprocessing.

    # ResNet-50, torchvision's IMAGENET1K_V1 weights:
    #   https://download.pytorch.org/models/resnet50-0676ba61.pth
    python launch.py --config configs/imagenet_predict.py --mode predict \
      --config.model.name=resnet50 --config.model.init_from=resnet50-0676ba61.pth \
      --config.predict.images=elephant.jpg,cat.png --workdir runs/predict

    # ResNet-18 / ResNet-34, torchvision's IMAGENET1K_V1 weights:
    #   https://download.pytorch.org/models/resnet18-f37072fd.pth
    #   https://download.pytorch.org/models/resnet34-b627a593.pth
    python launch.py --config configs/imagenet_predict.py --mode predict \
      --config.model.name=resnet18 --config.model.init_from=resnet18-f37072fd.pth \
      --config.predict.images=elephant.jpg
    python launch.py --config configs/imagenet_predict.py --mode predict \
      --config.model.name=resnet34 --config.model.init_from=resnet34-b627a593.pth \
      --config.predict.images=elephant.jpg

    # ResNet50 as Keras builds it, Keras' ImageNet weights:
    #   https://storage.googleapis.com/tensorflow/keras-applications/resnet/
    #     resnet50_weights_tf_dim_ordering_tf_kernels.h5
    python launch.py --config configs/imagenet_predict.py --mode predict \
      --config.model.name=resnet50_keras \
      --config.model.init_from=resnet50_weights_tf_dim_ordering_tf_kernels.h5 \
      --config.predict.images=elephant.jpg

    # InceptionV3, Keras' ImageNet weights (photos resized to 299x299, 'tf' preprocessing):
    #   https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/
    #     inception_v3_weights_tf_dim_ordering_tf_kernels.h5
    python launch.py --config configs/imagenet_predict.py --mode predict \
      --config.model.name=inception_v3 \
      --config.model.init_from=inception_v3_weights_tf_dim_ordering_tf_kernels.h5 \
      --config.predict.images=elephant.jpg

    # VGG16, Keras' ImageNet weights with the top (or torchvision's vgg16-397923af.pth):
    #   https://storage.googleapis.com/tensorflow/keras-applications/vgg16/
    #     vgg16_weights_tf_dim_ordering_tf_kernels.h5
    #   https://download.pytorch.org/models/vgg16-397923af.pth
    python launch.py --config configs/imagenet_predict.py --mode predict \
      --config.model.name=vgg16 \
      --config.model.init_from=vgg16_weights_tf_dim_ordering_tf_kernels.h5 \
      --config.predict.images=elephant.jpg

The addresses are each weight table's `where_to_get` (cnnjax/weights/vgg16.py, resnet*.py, inception_v3.py), which
a missing file's error repeats. Only the with-top (1000-class) files classify; torchvision's
ResNet-50 IMAGENET1K_V2 weights (resnet50-11ad3fa6.pth) load too, but were evaluated with a
resize to 232 rather than 256, so their probabilities differ slightly from torchvision's.
"""

import ml_collections

from cnnjax.config import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.model.name = 'resnet50'
  config.model.input_shape = (224, 224, 3)
  config.model.num_outputs = None  # The model's own 1000 ImageNet classes.
  config.model.init_from = ''      # Required: --config.model.init_from=WEIGHTS_FILE.
  config.predict = predict = ml_collections.ConfigDict()
  predict.images = ''  # Required: the photos, comma-separated: 'a.jpg,b.png'.
  predict.top = 5      # Classes shown per photo.
  return config
