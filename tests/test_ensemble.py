"""Tests of inception/ensemble.py: the mean, its errors, the table, refusals."""

import os
import subprocess
import sys

import numpy as np
import pytest

from inception import ensemble
from inception import predictions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LABELS = np.array([0, 1, 5, 3])
# Sixteenths: exact in float16, and so are their means. Example 0: A and B
# both rank another class first, their mean ranks the label first. Example 2:
# the label is last for A (top-5 error) and fifth for B (a tie with class 4,
# broken towards the lower index), last again in the mean.
PROBS_A = np.array([[6, 8, 1, 1, 0, 0],
                    [2, 10, 1, 1, 1, 1],
                    [4, 4, 4, 2, 2, 0],
                    [1, 1, 1, 9, 2, 2]]) / 16
PROBS_B = np.array([[6, 1, 8, 1, 0, 0],
                    [8, 4, 1, 1, 1, 1],
                    [0, 4, 4, 4, 2, 2],
                    [0, 0, 0, 16, 0, 0]]) / 16
MEAN = np.array([[6, 4.5, 4.5, 1, 0, 0],
                 [5, 7, 1, 1, 1, 1],
                 [2, 4, 4, 3, 2, 1],
                 [0.5, 0.5, 0.5, 12.5, 1, 1]]) / 16


def _save(directory, name, probs, network='inception_v4', views='144',
          keys=(0, 1, 2, 3), labels=LABELS, **overrides):
  """Writes one evaluation; returns (JSON path, predictions path)."""
  info = {'name': name, 'network': network, 'views': views, 'weights': 'ema',
          'checkpoint_step': 625, 'dataset': 'imagenet2012',
          'eval_split': 'validation[:4]', 'eval_split_name': 'validation',
          'num_classes': probs.shape[1], 'num_examples': len(labels),
          'top1_error': 0.0, 'top5_error': 0.0, **overrides}
  return predictions.save(str(directory), name, info, np.array(keys),
                          labels, probs)


@pytest.fixture(name='pair')
def _pair(tmp_path):
  a_json, _ = _save(tmp_path, 'a', PROBS_A, network='inception_v4', views='144')
  _, b_npz = _save(tmp_path, 'b', PROBS_B, network='inception_resnet_v2',
                   views='12')
  return a_json, b_npz


def test_ensemble_is_the_mean_and_fixes_what_neither_member_gets(pair):
  members = [predictions.load(path) for path in pair]
  probabilities, rows = ensemble.ensemble(members)
  np.testing.assert_array_equal(probabilities, MEAN.astype(np.float32))
  # Counted by hand: top-1 A wrong on 0, 2; B on 0, 1, 2; the mean on 2 only.
  # Top-5: A wrong on 2, B never, the mean on 2.
  assert rows == [
      {'network': 'Inception-v4', 'models': 1, 'crops': '144',
       'top1': 0.5, 'top5': 0.25},
      {'network': 'Inception-ResNet-v2', 'models': 1, 'crops': '12',
       'top1': 0.75, 'top5': 0.0},
      {'network': 'Ensemble: Inception-v4 + Inception-ResNet-v2', 'models': 2,
       'crops': '12/144', 'top1': 0.25, 'top5': 0.25}]


def test_table_is_the_papers_layout(pair):
  _, rows = ensemble.ensemble([predictions.load(path) for path in pair])
  assert ensemble.format_table(rows) == '\n'.join([
      '| Network | Models | Crops | Top-1 | Top-5 |',
      '|---|---|---|---|---|',
      '| Inception-v4 | 1 | 144 | 50.00% | 25.00% |',
      '| Inception-ResNet-v2 | 1 | 12 | 75.00% | 0.00% |',
      '| Ensemble: Inception-v4 + Inception-ResNet-v2 | 2 | 12/144 | 25.00% | '
      '25.00% |'])


def test_ensemble_name_counts_repeated_networks():
  assert ensemble.ensemble_name(
      ['inception_v4', 'inception_resnet_v2', 'inception_resnet_v2',
       'inception_resnet_v2']) == (
           'Ensemble: Inception-v4 + Inception-ResNet-v2 x3')
  assert ensemble.ensemble_name(['inception_resnet_v2'] * 2) == (
      'Ensemble: Inception-ResNet-v2 x2')


def test_a_single_member_is_its_own_ensemble(pair):
  member = predictions.load(pair[0])
  probabilities, rows = ensemble.ensemble([member])
  np.testing.assert_array_equal(probabilities, member.probabilities)
  assert [(r['models'], r['crops'], r['top1'], r['top5']) for r in rows] == [
      (1, '144', 0.5, 0.25), (1, '144', 0.5, 0.25)]
  assert rows[1]['network'] == 'Ensemble: Inception-v4'


def test_the_same_evaluation_twice_is_refused(tmp_path):
  json_path, npz_path = _save(tmp_path, 'a', PROBS_A)
  with pytest.raises(predictions.PredictionsError) as e:
    ensemble.ensemble([predictions.load(json_path),
                       predictions.load(npz_path)])
  assert str(e.value) == (f'{npz_path} and {json_path} are the same '
                          'evaluation; give each member once')


@pytest.mark.parametrize('overrides, expected', [
    ({'eval_split_name': 'train', 'eval_split': 'train[:4]'},
     "{b} has eval_split_name 'train', {a} has 'validation'; combine "
     'evaluations of the same examples only'),
    ({'keys': (0, 1, 2, 7)},
     '{b} holds other examples than {a} (4 and 4 examples, 3 in common); '
     'evaluate both on the same split'),
])
def test_members_of_other_examples_are_refused(tmp_path, overrides, expected):
  a, _ = _save(tmp_path, 'a', PROBS_A)
  b, _ = _save(tmp_path, 'b', PROBS_B, **overrides)
  with pytest.raises(predictions.PredictionsError) as e:
    ensemble.ensemble([predictions.load(a), predictions.load(b)])
  assert str(e.value) == expected.format(a=a, b=b)
  result = subprocess.run([sys.executable, '-m', 'inception.ensemble', a, b],
                          cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 1
  assert result.stderr == expected.format(a=a, b=b) + '\n'
  assert result.stdout == ''


def test_command_prints_and_writes_the_table(pair, tmp_path):
  out = tmp_path / 'table4.md'
  result = subprocess.run(
      [sys.executable, '-m', 'inception.ensemble', *pair, f'--out={out}'],
      cwd=ROOT, capture_output=True, text=True, check=True)
  lines = result.stdout.splitlines()
  assert lines[:5] == ensemble.format_table(ensemble.ensemble(
      [predictions.load(path) for path in pair])[1]).splitlines()
  assert ('4 examples of imagenet2012 validation[:4] (6 classes); the ensemble '
          "row scores the mean of the members' probabilities.") in lines
  assert f'1. {pair[0]} (weights ema, step 625)' in lines
  assert out.read_text() == result.stdout


@pytest.mark.parametrize('name, content, expected', [
    ('missing.json', None,
     '{path}: cannot read it (No such file or directory)'),
    ('garbage.npz', b'not an archive',
     '{path}: not a predictions file of inception (ValueError)'),
    (None, None, ensemble.USAGE),
])
def test_unusable_input_exits_in_one_line(tmp_path, name, content, expected):
  path = None if name is None else tmp_path / name
  if content is not None:
    path.write_bytes(content)
  args = [] if path is None else [str(path)]
  result = subprocess.run([sys.executable, '-m', 'inception.ensemble', *args],
                          cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 1
  assert result.stderr == expected.format(path=path) + '\n'
