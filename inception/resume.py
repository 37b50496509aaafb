"""Whether a workdir's checkpoint may be resumed by this run, and why not.

A resumed run must be the run that wrote the checkpoint, continued: the same
network, the same batches in the same order, the same schedule and update.
Three kinds of config fields:

- state fields fix the shapes of the train state: a checkpoint of another
  network cannot be restored at all;
- free fields may change on resume without changing a step: the length
  (`num_epochs`, `num_train_steps`, to extend or shorten a run), how often it
  logs, saves and evaluates, the evaluation settings, where the data lives;
- every other field (batch size, seed, splits, shuffle window, augmentation,
  learning-rate settings, optimizer, EMA, dtype, ...) changes the steps that
  follow. Resuming with another value stops in one line, unless the field is
  named in `config.allow_resume_changes` by someone who means it.

The number of processes counts as such a field (`processes`): each process
reads its own part of every batch, so another count gives other batches.
"""

import json
from typing import Any

from absl import logging

from inception import plan as plan_lib

# Fields that fix the shapes of the train state.
STATE_FIELDS = ('model', 'aux_logits', 'bn_scale', 'model_overrides',
                'dataset', 'image_size')

# Fields that may change on resume: no step's computation depends on them.
FREE_FIELDS = (
    'num_epochs', 'num_train_steps', 'log_every_steps', 'eval_every_epochs',
    'checkpoint_every_steps', 'checkpoints_to_keep', 'eval_split', 'eval_crop',
    'eval_crop_fraction', 'eval_views', 'eval_step', 'eval_weights',
    'prefetch_batches', 'data_dir', 'init_from', 'allow_resume_changes',
    'compilation_cache_dir')

# The pseudo-field of the process count, as `allow_resume_changes` names it.
PROCESSES = 'processes'


def allowed_changes(config: Any) -> set[str]:
  """The fields `config.allow_resume_changes` names (comma-separated)."""
  return {name.strip() for name in config.allow_resume_changes.split(',')
          if name.strip()}


def check_network(saved: dict, config: Any, workdir: str) -> None:
  """Fails in one line when the checkpoint holds another network.

  Args:
    saved: the config the checkpoint was written with, as a dict.
    config: this run's ConfigDict.
    workdir: the run's directory, named in the message.

  Raises:
    plan.ConfigError: naming the first state field that differs.
  """
  current = json.loads(config.to_json())
  for field in STATE_FIELDS:
    if field in saved and saved[field] != current[field]:
      raise plan_lib.ConfigError(
          f'{field}: {workdir} holds a checkpoint written with {field}='
          f'{saved[field]!r}, but this run has {current[field]!r}; use a new '
          f'--workdir, or the checkpoint\'s settings to resume it')


def check(saved: dict, saved_processes: int | None, config: Any,
          process_count: int, workdir: str) -> None:
  """Fails in one line when the checkpoint's run is not this one.

  Args:
    saved: the config the checkpoint was written with, as a dict.
    saved_processes: how many processes wrote it; None when not recorded.
    config: this run's ConfigDict.
    process_count: this run's process count.
    workdir: the run's directory, named in the message.

  Raises:
    plan.ConfigError: naming the first field that differs and how to go on,
      before anything is restored or compiled.
  """
  check_network(saved, config, workdir)
  current = json.loads(config.to_json())
  allowed = allowed_changes(config)
  unknown = allowed - set(current) - {PROCESSES}
  if unknown:
    raise plan_lib.ConfigError(
        f'allow_resume_changes: no config field {sorted(unknown)[0]!r}; name '
        f'fields of configs/default.py (or {PROCESSES!r}), comma-separated')
  changes = [(field, saved[field], current[field]) for field in current
             if field in saved and field not in STATE_FIELDS + FREE_FIELDS
             and saved[field] != current[field]]
  if saved_processes is not None and saved_processes != process_count:
    changes.append((PROCESSES, saved_processes, process_count))
  for field, before, now in changes:
    if field not in allowed:
      raise plan_lib.ConfigError(
          f'{field}: {workdir} holds a checkpoint written with {field}='
          f'{before!r}, but this run has {now!r}, so its steps would differ '
          f'from the run that wrote it; resume with {field}={before!r}, use a '
          f'new --workdir, or pass --config.allow_resume_changes={field} to '
          f'continue anyway')
    logging.warning('Resuming with %s=%r instead of the checkpoint\'s %r '
                    '(allow_resume_changes): the steps from here on differ '
                    'from the run that wrote it.', field, now, before)
