"""Record 1 on Fashion-MNIST: the best test accuracy in no more wall time than the main job's.

`bn_convnet` (cnnjax/models/bn_convnet.py: three stages of 3x3 convolution - max-pool -
BatchNorm - ReLU at 24, 48 and 96 channels, Flatten, Dense 10; 61,042 trainable parameters) for
3 epochs at batch 64, SGD with Nesterov momentum 0.9, PyTorch's one-cycle learning rate
(peak 0.05, cosine up over the first 30% of the steps, then down), L2 weight decay 5e-4 and label
smoothing 0.1; the same data, validation carve and best-epoch-by-val_loss test as the main job.

    python launch.py --config configs/fashion_mnist_speedrun.py --workdir runs/speedrun

How it was chosen, on the validation split only: prototype runs of the same training loop
(2026-11-30, the 2-core Intel Xeon, seed 0, each timed from its start; the models registered from
a scratch script, with Flax's default Dense initialization, that is not in the repository, so
these figures cannot be reproduced from it as they stand). The main job's small_convnet with
the one-cycle schedule and label smoothing reached val_accuracy 0.9193 in 5 epochs; BatchNorm
convnets of about its cost 0.9222 and 0.9272 (16/32/64 and 16/32/128 channels, pooling after
BatchNorm and ReLU); 24/48/96 channels 0.9288 (138 s), and, pooling right after each convolution
as airbench does (8-17% faster), 0.9322 in 5 epochs (108 s) and 0.9265 in 4 (79 s). What did not help (16/32/128, 5 epochs): random
horizontal flips with flip test-time augmentation (0.9218), learning rate 0.1 (0.9277), batch 32
(0.9255); nor, on 16/32/64, a moving average of the parameters with one-pixel shift views
(0.9185 against 0.9222); batch 128 at learning rate 0.1 on 24/48/96 reached 0.9290 in 5 epochs
(105 s); bfloat16 compute ran 3-4x slower than float32 on XLA:CPU. The epochs were then set by
time alone: 4 took 1.25x the main job's time (below), so 3.

Measured by `python benchmarks/fashion_mnist_speedrun.py` (5 seeds, each config launched as
above, timed from the launch to its `test_accuracy:` line, main job and speed run back to back in
alternating order; benchmarks/results/fashion-mnist-speedrun-2026-11-30.json), 2026-11-30, the
2-core Intel Xeon (Sapphire Rapids), no GPU, jax 0.10.2, flax 0.12.8:

| | wall time, s (mean; min-max) | test accuracy (mean; min-max) | reached 0.93 |
| --- | ---: | ---: | ---: |
| main job (configs/fashion_mnist.py) | 73.8; 65.2-84.8 | 0.9106; 0.9078-0.9117 | 0/5 |
| this config, 3 epochs | 72.4; 63.6-78.5 | 0.9171; 0.9146-0.9211 | 0/5 |
| the same, 4 epochs (earlier that hour) | 96.8 (1.25x the main job's 77.3) | 0.9216; 0.9193-0.9245 | 0/5 |

In the main job's time (0.98x) it gains 0.65 points; the issue's target, 0.93 in that time, is
NOT reached: this design needed 5 epochs (1.5x the time) for 0.925 on the test split in the one
prototype run that went that far. The 4-epoch figures (the same script with EPOCHS = 4):
benchmarks/results/fashion-mnist-speedrun-4-epochs-2026-11-30.json.

Searched again later that day with the committed harness, on validation only (each trial launched
with `train.evaluate_test=False`; seed 0; process settings fixed to what launch.py measured for
this config, huge pages and YNNPACK fusions off):

    python benchmarks/fashion_mnist_search.py --config configs/fashion_mnist_speedrun.py \
        --common 'tuning.huge_pages=off tuning.ynn_fusions=off' --trial '' \
        --trial 'model.first_stride=2' --trial 'model.first_stride=2 train.epochs=4' \
        --trial 'model.first_stride=2 model.widths=(32,64,128)' \
        --trial 'model.first_stride=2 model.convs_per_stage=(1,2,1)'

(benchmarks/results/fashion-mnist-search-speedrun-2026-11-30.json): this config val_accuracy
0.9243 (58.8 s from launch to exit, 48.7 s of it in the 3 training epochs); a strided first
convolution instead of the first pooling 0.9203 (45.0 s of epochs: 8% less, although its train
step alone timed 30% faster when measured as the best of 40 steps); the same for 4 epochs 0.9217
(59.9 s); with 32/64/128 channels 0.9220 (64.3 s); with two convolutions in the middle stage
0.9230 (54.1 s). A second search (benchmarks/results/fashion-mnist-search-speedrun-2-2026-11-30.txt,
its output; stopped after two trials, the first of which shared the machine with a test run):
peak learning rate 0.1 0.9257, Adam at 3e-3 0.9207. For this seed the test accuracy ran 0.8
points below the validation accuracy (this config launched as above at seed 0, that evening:
val_accuracy 0.9243, test_accuracy 0.9160), so 0.93 on test asks about 0.938 on validation: none
of these comes near it.
"""

from cnnjax.config import base_config

EPOCHS = 3


def get_config():
  config = base_config()
  config.model.name = 'bn_convnet'
  config.train.epochs = EPOCHS
  config.train.batch_size = 64
  config.train.optimizer = 'sgd'
  config.train.momentum = 0.9
  config.train.nesterov = True
  config.train.learning_rate = 0.05
  config.train.schedule = 'one_cycle'
  config.train.weight_decay = 5e-4
  config.train.label_smoothing = 0.1
  return config
