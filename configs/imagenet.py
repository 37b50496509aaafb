"""The paper's recipe for ImageNet on one host of 8 GPUs; the network configs start here.

Global batch 256 (32 per GPU, as each replica of the paper), RMSProp (decay
0.9, momentum 0.9, epsilon 1.0) at 0.045 decayed x0.94 every 2 epochs,
gradient clipping at 2.0, label smoothing 0.1, weight decay 4e-5 and a 0.9999
moving average of the weights for evaluation. Those values live in
configs/default.py; this file sets what ImageNet changes, and
configs/inception_*.py pick the network. For bfloat16 compute add
`--config.dtype=bfloat16`.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  """Returns the ImageNet configuration, with default.py's network."""
  config = default.get_config()
  config.dataset = 'imagenet2012'
  config.image_size = 299
  config.batch_size = 256
  # The v3 paper trains 100 epochs; the v4 paper does not say, so all use it.
  config.num_epochs = 100.0
  # The error curves of the paper's Figures 8 to 11: one point per epoch.
  config.eval_every_epochs = 1.0
  return config
