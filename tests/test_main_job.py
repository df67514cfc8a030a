"""The main job exactly as the README runs it: the full Fashion-MNIST config to its target."""

import pytest

from cnnjax.training.train import train_and_evaluate

from test_summary import load_config


@pytest.mark.slow
def test_main_job_reaches_its_target_accuracy(tmp_path, tiny_config):
  config = load_config('fashion_mnist')
  config.data.dir = tiny_config.data.dir  # The same data directory the fixture checked.
  result = train_and_evaluate(config, str(tmp_path / 'fashion_mnist'))
  assert result['test_accuracy'] >= 0.905
