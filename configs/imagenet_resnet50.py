"""ResNet50 from scratch on ImageNet (ILSVRC-2012), streamed from disk: 25,610,152 parameters.

torchvision's ResNet50 recipe (the one its reference scripts train to about 76% top-1): SGD with
momentum 0.9, learning rate 0.1 per 256 images with 5 warmup epochs and a cosine decay, weight
decay 1e-4, label smoothing 0.1, 90 epochs, batch 256; RandomResizedCrop(224, scale=(0.08, 1))
and a horizontal flip for training, the whole image resized to 224x224 for evaluation.

The 1.28 million training photos do not fit in host memory decoded (about 193 GB at 224x224), so
the data are streamed (data.streaming = 'true', `cnnjax.data.streaming`): the files are listed
once and grain's worker processes (data.streaming_workers) decode and resize each batch. The
folder holds the usual ImageNet layout, one directory per class (its WordNet id) in each split;
the labels are the sorted folder names' indices, which for the 1,000 synsets are the standard
class indices (`cnnjax.imagenet.imagenet_classes`):

    IMAGENET/train/n01440764/n01440764_10026.JPEG ...   (1,281,167 photos)
    IMAGENET/val/n01440764/ILSVRC2012_val_00000293.JPEG ... (50,000 photos, sorted into classes)

    python launch.py --config configs/imagenet_resnet50.py --workdir runs/imagenet_resnet50 \
      --config.data.dir=IMAGENET --config.data.streaming_workers=16

A TFDS `imagenet2012` prepared in the ArrayRecord format (`tfds build imagenet2012
--file_format=array_record` where the data and TensorFlow are) streams the same way, read with
`tfds.data_source` (each worker opens the split itself; labels are read once at start-up):

    python launch.py --config configs/imagenet_resnet50.py --workdir runs/imagenet_resnet50 \
      --config.data.source=tfds --config.data.dir=TFDS_DATA_DIR \
      --config.data.val_split=validation --config.data.test_split=validation

(the TFDS streaming path is tested on small prepared sets, tests/test_data_tfds_streaming.py, not
with this config.) The validation photos serve as validation and as test set (ImageNet's test labels are not
public). The RandomResizedCrop is taken as each training photo is decoded, from the full-size
photo (data.random_resized_crop, torchvision's sampling), then resized to 224x224; the flip runs on
the device (augment.kind = 'torchvision' with its other transforms off). Evaluation resizes the
whole photo to 224x224 (torchvision resizes to 256 and takes the central 224). Not trained here: this
machine has neither the data nor an accelerator; tests/test_data_streaming.py runs a step of it on
a small generated folder of the same layout. Set --config.train.batch_size and
--config.train.learning_rate together (0.1 x batch / 256).
"""

from cnnjax.config import base_config


def get_config():
  config = base_config()
  data = config.data
  data.source = 'image_folder'
  data.name = 'imagenet2012'
  data.dir = ''  # Required: --config.data.dir=IMAGENET.
  data.train_split = 'train'
  data.val_split = 'val'
  data.test_split = 'val'
  data.num_classes = 1000
  data.image_size = (224, 224)
  data.pixel_scale = 1.0  # 0..255: the model's 'torch' preprocessing expects pixels.
  data.streaming = 'true'
  data.streaming_workers = 8
  data.random_resized_crop = (0.08, 1.0, 3 / 4, 4 / 3)  # At decode, from the full-size photo.

  model = config.model
  model.name = 'resnet50'
  model.input_shape = (224, 224, 3)
  model.num_outputs = 1000
  model.preprocess = 'torch'

  augment = config.augment
  augment.kind = 'torchvision'
  flip = augment.torchvision  # The horizontal flip only; the crop was taken at decode.
  flip.rotation = 0.0
  flip.crop_scale = (1.0, 1.0)
  flip.crop_ratio = (1.0, 1.0)
  flip.horizontal_flip = 0.5
  flip.shear = 0.0
  flip.brightness = 0.0
  flip.contrast = 0.0
  flip.saturation = 0.0
  flip.normalize_mean = ()  # The model normalizes ('torch': ImageNet mean / std).
  flip.normalize_std = ()
  flip.value_range = (0.0, 255.0)

  train = config.train
  train.loss = 'sparse_categorical_crossentropy'
  train.optimizer = 'sgd'
  train.momentum = 0.9
  train.learning_rate = 0.1
  train.schedule = 'warmup_cosine'
  train.warmup_epochs = 5.0
  train.weight_decay = 1e-4
  train.label_smoothing = 0.1
  train.batch_size = 256
  train.eval_batch_size = 256
  train.epochs = 90
  train.checkpoint_every_minutes = 20.0
  return config
