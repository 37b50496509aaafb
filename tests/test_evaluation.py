"""Tests of inception/evaluation.py and main.py --mode=eval.

First a fake network with known logits, through the real predict step on 8
emulated devices: exact errors, the softmax averaged over views, a padded last
batch, sorted keys, stored predictions. Then a tiny network trained by a real
`main.py` process (whose console is checked too), evaluated with 1, 12 and
144 crops, raw and averaged weights, as converted weights, on two processes,
and refused in one line for every bad input.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from inception import convert
from inception import evaluation
from inception import multihost
from inception import plan
from inception import predictions
from inception import runs
from inception import weights
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _KnownLogits(nn.Module):
  """A fake network: the logits are the image's channels at pixel (0, 0)."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    return x[:, 0, 0, :]


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _global(mesh, batch):
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  return {k: jax.device_put(np.asarray(v), sharding) for k, v in batch.items()}


def test_predict_averages_views_drops_padding_and_counts_errors_exactly():
  mesh = multihost.make_mesh()
  rng = np.random.default_rng(0)
  classes, views = 7, 3
  # 13 real images over two batches of 8; the last 3 rows are padding.
  logits = rng.normal(size=(16, views, classes)).astype(np.float32) * 3
  labels = rng.integers(0, classes, size=16).astype(np.int32)
  keys = np.array([12, 3, 7, 0, 9, 1, 11, 5, 2, 10, 4, 8, 6, -1, -1, -1],
                  np.int32)
  mask = keys >= 0
  logits[~mask] = 100.0  # Padding would change every count if it leaked.
  batches = [_global(mesh, {'image': logits[i:i + 8, :, None, None, :],
                            'label': labels[i:i + 8], 'key': keys[i:i + 8],
                            'mask': mask[i:i + 8]}) for i in (0, 8)]
  step = evaluation.make_predict_step(_KnownLogits(), mesh)
  got_keys, got_labels, probs = evaluation.predict(step, {}, batches, 13, views)

  order = np.argsort(keys[mask])
  expected = _softmax(logits[mask]).mean(axis=1)[order]
  np.testing.assert_array_equal(got_keys, np.arange(13))
  np.testing.assert_array_equal(got_labels, labels[mask][order])
  np.testing.assert_allclose(probs, expected, rtol=1e-6, atol=1e-7)
  # Errors by hand: the label's rank among the averaged probabilities.
  rank = (expected > expected[np.arange(13), got_labels][:, None]).sum(1)
  errors = predictions.topk_errors(probs, got_labels)
  np.testing.assert_array_equal(errors[1], rank >= 1)
  np.testing.assert_array_equal(errors[5], rank >= 5)
  assert 0 < errors[1].sum() < 13 and errors[5].sum() < errors[1].sum()


def test_averaging_probabilities_is_not_averaging_logits():
  # Mean logits favour class 0; mean probabilities favour class 1.
  mesh = multihost.make_mesh()
  image = np.zeros((8, 3, 1, 1, 2), np.float32)
  image[:, :, 0, 0] = [[30.0, 0.0], [-2.0, 0.0], [-2.0, 0.0]]
  batch = _global(mesh, {'image': image, 'label': np.ones(8, np.int32),
                         'key': np.arange(8, dtype=np.int32),
                         'mask': np.ones(8, bool)})
  step = evaluation.make_predict_step(_KnownLogits(), mesh)
  _, labels, probs = evaluation.predict(step, {}, [batch], 8, 3)
  assert not predictions.topk_errors(probs, labels)[1].any()


def test_topk_errors_break_ties_as_the_eval_step_does():
  probs = np.array([[0.25, 0.25, 0.25, 0.25, 0.0, 0.0],
                    [0.1, 0.1, 0.1, 0.1, 0.1, 0.5],
                    [0.1, 0.1, 0.1, 0.1, 0.1, 0.5]], np.float32)
  labels = np.array([3, 4, 0])
  errors = predictions.topk_errors(probs, labels, ks=(1, 5))
  for k in (1, 5):
    correct = train.topk_correct(jnp.asarray(probs), jnp.asarray(labels), k)
    np.testing.assert_array_equal(errors[k], ~np.asarray(correct))
  assert errors[1].tolist() == [True, True, True]
  assert errors[5].tolist() == [False, True, False]


def test_saved_predictions_read_back_from_either_file(tmp_path):
  probs = np.array([[0.5, 0.25, 0.25], [0.125, 0.75, 0.125]], np.float32)
  info = {'name': 'step1-ema-1crop', 'top1_error': 0.5}
  json_path, npz_path = predictions.save(
      str(tmp_path / 'eval'), 'step1-ema-1crop', info, np.array([4, 9]),
      np.array([0, 2]), probs)
  assert sorted(os.listdir(tmp_path / 'eval')) == [
      'step1-ema-1crop.json', 'step1-ema-1crop.predictions.npz']
  for path in (json_path, npz_path):
    result = predictions.load(path)
    assert result.info == {**info,
                           'predictions': 'step1-ema-1crop.predictions.npz'}
    np.testing.assert_array_equal(result.probabilities, probs)
    assert result.keys.dtype == np.int64 and result.keys.tolist() == [4, 9]
  with np.load(npz_path) as data:
    assert data['probabilities'].dtype == np.float16


def test_result_names_say_step_weights_crops_and_what_differs():
  config = tiny.get_config()
  config.eval_split = 'validation'
  config.eval_views = '144'
  assert evaluation.result_name(config, 'ema', 625) == 'step625-ema-144crops'
  assert evaluation.result_name(config, 'converted', None) == (
      'converted-144crops')
  config.eval_views = 'single'
  config.eval_crop = 'resize_shorter'
  config.eval_split = 'validation[:40]'
  assert evaluation.result_name(config, 'raw', 4) == (
      'step4-raw-1crop-resize_shorter0.875-validation__40')
  assert evaluation.metric_prefix('12', 'raw') == 'eval_12crops_raw'
  assert evaluation.metric_prefix('single', 'ema') == 'eval_1crop'


# ---- A real run of a tiny network ------------------------------------------


def _config(**overrides):
  config = tiny.get_config()
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A tiny run trained by main.py as a user runs it: (workdir, stdout, stderr)."""
  workdir = str(tmp_path_factory.mktemp('run'))
  process = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/tiny.py',
       f'--workdir={workdir}'], cwd=ROOT, capture_output=True, text=True,
      timeout=600, check=False)
  assert process.returncode == 0, process.stderr[-3000:]
  return workdir, process.stdout, process.stderr


def test_the_default_console_shows_progress_results_and_paths_only(run):
  workdir, out, err = run
  lines = err.strip().splitlines()
  # One format, the project's own records: no library INFO records.
  assert all(re.match(r'^\d\d:\d\d:\d\d ', line) for line in lines), err
  for noise in ('orbax', 'checkpoint_manager', 'dataset_builder',
                'tf.data.Dataset', 'Load dataset info', 'array_handler',
                'barrier', 'tpu'):
    assert noise.lower() not in err.lower(), noise
  assert len(lines) < 20
  assert sum('step ' in line and '/8: loss ' in line for line in lines) == 4
  assert 'eval top-1 error' in err
  tail = out.strip().splitlines()
  assert tail[-6:-3] == [
      '| Network | Crops | Top-1 Error | Top-5 Error |', '|---|---|---|---|',
      tail[-4]] and tail[-4].startswith('| Inception-ResNet-v1 | 1 | ')
  assert tail[-3] == (f'Checkpoints: {os.path.join(workdir, "checkpoints")} '
                      f'(step 8)')
  assert tail[-2].startswith(
      f'Metrics: {os.path.join(workdir, "metrics.jsonl")}')
  assert tail[-1] == f'Curves: {os.path.join(workdir, "curves.png")}'
  with open(os.path.join(workdir, 'curves.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'



@pytest.fixture(scope='module')
def twelve_crops(run):
  return evaluation.evaluate_workdir(_config(eval_views='12'), run[0])


def test_single_crop_eval_reproduces_the_runs_own_evaluation(run):
  workdir = run[0]
  final = runs.read_metrics(workdir)[-1]
  record = evaluation.evaluate_workdir(_config(), workdir)
  assert record['name'] == 'step8-ema-1crop-validation__40'
  assert record['top1_error'] == final['eval/top1_error']
  assert record['top5_error'] == final['eval/top5_error']
  assert record['num_examples'] == 40 and record['checkpoint_step'] == 8
  with open(record['json']) as f:
    stored = json.load(f)
  assert stored['top1_error'] == record['top1_error']
  for field, value in [('network', 'inception_resnet_v1'), ('views', 'single'),
                       ('weights', 'ema'), ('dataset', 'builtin'),
                       ('eval_split', 'validation[:40]'), ('image_size', 75),
                       ('eval_crop', 'central'), ('num_classes', 10)]:
    assert stored[field] == value, field
  assert stored['model_overrides']['width_multiplier'] == 0.25
  result = predictions.load(record['json'])
  np.testing.assert_array_equal(result.keys, np.arange(40))
  errors = predictions.topk_errors(result.probabilities, result.labels)
  assert errors[1].mean() == pytest.approx(record['top1_error'], abs=1.5 / 40)
  np.testing.assert_allclose(result.probabilities.sum(1), 1.0, atol=5e-3)
  last = runs.read_metrics(workdir)[-1]
  assert last['step'] == 8 and last['eval_1crop/top1_error'] == (
      record['top1_error'])


def test_12_crop_evaluation_end_to_end(run, twelve_crops):
  record = twelve_crops
  assert record['name'] == 'step8-ema-12crops-validation__40'
  assert record['crops'] == 12 and record['num_examples'] == 40
  result = predictions.load(record['predictions'])
  np.testing.assert_array_equal(result.keys, np.arange(40))
  single = predictions.load(os.path.join(
      run[0], 'eval', 'step8-ema-1crop-validation__40.json'))
  np.testing.assert_array_equal(result.labels, single.labels)
  # Other views, other probabilities.
  assert np.abs(result.probabilities - single.probabilities).max() > 1e-3


def test_144_crops_of_raw_weights_of_an_earlier_step(run):
  record = evaluation.evaluate_workdir(
      _config(eval_views='144', eval_split='validation[8:16]', eval_step=4,
              eval_weights='raw'), run[0])
  assert record['name'] == 'step4-raw-144crops-validation_8_16'
  assert (record['crops'], record['checkpoint_step'], record['weights']) == (
      144, 4, 'raw')
  result = predictions.load(record['json'])
  np.testing.assert_array_equal(result.keys, np.arange(8, 16))
  last = runs.read_metrics(run[0])[-1]
  assert last['step'] == 4 and 'eval_144crops_raw/top5_error' in last


def test_converted_weights_are_evaluated_when_there_is_no_checkpoint(
    run, tmp_path):
  loaded = weights.load(run[0])
  config = _config()
  kwargs = {'name': config.model, 'num_classes': 10, 'aux_logits': False,
            'bn_scale': False, **{k: v for k, v in config.model_overrides.items()
               if v is not None}}
  convert.save_converted(str(tmp_path / 'converted'),
                         jax.device_get(loaded.variables), kwargs,
                         {'format': 'test'})
  config.init_from = str(tmp_path / 'converted')
  record = evaluation.evaluate_workdir(config, str(tmp_path / 'fresh'))
  assert record['name'] == 'converted-1crop-validation__40'
  assert record['weights'] == 'converted' and record['checkpoint_step'] is None
  final = runs.read_metrics(run[0])
  own = [r for r in final if 'eval/top1_error' in r][-1]
  assert record['top1_error'] == own['eval/top1_error']


@pytest.mark.parametrize('overrides, message', [
    ({'eval_step': 5}, r'^eval_step: no checkpoint of step 5 in .*; it has '
     r'steps 4, 8$'),
    ({'model': 'inception_resnet_v2'}, r'^model: .* holds a checkpoint '
     r'written with model=.inception_resnet_v1.'),
    ({'eval_views': '10'}, r"^eval_views: '10' is not one of"),
    ({'eval_weights': 'best'}, r"^eval_weights: 'best' is not one of"),
])
def test_bad_evaluations_fail_in_one_line_and_write_nothing(run, overrides,
                                                            message):
  workdir = run[0]
  before = sorted(os.listdir(os.path.join(workdir, 'eval')))
  with pytest.raises(plan.ConfigError, match=message) as e:
    evaluation.evaluate_workdir(_config(**overrides), workdir)
  assert '\n' not in str(e.value)
  assert sorted(os.listdir(os.path.join(workdir, 'eval'))) == before


def test_eval_without_checkpoint_or_weights_exits_in_one_line(tmp_path):
  process = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/tiny.py', '--mode=eval',
       f'--workdir={tmp_path}'], cwd=ROOT, capture_output=True, text=True,
      timeout=300, check=False)
  assert process.returncode == 1
  last = process.stderr.strip().splitlines()[-1]
  assert last.startswith(f'Config error: init_from: {tmp_path} has no '
                         f'checkpoint to evaluate; train there first')
  assert 'Traceback' not in process.stderr
  assert not os.listdir(tmp_path)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_evaluate_each_example_once_like_one_process(
    run, twelve_crops, tmp_path):
  workdir = str(tmp_path / 'copy')
  shutil.copytree(run[0], workdir, ignore=shutil.ignore_patterns('eval'))
  address = f'127.0.0.1:{_free_port()}'
  env = {**os.environ, 'JAX_NUM_CPU_DEVICES': '2'}
  workers = [subprocess.Popen(
      [sys.executable, 'main.py', '--config=configs/tiny.py', '--mode=eval',
       '--config.eval_views=12', f'--workdir={workdir}',
       f'--coordinator_address={address}', '--num_processes=2',
       f'--process_id={i}'], env=env, cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  outputs = [w.communicate(timeout=400) for w in workers]
  for worker, (_, err) in zip(workers, outputs):
    assert worker.returncode == 0, err[-3000:]
    assert 'process %d of 2, 2 local of 4 devices' % workers.index(worker) in err
  # Written once, by process 0, and printed there only.
  assert sorted(os.listdir(os.path.join(workdir, 'eval'))) == [
      'step8-ema-12crops-validation__40.json',
      'step8-ema-12crops-validation__40.predictions.npz']
  assert '| Inception-ResNet-v1 | 12 |' in outputs[0][0]
  assert '| Inception-ResNet-v1 |' not in outputs[1][0]
  two = predictions.load(os.path.join(
      workdir, 'eval', 'step8-ema-12crops-validation__40.json'))
  one = predictions.load(twelve_crops['json'])
  np.testing.assert_array_equal(two.keys, np.arange(40))
  np.testing.assert_array_equal(two.labels, one.labels)
  np.testing.assert_array_equal(two.probabilities, one.probabilities)
  assert two.info['num_processes'] == 2
  assert (two.info['top1_error'], two.info['top5_error']) == (
      one.info['top1_error'], one.info['top5_error'])
