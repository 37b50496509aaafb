"""A tiny run for tests and smoke checks: quick to compile and to run on a CPU.

A small Inception-ResNet-v1 (one block per stage, a quarter of the filters,
75x75 inputs; the residual network that compiles fastest) on slices of the
built-in dataset, for a few steps with frequent logging and checkpoints, so
every part of the training system runs.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  """Returns the tiny configuration."""
  config = default.get_config()
  config.model = 'inception_resnet_v1'
  config.model_overrides.repeats = (1, 1, 1)
  config.model_overrides.width_multiplier = 0.25
  # Short runs need BatchNorm statistics that follow the weights quickly.
  config.model_overrides.bn_momentum = 0.9
  config.dataset = 'builtin'
  config.train_split = 'train[:512]'
  # Not a multiple of the batch, so evaluation pads and masks its last batch.
  config.eval_split = 'validation[:40]'
  config.image_size = 75
  # The built-in images have 100 to 200 pixels a side: crops of more than
  # 128 x 128 pixels are resized on the host, the others on the device.
  config.train_canvas_size = 128
  config.batch_size = 16
  config.reference_batch_size = 16
  config.num_train_steps = 8
  config.ema_decay = 0.9
  config.log_every_steps = 2
  config.checkpoint_every_steps = 4
  config.shuffle_window = 512
  return config
