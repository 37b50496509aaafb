"""Inception-ResNet-v1 (paper Figures 10-14), which has no auxiliary head.

The ImageNet recipe comes from configs/imagenet.py; this file picks the network.
"""

import ml_collections

from configs import imagenet


def get_config() -> ml_collections.ConfigDict:
  """Returns the configuration."""
  config = imagenet.get_config()
  config.model = 'inception_resnet_v1'
  config.aux_logits = False
  return config
