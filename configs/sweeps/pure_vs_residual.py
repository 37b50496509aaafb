"""Claim (a): residual connections train faster than pure Inception networks.

  python -m inception.sweep --sweep=configs/sweeps/pure_vs_residual.py \
      --root=/tmp/pure_vs_residual

The paper's two pairs of similar cost, Inception-v3 against
Inception-ResNet-v1 and Inception-v4 against Inception-ResNet-v2 (its
Figures 8 to 11), at full depth but a quarter of the filters (every filter
count times 0.25, so each pair keeps its relative cost), at 75x75 on the
harder built-in dataset (configs/demo_hard.py's recipe), seeds 0 and 1:
8 runs, each evaluated every epoch. No auxiliary heads: Inception-ResNet-v1
has none. docs/experiments.md gives each network's FLOPs (XLA's cost
analysis), the commands and the results.
"""

import ml_collections

from configs import demo_hard


def get_config() -> ml_collections.ConfigDict:
  """Returns the base configuration of every point."""
  config = demo_hard.get_config()
  config.model_overrides.repeats = None  # the networks' own depth
  config.model_overrides.width_multiplier = 0.25
  config.aux_logits = False
  return config


def get_grid() -> dict:
  """Returns {config field: values}; the last field varies fastest."""
  return {
      'model': ['inception_v3', 'inception_resnet_v1', 'inception_v4',
                'inception_resnet_v2'],
      'seed': [0, 1],
  }
