"""Claim (b), the paper's other remedy: unscaled, after a warm-up.

  python -m inception.sweep --sweep=configs/sweeps/residual_warmup_wide.py \
      --root=/tmp/residual_warmup_wide

The paper also tried "two-phase training", a first phase at a very low
learning rate, and found that it did not keep very wide networks alive.
The network and recipe of configs/sweeps/residual_scale_wide.py with
unscaled residuals (1.0), the learning rate rising linearly from 0 to its
peak over the first 3 epochs (`warmup_epochs`), seeds 0 and 1: 2 runs,
compared with that sweep's unscaled and scaled points.
"""

import ml_collections

from configs.sweeps import residual_scale_wide


def get_config() -> ml_collections.ConfigDict:
  """Returns the base configuration of every point."""
  config = residual_scale_wide.get_config()
  config.model_overrides.residual_scales = (1.0, 1.0, 1.0)
  return config


def get_grid() -> dict:
  """Returns {config field: values}; the last field varies fastest."""
  return {'warmup_epochs': [3.0], 'seed': [0, 1]}
