"""The residual-scale sweep on the CPU demo: 4 scales x 2 seeds of 1.5 epochs.

  python -m inception.sweep --sweep=configs/sweeps/residual_scale_demo.py \
      --root=/tmp/residual_scale_demo

configs/sweeps/residual_scale.py in small: the demo network of
configs/demo.py (Inception-ResNet-v2, one block per stage, a quarter of the
filters) on the built-in dataset, with the residuals of the A, B and C blocks
unscaled (1.0) or scaled by 0.1, 0.2 or 0.3, seeds 0 and 1: 8 runs of 1.5
epochs (118 steps of 64 images), evaluated on the 1000 validation images
every half epoch. The paper's instability needs wide networks and long runs;
this shows the machinery, and how the scale changes the start of training
(the point measured below ended at 59.5% top-1 error, so summarise with
e.g. --target_top1=0.7).

Measured on this project's 2-core CPU, shared with other jobs: one point
(`residual_scales=1.0,1.0,1.0__seed=0`, the command --launcher=print gives)
took 170 s from start to finish at a load average of about 2: 53 s to start
and build the network, 52 s to compile and train the first 40 steps, then
about 2.2 steps/s and 2 to 6 s per evaluation. The 8 points one after
another: about 23 minutes. With the cores busier (load average 3.5) a point
of 2 epochs took 327 s; expect up to twice as long then.
"""

import ml_collections

from configs import demo


def get_config() -> ml_collections.ConfigDict:
  """Returns the base configuration of every point."""
  config = demo.get_config()
  config.num_epochs = 1.5
  config.eval_every_epochs = 0.5
  return config


def get_grid() -> dict:
  """Returns {config field: values}; the last field varies fastest."""
  return {
      'model_overrides.residual_scales': [
          (1.0, 1.0, 1.0), (0.1, 0.1, 0.1), (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)],
      'seed': [0, 1],
  }
