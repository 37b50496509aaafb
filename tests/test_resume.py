"""Tests of inception/resume.py: which config changes a resume accepts."""

import json

from absl import logging
import pytest

from configs import default
from configs import tiny
from inception import plan
from inception import resume


def _saved(**changes) -> dict:
  config = tiny.get_config()
  for field, value in changes.items():
    config[field] = value
  return json.loads(config.to_json())


def _check(saved: dict, config=None, *, saved_processes=1, processes=1):
  resume.check(saved, saved_processes, config or tiny.get_config(), processes,
               '/runs/a')


def test_the_same_config_resumes():
  _check(_saved())


@pytest.mark.parametrize('field, value', [
    ('num_train_steps', 100), ('num_epochs', 3.0), ('log_every_steps', 7),
    ('checkpoint_every_steps', 9), ('eval_every_epochs', 0.5),
    ('eval_views', '144'), ('eval_split', 'validation[:10]'),
    ('prefetch_batches', 4), ('data_dir', '/elsewhere'),
])
def test_length_logging_saving_and_evaluation_may_change(field, value):
  _check(_saved(**{field: value}))


@pytest.mark.parametrize('field, value', [
    ('batch_size', 32), ('seed', 1), ('train_split', 'train[:256]'),
    ('shuffle_window', 64), ('learning_rate', 0.1),
    ('reference_batch_size', 32), ('learning_rate_decay_rate', 0.5),
    ('learning_rate_decay_epochs', 1.0), ('warmup_epochs', 1.0),
    ('rmsprop_epsilon', 0.1), ('grad_clip_norm', 0.0), ('weight_decay', 0.0),
    ('weight_decay_param_names', ('kernel', 'bias')), ('label_smoothing', 0.0),
    ('ema_decay', 0.5), ('batch_norm_group_size', 8), ('dtype', 'bfloat16'),
    ('color_distortion', False), ('crop_area_range', (0.5, 1.0)),
])
def test_a_field_that_changes_the_steps_stops_the_resume_in_one_line(field,
                                                                     value):
  with pytest.raises(plan.ConfigError) as e:
    _check(_saved(**{field: value}))
  message = str(e.value)
  assert message.startswith(f'{field}: /runs/a holds a checkpoint written '
                            f'with {field}=')
  assert message.endswith(f'pass --config.allow_resume_changes={field} to '
                          f'continue anyway')
  assert '\n' not in message


def test_every_field_is_either_free_or_checked():
  # A field added to configs/default.py is checked unless declared free.
  fields = set(default.get_config())
  assert set(resume.FREE_FIELDS) <= fields
  assert set(resume.STATE_FIELDS) <= fields
  checked = fields - set(resume.FREE_FIELDS) - set(resume.STATE_FIELDS)
  assert {'batch_size', 'seed', 'train_split', 'shuffle_window',
          'learning_rate'} <= checked
  for field in checked:
    config = tiny.get_config()
    saved = _saved()
    saved[field] = ['something', 'else']
    with pytest.raises(plan.ConfigError, match=f'^{field}: '):
      _check(saved, config)


def test_another_process_count_stops_the_resume():
  with pytest.raises(plan.ConfigError, match=(
      r'^processes: .* written with processes=2, but this run has 1, .*'
      r'--config.allow_resume_changes=processes to continue anyway$')):
    _check(_saved(), saved_processes=2, processes=1)
  _check(_saved(), saved_processes=None, processes=4)  # not recorded: unknown


def test_named_changes_resume_with_a_warning(monkeypatch):
  warnings = []
  monkeypatch.setattr(logging, 'warning',
                      lambda message, *args: warnings.append(message % args))
  config = tiny.get_config()
  config.batch_size = 32
  config.allow_resume_changes = 'batch_size, processes'
  _check(_saved(), config, saved_processes=2, processes=1)
  assert len(warnings) == 2
  assert warnings[0].startswith("Resuming with batch_size=32 instead of the "
                                "checkpoint's 16")
  config.seed = 5  # not named: still refused
  with pytest.raises(plan.ConfigError, match='^seed: '):
    _check(_saved(), config, saved_processes=2, processes=1)


def test_a_misspelt_allowed_change_and_another_network_are_refused():
  config = tiny.get_config()
  config.allow_resume_changes = 'batch_sise'
  with pytest.raises(plan.ConfigError, match=(
      "^allow_resume_changes: no config field 'batch_sise'")):
    _check(_saved(), config)
  config = tiny.get_config()
  config.allow_resume_changes = 'model'
  config.model = 'inception_v4'
  # The state's shapes differ: no override helps.
  with pytest.raises(plan.ConfigError, match='^model: .*use a new --workdir'):
    _check(_saved(), config)
