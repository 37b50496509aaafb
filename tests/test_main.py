"""Tests of main.py as users run it: real processes, exit codes, SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import pytest

from inception import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(workdir, *overrides, **popen_args):
  return subprocess.Popen(
      [sys.executable, 'main.py', '--config=configs/tiny.py',
       f'--workdir={workdir}', *overrides],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      **popen_args)


@pytest.mark.parametrize('override, expected', [
    ('--config.no_such_field=1', "Config error: no field 'no_such_field' in "
     'the config; check the spelling'),
    ('--config.model=inception_v5', 'Config error: model: unknown '
     "'inception_v5'; set --config.model to one of inception_v3"),
    ('--config.image_size=64', "Config error: image_size: 64 is below the "
     "networks' minimum 75; set --config.image_size=75 or more"),
    ('--config.batch_size=12', 'Config error: batch_size: 12 does not split '
     'over 8 devices; use a positive multiple of 8'),
    ('--config.learning_rate=-0.1', 'Config error: learning_rate: -0.1 is '
     'negative; use a positive rate'),
])
def test_a_bad_config_fails_in_one_line_before_compiling(tmp_path, override,
                                                         expected):
  env = {**os.environ, 'JAX_NUM_CPU_DEVICES': '8'}
  process = _main(tmp_path, override, env=env)
  _, err = process.communicate(timeout=120)
  assert process.returncode == 1
  assert err.strip().splitlines()[-1].startswith(expected)
  assert 'Traceback' not in err
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  process = _main(tmp_path, '--config.num_train_steps=1000',
                  '--config.checkpoint_every_steps=500')
  deadline = time.monotonic() + 400
  while not runs.read_metrics(str(tmp_path)):
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert time.monotonic() < deadline, 'training never logged'
    time.sleep(0.5)
  seen = runs.read_metrics(str(tmp_path))[-1]['step']
  process.send_signal(signal.SIGTERM)
  _, err = process.communicate(timeout=120)
  assert process.returncode == 0, err[-3000:]
  assert 'Preempted: checkpoint of step' in err
  saved = [int(d) for d in os.listdir(tmp_path / 'checkpoints') if d.isdigit()]
  # Saved at the step after the signal: past what was logged before it, long
  # before the end and off the regular interval.
  assert len(saved) == 1 and seen < saved[0] < 500
  assert runs.read_metrics(str(tmp_path))[-1]['step'] == saved[0]
