"""The CPU demo: a small Inception-ResNet-v2 on the built-in dataset.

`python main.py --config=configs/demo.py --workdir=/tmp/demo` trains and
evaluates in a few minutes on a 2-core CPU, with the paper's recipe (TF-style
RMSProp, staircase decay, clipping, label smoothing, weight decay, the
auxiliary head, a moving average of the weights for evaluation). Only the
size of the network and of the run, and the rates that depend on the length
of the run, differ from the ImageNet configs.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  """Returns the demo configuration."""
  config = default.get_config()
  config.model = 'inception_resnet_v2'
  config.aux_logits = True
  # One block per stage, a quarter of the filters: 0.99M parameters with the
  # auxiliary head.
  config.model_overrides.repeats = (1, 1, 1)
  config.model_overrides.width_multiplier = 0.25
  # The released momentum (0.9997) needs tens of thousands of steps to settle
  # the BatchNorm statistics; the demo has hundreds.
  config.model_overrides.bn_momentum = 0.99
  config.dataset = 'builtin'
  config.image_size = 75
  # The built-in images have at most 200 x 200 pixels: all crops are resized
  # on the device.
  config.train_canvas_size = 200
  config.batch_size = 64
  # The paper's 0.045 at this batch, decayed every 2 epochs as in the paper.
  config.learning_rate = 0.045
  config.reference_batch_size = 64
  config.num_epochs = 8.0
  # A short run forgets its start quickly; 0.9999 would average over far
  # more steps than the run has (TF's num_updates rule applies early on too).
  config.ema_decay = 0.99
  # An error curve with a point per epoch (python -m inception.plot).
  config.eval_every_epochs = 1.0
  config.log_every_steps = 50
  config.checkpoint_every_steps = 200
  return config
