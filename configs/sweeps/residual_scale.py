"""The paper's residual scaling on ImageNet: Inception-ResNet-v2, scaled or not.

The paper ("Scaling of the Residuals") found that residual networks with
more than about 1000 filters could "die" early in training (the last layer
before the average pool giving only zeros), and that scaling the residuals
by a factor between 0.1 and 0.3 before adding them stabilised training. This
sweep trains configs/inception_resnet_v2.py's recipe (100 epochs on one host
of 8 GPUs, one evaluation per epoch) with the A, B and C blocks' residuals
unscaled (1.0) or scaled by 0.1, 0.2 or 0.3, three seeds each: 12 runs.

  python -m inception.sweep --sweep=configs/sweeps/residual_scale.py \
      --root=/runs/residual_scale --launcher=slurm
  sbatch /runs/residual_scale/sweep.sbatch
  python -m inception.sweep --summarize --root=/runs/residual_scale

`train/zero_fraction` (final and peak) in the summary is the paper's symptom.
"""

import ml_collections

from configs import inception_resnet_v2


def get_config() -> ml_collections.ConfigDict:
  """Returns the base configuration of every point."""
  return inception_resnet_v2.get_config()


def get_grid() -> dict:
  """Returns {config field: values}; the last field varies fastest."""
  return {
      # One factor for the A, B and C blocks; 1.0 is no scaling (the released
      # network scales by 0.17, 0.10 and 0.20).
      'model_overrides.residual_scales': [
          (1.0, 1.0, 1.0), (0.1, 0.1, 0.1), (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)],
      'seed': [0, 1, 2],
  }


def get_slurm() -> dict:
  """Returns the #SBATCH options of each point: one node of 8 GPUs."""
  return {
      'nodes': 1,
      # One process per GPU; JAX reads SLURM's variables (see the script).
      'ntasks-per-node': 8,
      'gpus-per-node': 8,
      'cpus-per-task': 12,
      # An assumption to set to the cluster's limit. A task that reaches it
      # is sent SIGTERM 5 minutes before, saves a checkpoint and stops; the
      # same script submitted again resumes it.
      'time': '3-00:00:00',
      'signal': 'TERM@300',
  }
