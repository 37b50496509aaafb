"""What a training run will do, checked and worked out before anything compiles.

`make_plan` is the one place where derived values come from the config: the
learning rate scaled by the global batch, steps per epoch, the number of
training steps, the per-device batch and the BatchNorm groups. It also checks
every setting a run cannot survive, and raises `ConfigError` with one line that
names the field and the fix, so that a bad config fails in seconds rather than
after compilation.
"""

import dataclasses
import math
from typing import Any, Callable

from inception import models

_DTYPES = ('float32', 'bfloat16')
# Kept here rather than imported: inception/preprocessing.py needs TensorFlow,
# and the plan checks run before it is imported.
_VIEWS = ('single', '12', '144')
_EVAL_CROPS = ('central', 'resize_shorter')
_EVAL_WEIGHTS = ('ema', 'raw')


class ConfigError(ValueError):
  """A config setting that cannot work; the message names the field and fix."""


@dataclasses.dataclass(frozen=True)
class Plan:
  """Derived quantities of a run.

  Attributes:
    num_classes: classifier width, from the dataset.
    num_train_examples: size of the training split.
    num_eval_examples: size of the evaluation split.
    num_devices: devices over all processes.
    per_device_batch: images per device per step.
    steps_per_epoch: training steps per pass over the training split.
    num_train_steps: steps to train in total.
    learning_rate: peak rate, scaled linearly by batch_size /
      reference_batch_size.
    batch_norm_groups: groups whose statistics BatchNorm uses (1: global batch).
    eval_every_steps: steps between evaluations (eval_every_epochs in steps,
      not rounded; 0: only at the end). See `is_eval_step`.
  """
  num_classes: int
  num_train_examples: int
  num_eval_examples: int
  num_devices: int
  per_device_batch: int
  steps_per_epoch: float
  num_train_steps: int
  learning_rate: float
  batch_norm_groups: int
  eval_every_steps: float

  def is_eval_step(self, step: int) -> bool:
    """Whether training evaluates after `step`: the first step at or after
    each multiple of eval_every_epochs, and the last step."""
    every = self.eval_every_steps
    return step == self.num_train_steps or (
        every > 0 and math.floor(step / every) > math.floor((step - 1) / every))


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def check_config(config: Any, num_devices: int) -> None:
  """Checks the settings that do not need the dataset.

  Args:
    config: the run's ConfigDict (see configs/default.py).
    num_devices: devices over all processes.

  Raises:
    ConfigError: naming the first bad field and its fix.
  """
  _require(config.model in models.MODEL_NAMES,
           f'model: unknown {config.model!r}; set --config.model to one of '
           f'{", ".join(models.MODEL_NAMES)}')
  _require(config.image_size >= models.MIN_INPUT_SIZE,
           f'image_size: {config.image_size} is below the networks\' minimum '
           f'{models.MIN_INPUT_SIZE}; set --config.image_size='
           f'{models.MIN_INPUT_SIZE} or more')
  _require(config.train_canvas_size >= config.image_size,
           f'train_canvas_size: {config.train_canvas_size} is below image_size '
           f'{config.image_size}; set --config.train_canvas_size='
           f'{config.image_size} or more')
  _require(config.eval_views in _VIEWS,
           f'eval_views: {config.eval_views!r} is not one of {_VIEWS}; set '
           f'--config.eval_views to single, 12 or 144')
  _require(config.eval_crop in _EVAL_CROPS,
           f'eval_crop: {config.eval_crop!r} is not one of {_EVAL_CROPS}')
  _require(0 < config.eval_crop_fraction <= 1,
           f'eval_crop_fraction: {config.eval_crop_fraction} must lie in '
           f'(0, 1]; 0.875 is the released evaluation')
  _require(config.eval_weights in _EVAL_WEIGHTS,
           f'eval_weights: {config.eval_weights!r} is not one of '
           f'{_EVAL_WEIGHTS}; ema is the moving average the paper evaluates')
  _require(config.dtype in _DTYPES,
           f'dtype: {config.dtype!r} is not supported; use one of {_DTYPES}')
  _require(config.batch_size > 0 and config.batch_size % num_devices == 0,
           f'batch_size: {config.batch_size} does not split over {num_devices} '
           f'devices; use a positive multiple of {num_devices}')
  group = config.batch_norm_group_size
  per_device = config.batch_size // num_devices
  _require(group == 0 or (group > 0 and per_device % group == 0),
           f'batch_norm_group_size: {group} does not divide the per-device '
           f'batch {per_device}; use 0 (global batch) or a divisor of '
           f'{per_device}')
  _require(config.learning_rate >= 0,
           f'learning_rate: {config.learning_rate} is negative; use a positive '
           f'rate such as 0.045 (scaled by batch_size/reference_batch_size)')
  for field in ('reference_batch_size', 'num_epochs',
                'learning_rate_decay_epochs', 'learning_rate_decay_rate'):
    _require(config[field] > 0,
             f'{field}: {config[field]} must be positive; set '
             f'--config.{field} to a positive value')
  for field in ('warmup_epochs', 'grad_clip_norm', 'weight_decay',
                'label_smoothing', 'aux_loss_weight', 'eval_every_epochs'):
    _require(config[field] >= 0,
             f'{field}: {config[field]} is negative; use 0 to turn it off or a '
             f'positive value')
  _require(0 <= config.ema_decay < 1,
           f'ema_decay: {config.ema_decay} must lie in [0, 1); 0.9999 is the '
           f'paper-era value, 0 evaluates the raw weights')
  _require(config.label_smoothing < 1,
           f'label_smoothing: {config.label_smoothing} must be below 1 '
           f'(paper: 0.1)')
  for field in ('log_every_steps', 'checkpoint_every_steps',
                'checkpoints_to_keep'):
    _require(config[field] >= 1,
             f'{field}: {config[field]} must be at least 1')
  steps = config.num_train_steps
  _require(steps is None or steps >= 1,
           f'num_train_steps: {steps} must be at least 1, or None to use '
           f'num_epochs')
  try:
    models.create_model_from_config(config, num_classes=2)
  except ValueError as e:
    raise ConfigError(f'model_overrides/aux_logits: {e}') from None


def make_plan(config: Any, num_devices: int,
              get_dataset_info: Callable[[Any], Any]) -> Plan:
  """Checks the config and works out the run's derived quantities.

  Args:
    config: the run's ConfigDict.
    num_devices: devices over all processes.
    get_dataset_info: `input_pipeline.get_dataset_info`, called once the
      config has passed its own checks; returns num_classes,
      num_train_examples and num_eval_examples.

  Returns:
    The `Plan`.

  Raises:
    ConfigError: naming the first bad field and its fix, or the dataset's
      problem.
  """
  check_config(config, num_devices)
  try:
    dataset_info = get_dataset_info(config)
  except ValueError as e:
    raise ConfigError(f'dataset: {e}') from None
  steps_per_epoch = dataset_info.num_train_examples / config.batch_size
  if config.num_train_steps is not None:
    num_train_steps = config.num_train_steps
  else:
    num_train_steps = max(1, math.ceil(config.num_epochs * steps_per_epoch))
  group = config.batch_norm_group_size
  return Plan(
      num_classes=dataset_info.num_classes,
      num_train_examples=dataset_info.num_train_examples,
      num_eval_examples=dataset_info.num_eval_examples,
      num_devices=num_devices,
      per_device_batch=config.batch_size // num_devices,
      steps_per_epoch=steps_per_epoch,
      num_train_steps=num_train_steps,
      learning_rate=(config.learning_rate * config.batch_size /
                     config.reference_batch_size),
      batch_norm_groups=config.batch_size // group if group else 1,
      eval_every_steps=config.eval_every_epochs * steps_per_epoch)
