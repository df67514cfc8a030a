"""Record 2 on Fashion-MNIST: the best test accuracy this codebase reaches on the 2-core CPU.

`bn_convnet` widened and deepened: three stages of two 3x3 convolutions (32, 64, 128 channels;
conv - max-pool - BatchNorm - ReLU, then conv - BatchNorm - ReLU), Flatten, Dense 10: 299,306
parameters, 298,410 of them trainable (the rest BatchNorm's moving statistics). Trained for 96
epochs with everything the Fashion-MNIST speed runs of airbench's kind use, each a config field
of this codebase: random crops with 2 pixels of padding and horizontal flips (torchvision's
RandomCrop and RandomHorizontalFlip), random erasing (Zhong et al. 2017, torchvision's
RandomErasing), label smoothing 0.1, SGD with Nesterov momentum 0.9 and L2 weight decay 5e-4
under PyTorch's one-cycle schedule (peak 0.1), batch 128, a moving average of the parameters and
BatchNorm statistics (decay 0.999) for validation, the choice of the best epoch and the test, and
test-time augmentation (the mean of the logits of the image, its mirror and their one-pixel
shifts). The main job's data: 10% of the training images held out (seeded) for validation, the
best epoch by val_loss tested once on the 10,000 test images.

    python launch.py --config configs/fashion_mnist_best.py --workdir runs/fashion_mnist_best

How it was chosen, on the validation split only (`train.evaluate_test=False`: no test score
computed; seed 0; process settings fixed to huge pages and YNNPACK fusions off):

    python benchmarks/fashion_mnist_search.py --config configs/fashion_mnist_best.py \
        --common 'tuning.huge_pages=off tuning.ynn_fusions=off' --trial 'FIELD=VALUE ...'

| trial | val_accuracy (best epoch) | wall time | 2-core machine |
| --- | ---: | ---: | --- |
| 64/128/256 channels, 24 epochs | 0.9495 (24) | 54.8 min | Intel Xeon (Sapphire Rapids) [1] |
| 32/64/128, 48 epochs | 0.9508 (48) | 32.3 min | Intel Xeon, idle |
| 32/64/128, 96 epochs (this config) | 0.9538 (96) | 38.4 min | AMD EPYC (family 26) [2] |
| 48/96/192, 48 epochs | 0.9502 (48) | 38.7 min | AMD EPYC (family 26) [4] |
| 32/64/128, 192 epochs | 0.9532 (189) | 92.8 min | AMD EPYC (family 26) [5] |

[1] test runs of mine shared the machine for about 10 of its minutes; [2] a few minutes of
them. Results files (benchmarks/results/): fashion-mnist-search-best-2026-11-30.json,
fashion-mnist-search-best-2-2026-11-30.json, fashion-mnist-search-best-3-2026-11-30.json,
fashion-mnist-search-best-4-2026-12-01.json ([4] 2026-12-01, tests of mine beside it for about 5
of its minutes), fashion-mnist-search-best-5-2026-12-01.json ([5] 2026-12-01 04:47-06:20 UTC,
the machine otherwise idle, run with `--keep runs/search-best-5`; that run's history.json, with
the training accuracy of every epoch, is fashion-mnist-search-best-5-history-2026-12-01.json).
(2026-11-30 to 12-01, 2-core machines, jax 0.10.2, flax 0.12.8; an earlier scratch exploration,
not in the repository: 32/64/128 without erasing for 20 epochs, 0.9453.) Longer training beat
width at equal compute; doubling 48 epochs to 96 gained 0.3 points, doubling again to 192
gained nothing (0.9532 at the best epoch by val_loss, 0.9540 at most in any epoch, against 96
epochs' 0.9538) while the training accuracy rose past the validation accuracy (0.9650 against
0.9537 in the last epoch): at 192 epochs the model begins to overfit, so 96 stays the choice.
The validation accuracy rises only as the one-cycle schedule anneals (0.93-0.94 from epoch 15 to 65
of 96, then up to 0.9538), so the best epoch is the last (or near it). On the speed run's seed 0 the
test accuracy came out 0.8 points below the validation accuracy; if the gap is alike here, 0.955 on
test asks about 0.963 on validation, more than this model family reached in the compute tried.

Result, the test split evaluated once per seed at the end of its run (seeds 0 and 1 2026-11-30
23:53 to 2026-12-01 01:14 UTC, seed 2 2026-12-01 01:51 to 02:28 UTC, each on the 2-core AMD
EPYC (family 26), jax 0.10.2, flax 0.12.8):

    python benchmarks/fashion_mnist_best.py --seeds 0,1,2 \
        --out benchmarks/results/fashion-mnist-best-2026-11-30.json

| seed | test_accuracy | val_accuracy (best epoch) | launch to test_accuracy | training epochs |
| --- | ---: | ---: | ---: | ---: |
| 0 | 0.9491 | 0.9538 (96) | 40.8 min [3] | 33.5 min |
| 1 | 0.9490 | 0.9528 (96) | 37.3 min | 31.0 min |
| 2 | 0.9500 | 0.9533 (96) | 36.6 min | 30.4 min |
| mean (spread) | 0.9494 (0.9490-0.9500) | | 38.2 min | |

[3] the first launch of this config on this machine: it also measured its process settings and
convolutions; tests of mine (nice 19) ran beside it for about 25 of its minutes (part of them
idle in a hang); its epochs took 18.0-25.6 s, the trial's 17.6-36.3 s (a few minutes of tests
beside it too). Seed 0 repeats the validation trial above bit for bit (the same val_accuracy and
val_loss in all 96 epochs). Seed 2 ran in a later session
(`python benchmarks/fashion_mnist_best.py --seeds 2 --add --out
benchmarks/results/fashion-mnist-best-2026-11-30.json`), beside nothing but half a minute of
small timing scripts of mine at its start. The target, 0.955 on test over 3 seeds,
is NOT met: the seeds scored 0.949-0.950 on test, 0.3-0.5 points below their validation
accuracy, so 0.955 asks about 0.959 on validation. The training accuracy (on the augmented
batches) ended at 0.956-0.958, hardly above the validation accuracy, which suggested a model
short of capacity or epochs. Neither helped: 1.5x the width (2.25x the compute) for 48 epochs
gave 0.9502 against this width's 0.9508, and 192 epochs gave 0.9532 against 96's 0.9538 (its
training accuracy reaching 0.965, above the validation accuracy). With this recipe the family
levels off at 0.953-0.954 on validation, about half a point short of what 0.955 on test asks.
The published results above it come from far larger networks trained far longer (Zhong et al.'s
random erasing paper: a WRN-28-10, 36.5M parameters, 96.35% on Fashion-MNIST with erasing, 300
epochs), beyond the 2-core CPU's hour or two. Even the smallest residual net of that kind, the
CIFAR ResNet-20 (`model.name='resnet_small'`, `model.stage_sizes=(3, 3, 3)`,
`model.widths=(16, 32, 64)`), trains an epoch of this recipe in 88.8 s against this config's
22.6 s, measured one after the other (2026-12-01 06:34-06:41 UTC, the AMD EPYC, the second of two
epochs each; `python benchmarks/fashion_mnist_search.py --config configs/fashion_mnist_best.py
--common 'tuning.huge_pages=off tuning.ynn_fusions=off train.epochs=2' --trial '' --trial
'model.name=resnet_small model.stage_sizes=(3,3,3) model.widths=(16,32,64)
model.convs_per_stage=None'`, benchmarks/results/fashion-mnist-search-epoch-cost-2026-12-01.json):
96 epochs of it would take about 2.5 hours a run.
"""

from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.model.name = 'bn_convnet'
  config.model.widths = (32, 64, 128)
  config.model.convs_per_stage = 2
  config.train.epochs = 96
  config.train.batch_size = 128
  config.train.optimizer = 'sgd'
  config.train.momentum = 0.9
  config.train.nesterov = True
  config.train.learning_rate = 0.1
  config.train.schedule = 'one_cycle'
  config.train.weight_decay = 5e-4
  config.train.label_smoothing = 0.1
  config.train.ema_decay = 0.999
  config.train.tta_flip = True
  config.train.tta_shift = 1
  augment = config.augment
  augment.kind = 'torchvision'
  t = augment.torchvision
  t.crop_padding = 2
  t.horizontal_flip = 0.5
  t.erasing = 0.5
  # Everything else of the vocabulary off: no affine resampling, no colour jitter, no
  # normalization (the images stay in [0, 1], as in the main job).
  t.rotation, t.shear, t.crop_scale = 0.0, 0.0, (1.0, 1.0)
  t.brightness, t.contrast, t.saturation = 0.0, 0.0, 0.0
  t.normalize_mean, t.normalize_std = (), ()
  return config
