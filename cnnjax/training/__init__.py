"""Training: the train state, the pure step bodies and their parallel wrappers, and the loop.

- `train_state`: parameters, BatchNorm statistics, optimizer state, step and random key;
- `steps`: the pure train and eval step bodies; `parallel`: the single-device, sharded-jit and
  pmap wrappers around them;
- `optimizers` and `param_groups`: optax optimizers, schedules and frozen / scaled parameter
  groups; `losses`: the objectives;
- `checkpointing`, `history`, `learning_curves`, `progress`: what a run writes and shows;
- `workdir_lock` and `interrupts`: one live run per workdir; SIGTERM / SIGINT stop at a
  checkpoint;
- `train`: `train_and_evaluate(config, workdir)`, the loop `launch.py` runs.
"""
