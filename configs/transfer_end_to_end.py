"""Workflow 4: everything trains, the pretrained base at 0.1x the head's learning rate.

As the PyTorch lecture fine-tunes a whole ResNet18: the pretrained base (block1..block3) at a
tenth of the learning rate of the new head, with augmentation.

    python launch.py --config configs/transfer_end_to_end.py --workdir runs/transfer/end_to_end

Measured on 2026-11-23 (2-core AMD EPYC CPU, no GPU, jax 0.10.2): test accuracy 0.8552
(0.8500-0.8580), 27 s of training, mean (min-max) over seeds 0-2; the whole table is in
docs/transfer_results.md.
"""

from configs import transfer_fashion_mnist


def get_config():
  config = transfer_fashion_mnist.get_config()
  config.model.init_from = transfer_fashion_mnist.PRETRAIN_WORKDIR
  config.model.init_layers = ('block.*',)
  config.train.param_groups = ('block.*=0.1', '.*=1')
  transfer_fashion_mnist.augment_fashion(config)
  return config
