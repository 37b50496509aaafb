"""The paper's optimisation recipe as Optax transforms and small pure helpers.

- The learning-rate schedule: a peak rate decayed by a constant factor every
  few epochs (staircase, as in the paper: x0.94 every 2 epochs), with an
  optional linear warm-up.
- The optimizer: weight decay on the named parameters, clipping by global norm,
  then RMSProp in TensorFlow's semantics, which the paper used:

      ms  <- decay * ms + (1 - decay) * g**2        (ms starts at 1)
      mom <- momentum * mom + lr * g / sqrt(ms + eps)
      w   <- w - mom

  Optax's `rmsprop` gives exactly this with `eps_in_sqrt=True` and
  `initial_scale=1.0`; it scales by the learning rate before the momentum
  trace, as TF does.
- Weight decay as TF-slim applies it: an L2 term `wd/2 * |w|^2` in the loss,
  i.e. `wd * w` added to the gradient before clipping and RMSProp.
- The exponential moving average of the weights that evaluation uses, with
  TensorFlow's `num_updates` rule so that short runs average sensibly.

Everything here is free of TensorFlow and CLU.
"""

from typing import Sequence

import flax.traverse_util
import jax
import jax.numpy as jnp
import optax

# TensorFlow's RMSProp starts its mean-square accumulator at one (PyTorch: 0);
# with epsilon 1.0 inside the root this keeps the first steps small.
TF_RMSPROP_INITIAL_SCALE = 1.0


def learning_rate_schedule(peak_learning_rate: float, steps_per_epoch: float,
                           decay_rate: float, decay_epochs: float,
                           warmup_epochs: float) -> optax.Schedule:
  """Staircase exponential decay with optional linear warm-up.

  lr(step) = peak * min(1, step / warmup_steps)
                  * decay_rate ** floor(step / (decay_epochs * steps_per_epoch))

  The decay counts from step 0, so warm-up does not shift the staircase.

  Args:
    peak_learning_rate: the rate after warm-up, already scaled for the batch.
    steps_per_epoch: training steps per pass over the training split.
    decay_rate: factor applied at every stair (paper: 0.94).
    decay_epochs: epochs per stair (paper: 2).
    warmup_epochs: length of the linear warm-up; 0 for none.

  Returns:
    A function from the (integer) step to the learning rate.
  """
  decay_steps = decay_epochs * steps_per_epoch
  warmup_steps = warmup_epochs * steps_per_epoch

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    stairs = jnp.floor(step / decay_steps)
    lr = peak_learning_rate * jnp.power(decay_rate, stairs)
    if warmup_steps > 0:
      lr = lr * jnp.minimum(1.0, step / warmup_steps)
    return lr

  return schedule


def decay_mask(params, names: Sequence[str]):
  """Marks the parameters whose own name (last path part) is in `names`.

  Args:
    params: a nested dict of parameters.
    names: leaf names to decay, e.g. ('kernel',) for conv and dense weights.

  Returns:
    A tree of booleans with the structure of `params`.
  """
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict(
      {path: path[-1] in names for path in flat})


def create_optimizer(schedule: optax.Schedule, *, rmsprop_decay: float,
                     rmsprop_momentum: float, rmsprop_epsilon: float,
                     grad_clip_norm: float, weight_decay: float,
                     weight_decay_param_names: Sequence[str]
                     ) -> optax.GradientTransformation:
  """Weight decay, clipping by global norm, then TF-style RMSProp.

  Args:
    schedule: the learning-rate schedule.
    rmsprop_decay: decay of the mean-square accumulator (paper: 0.9).
    rmsprop_momentum: momentum (paper: 0.9).
    rmsprop_epsilon: epsilon, added inside the square root (paper: 1.0).
    grad_clip_norm: global-norm threshold (paper: 2.0); 0 for none.
    weight_decay: L2 coefficient (TF-slim: 4e-5); 0 for none.
    weight_decay_param_names: leaf names that are decayed.

  Returns:
    The Optax transformation; its updates are added to the parameters.
  """
  names = tuple(weight_decay_param_names)
  parts = []
  if weight_decay > 0:
    parts.append(optax.add_decayed_weights(
        weight_decay, mask=lambda params: decay_mask(params, names)))
  if grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(grad_clip_norm))
  parts.append(optax.rmsprop(
      schedule, decay=rmsprop_decay, eps=rmsprop_epsilon,
      initial_scale=TF_RMSPROP_INITIAL_SCALE, eps_in_sqrt=True,
      momentum=rmsprop_momentum))
  return optax.chain(*parts)


def ema_decay_at(step: jax.Array, max_decay: float) -> jax.Array:
  """Decay of the weight average after `step` updates (TF's num_updates rule).

  TensorFlow's ExponentialMovingAverage with `num_updates` uses
  min(decay, (1 + n) / (10 + n)), so the average forgets its random start
  quickly; the paper's "running average of the parameters" is TF's.

  Args:
    step: number of updates done so far.
    max_decay: the configured decay (paper-era default: 0.9999); 0 makes the
      average equal the latest weights.

  Returns:
    The decay to use for this update, a float32 scalar.
  """
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(max_decay, (1.0 + step) / (10.0 + step))


def update_ema(average, latest, decay: jax.Array):
  """One step of the exponential moving average: d * average + (1-d) * latest.

  Args:
    average: the current average, any tree of float arrays.
    latest: the newest values, with the structure of `average`.
    decay: the decay for this update (see `ema_decay_at`).

  Returns:
    The new average.
  """
  return optax.incremental_update(latest, average, 1.0 - decay)

