"""Inception-v4 (paper Figures 3-9), without an auxiliary head, as drawn.

The ImageNet recipe comes from configs/imagenet.py; this file picks the network.
"""

import ml_collections

from configs import imagenet


def get_config() -> ml_collections.ConfigDict:
  """Returns the configuration."""
  config = imagenet.get_config()
  config.model = 'inception_v4'
  # The paper's v4 has no auxiliary head (TF-slim's release adds one).
  config.aux_logits = False
  return config
