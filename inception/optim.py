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
  i.e. `wd * w` added to the gradient before clipping and RMSProp. The
  gradient carries it (`add_decayed_weights`); `l2_loss` gives its value, so
  that training can log it beside the data loss. `decay_mask` says which
  parameters it covers.
- The exponential moving average of the weights that evaluation uses, with
  TensorFlow's `num_updates` rule so that short runs average sensibly.

Everything here is free of TensorFlow and CLU.
"""

from typing import Any, Sequence

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


# The name `decay_mask` gives a BatchNorm offset, which Flax calls 'bias' as it
# does a layer's bias.
BATCHNORM_BIAS = 'bn_bias'


def _decay_names(flat: dict) -> dict:
  """The name `decay_mask` matches for each leaf of a flattened parameter tree.

  A 'bias' beside a 'kernel' in the same module belongs to a convolution or a
  dense layer and keeps its name; a 'bias' without one is a BatchNorm offset
  (beta) and is named `BATCHNORM_BIAS`. Every other leaf keeps its own name.
  """
  with_kernel = {path[:-1] for path in flat if path[-1] == 'kernel'}

  def name(path):
    if path[-1] == 'bias' and path[:-1] not in with_kernel:
      return BATCHNORM_BIAS
    return path[-1]

  return {path: name(path) for path in flat}


def decay_mask(params, names: Sequence[str]):
  """Marks the parameters that weight decay covers.

  A parameter is marked when its name is in `names`. Its name is its own (the
  last path part, e.g. 'kernel', or 'scale' for a learned BatchNorm scale),
  with one exception that keeps layer biases and BatchNorm offsets apart, as
  TF-slim does (both are called 'bias' in Flax):

  - 'bias' marks the biases of convolutions and dense layers, i.e. a 'bias'
    that sits beside a 'kernel' in its module (the residual projections and
    shortcuts, the classifiers). It never marks a BatchNorm offset.
  - 'bn_bias' marks BatchNorm offsets (beta), i.e. a 'bias' with no 'kernel'
    beside it ('bn', 'sum_bn').

  So ('kernel',) is TF-slim's v3/v4 recipe and ('kernel', 'bias') its
  Inception-ResNet-v2 recipe; neither decays BatchNorm.

  Args:
    params: a nested dict of parameters (arrays or shapes).
    names: the names to decay, e.g. ('kernel',) for conv and dense weights.

  Returns:
    A tree of booleans with the structure of `params`.
  """
  names = frozenset(names)
  flat = flax.traverse_util.flatten_dict(params)
  leaf_names = _decay_names(flat)
  return flax.traverse_util.unflatten_dict(
      {path: leaf_names[path] in names for path in flat})


def l2_loss(params, weight_decay: float,
            weight_decay_param_names: Sequence[str]) -> jax.Array:
  """The L2 penalty whose gradient the optimizer's weight decay adds.

  0.5 * weight_decay * (sum of the squares of the parameters `decay_mask`
  marks), so `jax.grad` of it is `weight_decay * w` on exactly the parameters
  that `create_optimizer` decays. It is for logging: the optimizer applies the
  decay itself, so adding this to the training loss would decay twice.

  Args:
    params: a nested dict of parameters.
    weight_decay: L2 coefficient; 0 (or less) for none, as in
      `create_optimizer`.
    weight_decay_param_names: the names to decay (see `decay_mask`).

  Returns:
    The penalty, a float32 scalar; 0.0 without weight decay.
  """
  total = jnp.zeros((), jnp.float32)
  if weight_decay <= 0:
    return total
  flat = flax.traverse_util.flatten_dict(params)
  mask = flax.traverse_util.flatten_dict(
      decay_mask(params, weight_decay_param_names))
  for path, decayed in mask.items():
    if decayed:
      total += jnp.sum(jnp.square(flat[path].astype(jnp.float32)))
  return 0.5 * weight_decay * total


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
    weight_decay_param_names: the names to decay (see `decay_mask`).

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


def optimizer_from_config(schedule: optax.Schedule,
                          config: Any) -> optax.GradientTransformation:
  """`create_optimizer` with the RMSProp, clipping and decay a config sets.

  Args:
    schedule: the learning-rate schedule.
    config: a ConfigDict with the fields of configs/default.py's Training
      section (rmsprop_*, grad_clip_norm, weight_decay,
      weight_decay_param_names).

  Returns:
    The Optax transformation.
  """
  return create_optimizer(
      schedule, rmsprop_decay=config.rmsprop_decay,
      rmsprop_momentum=config.rmsprop_momentum,
      rmsprop_epsilon=config.rmsprop_epsilon,
      grad_clip_norm=config.grad_clip_norm, weight_decay=config.weight_decay,
      weight_decay_param_names=config.weight_decay_param_names)


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

