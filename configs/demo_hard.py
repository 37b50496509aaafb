"""The CPU demo network on the harder built-in dataset ('builtin_hard').

`python main.py --config=configs/demo_hard.py --workdir=/tmp/demo_hard` trains
configs/demo.py's network (a small Inception-ResNet-v2 at 75x75) on 25
classes of filled shapes among clutter
(inception/builtin_hard_dataset.py), which takes tens of epochs instead of
a few. The experiments of docs/experiments.md (configs/sweeps/) start from
it.
"""

import ml_collections

from configs import demo


def get_config() -> ml_collections.ConfigDict:
  """Returns the configuration."""
  config = demo.get_config()
  config.dataset = 'builtin_hard'
  # The objects cover 3 to 18% of an image (inception/builtin_hard_dataset.py):
  # small crops would often miss them all.
  config.crop_area_range = (0.35, 1.0)
  config.num_epochs = 30.0
  config.checkpoint_every_steps = 500
  return config
