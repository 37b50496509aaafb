"""Claim (b): wide residual networks "die" unless the residuals are scaled.

  python -m inception.sweep --sweep=configs/sweeps/residual_scale_wide.py \
      --root=/tmp/residual_scale_wide

The paper saw residual Inception networks with more than about 1000 filters
die early in training (the last layer before the average pool giving only
zeros) unless each residual was scaled by 0.1 to 0.3 before the sum. Here
Inception-ResNet-v2 with half of the filters, so its C blocks carry 1040
channels, on the harder built-in dataset at 75x75 (configs/demo_hard.py's
recipe): the A, B and C residuals unscaled (1.0) or scaled by 0.1, 0.2 or
0.3, seeds 0 and 1, 8 runs. `train/zero_fraction` (python -m inception.plot
--panels=loss,zero_fraction) is the paper's symptom. The paper's other
remedy, a warm-up at a low learning rate, is
configs/sweeps/residual_warmup_wide.py.
"""

import ml_collections

from configs import demo_hard


def get_config() -> ml_collections.ConfigDict:
  """Returns the base configuration of every point."""
  config = demo_hard.get_config()
  config.model = 'inception_resnet_v2'
  config.model_overrides.width_multiplier = 0.5
  config.model_overrides.repeats = (1, 1, 1)
  config.num_epochs = 20.0
  return config


def get_grid() -> dict:
  """Returns {config field: values}; the last field varies fastest."""
  return {
      'model_overrides.residual_scales': [
          (1.0, 1.0, 1.0), (0.1, 0.1, 0.1), (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)],
      'seed': [0, 1],
  }
