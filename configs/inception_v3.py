"""Inception-v3, the paper's baseline, with its auxiliary head (section 4).

The ImageNet recipe comes from configs/imagenet.py; this file picks the network.
"""

import ml_collections

from configs import imagenet


def get_config() -> ml_collections.ConfigDict:
  """Returns the configuration."""
  config = imagenet.get_config()
  config.model = 'inception_v3'
  # The v3 paper trains with its (BatchNorm) auxiliary classifier.
  config.aux_logits = True
  return config
