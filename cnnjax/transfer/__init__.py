"""Transfer learning: pretrained initialization, frozen partitions, feature extraction.

The pieces live where the training loop needs them, and this package gathers the transfer-specific
ones:

- freezing and per-group learning rates: `train.param_groups` (`cnnjax.training.optimizers`: an
  `optax.partition` with `set_to_zero` for frozen parameters; `cnnjax.training.steps` differentiates the
  trainable parameters only);
- `pretrained`: `model.init_from` / `model.init_layers`, weights from a VGG16 file or a cnnjax run;
- `features`: fast feature extraction (`train.cache_features`), the conv base run once and cached;
- `experiment`: the four workflows against training from scratch, on a held-out pair of
  Fashion-MNIST classes (`python -m cnnjax.transfer.experiment --workdir runs/transfer`).

The workflows of the reference, as configs (`configs/vgg16_*.py` for VGG16 on cats vs dogs,
`configs/transfer_fashion_mnist.py` for the offline experiment):

1. fast feature extraction: base frozen, `train.cache_features=True`;
2. frozen base + new head trained end to end with augmentation: `param_groups` freezing the base,
   `augment.kind` set;
3. fine-tuning in two phases: phase 1 is workflow 2; phase 2 starts from phase 1's best checkpoint
   (`model.init_from=<phase 1 workdir>`, `init_layers=('.*',)`) with the last block unfrozen and
   RMSprop at a small learning rate;
4. end to end with the base at 0.1x the head's learning rate: `param_groups=('block.*=0.1',
   '.*=1')`.
"""

from cnnjax.transfer.features import extract_features, feature_datasets
from cnnjax.transfer.pretrained import init_from_pretrained, load_pretrained

__all__ = ['extract_features', 'feature_datasets', 'init_from_pretrained', 'load_pretrained']
