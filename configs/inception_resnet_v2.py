"""Inception-ResNet-v2 as released (TF-slim, Keras, timm), with its aux head.

The ImageNet recipe comes from configs/imagenet.py; this file picks the network.
"""

import ml_collections

from configs import imagenet


def get_config() -> ml_collections.ConfigDict:
  """Returns the configuration."""
  config = imagenet.get_config()
  config.model = 'inception_resnet_v2'
  # The released network was trained with TF-slim's auxiliary head.
  config.aux_logits = True
  # TF-slim's IRv2 arg scope regularises conv and fully-connected biases too.
  config.weight_decay_param_names = ('kernel', 'bias')
  return config
