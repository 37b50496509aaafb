"""Tests of inception/compare.py: McNemar, the paired bootstrap, the table."""

import fractions
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from inception import compare
from inception import predictions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 10


def _exact_mcnemar(b, c):
  """The p-value from exact integers, independently of compare.mcnemar_p."""
  n = b + c
  tail, term = 0, 1
  for i in range(min(b, c) + 1):  # term = C(n, i), updated exactly.
    tail += term
    term = term * (n - i) // (i + 1)
  return min(1.0, float(fractions.Fraction(2 * tail, 2 ** n)))


@pytest.mark.parametrize('b, c, expected', [
    (1, 6, 2 * (1 + 7) / 128),
    (6, 1, 2 * (1 + 7) / 128),
    (0, 10, 2 / 1024),
    (2, 3, 1.0),  # 2 * P[X <= 2] = 2 * 16/32 is capped at 1.
    (0, 0, 1.0),
    (5, 5, 1.0),
])
def test_mcnemar_on_small_tables(b, c, expected):
  assert compare.mcnemar_p(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_on_a_large_symmetric_table_is_close_to_one():
  p = compare.mcnemar_p(24_990, 25_010)
  assert 0.9 < p < 1.0
  assert p == pytest.approx(_exact_mcnemar(24_990, 25_010), rel=1e-9)


def test_mcnemar_on_a_large_table_matches_the_normal_approximation():
  b, c = 400, 500
  n = b + c
  # P[X <= b] with a continuity correction, X ~ N(n/2, n/4).
  z = (b + 0.5 - n / 2) / math.sqrt(n / 4)
  normal = 2 * 0.5 * math.erfc(-z / math.sqrt(2))
  p = compare.mcnemar_p(b, c)
  assert 0.0009 < p < 0.0011
  assert p == pytest.approx(normal, rel=0.03)
  assert p == pytest.approx(_exact_mcnemar(b, c), rel=1e-9)


def _errors(n=1000):
  # A is wrong on every 4th example (25%), B on every 5th (20%): the true
  # difference is -5 points, with 200 examples only A and 150 only B gets
  # wrong.
  i = np.arange(n)
  return i % 4 == 0, i % 5 == 0


def test_bootstrap_is_deterministic_for_its_seed():
  err_a, err_b = _errors()
  first = compare.paired_bootstrap(err_a, err_b, 500, seed=0)
  assert compare.paired_bootstrap(err_a, err_b, 500, seed=0) == first
  assert compare.paired_bootstrap(err_a, err_b, 500, seed=1) != first


def test_bootstrap_interval_covers_the_difference_with_the_right_width():
  err_a, err_b = _errors()
  low, high = compare.paired_bootstrap(err_a, err_b, 4000, seed=0)
  assert low < -0.05 < high < 0.0
  # Paired: the variance of the per-example difference is 0.35 - 0.05**2.
  standard_error = math.sqrt((0.35 - 0.05 ** 2) / 1000)
  assert high - low == pytest.approx(2 * 1.96 * standard_error, rel=0.1)


def test_bootstrap_of_identical_errors_is_zero():
  err_a, _ = _errors()
  assert compare.paired_bootstrap(err_a, err_a, 100, seed=0) == (0.0, 0.0)


def _probabilities(labels, wrong1, wrong5):
  """Rows whose label ranks first, second (wrong1) or last (wrong5)."""
  probs = np.full((len(labels), NUM_CLASSES), 1 / 32)
  for row, (label, w1, w5) in enumerate(zip(labels, wrong1, wrong5)):
    if w5:
      probs[row, label] = 1 / 64
    elif w1:
      probs[row, (label + 1) % NUM_CLASSES] = 1 / 2
      probs[row, label] = 1 / 4
    else:
      probs[row, label] = 1 / 2
  return probs


def _save(directory, name, network, views, wrong1, wrong5):
  labels = np.arange(8) % NUM_CLASSES
  info = {'name': name, 'network': network, 'views': views, 'weights': 'ema',
          'checkpoint_step': 10, 'dataset': 'imagenet2012',
          'eval_split': 'validation[:8]', 'eval_split_name': 'validation',
          'num_classes': NUM_CLASSES, 'num_examples': 8, 'top1_error': 0.0,
          'top5_error': 0.0}
  return predictions.save(str(directory), name, info, np.arange(8), labels,
                          _probabilities(labels, wrong1, wrong5))[0]


@pytest.fixture(name='pair')
def _pair(tmp_path):
  def mask(*wrong):
    return np.isin(np.arange(8), wrong)
  # Top-1: A wrong on 0, 1, 2 and B on 2, 3: b = 1 (example 3), c = 2.
  # Top-5: A wrong on 0, B never.
  a = _save(tmp_path, 'a', 'inception_v4', '144', mask(0, 1, 2), mask(0))
  b = _save(tmp_path, 'b', 'inception_resnet_v2', 'single', mask(2, 3),
            mask())
  return a, b


def test_compare_counts_and_intervals(pair):
  a, b = (predictions.load(path) for path in pair)
  result = compare.compare(a, b, resamples=300, seed=4)
  def errors(k):
    return tuple(result[f'top{k}'][key] for key in ('a', 'b', 'diff'))
  assert errors(1) == (3 / 8, 2 / 8, -1 / 8)
  assert errors(5) == (1 / 8, 0.0, -1 / 8)
  assert (result['b_count'], result['c_count']) == (1, 2)
  assert result['p'] == 1.0  # 2 * P[Binomial(3, 1/2) <= 1] = 2 * 4/8.
  assert result['num_examples'] == 8
  # Top-1 and top-5 resample the same indices as paired_bootstrap does.
  for k in (1, 5):
    errors_a = predictions.topk_errors(a.probabilities, a.labels)[k]
    errors_b = predictions.topk_errors(b.probabilities, b.labels)[k]
    low, high = compare.paired_bootstrap(errors_a, errors_b, 300, seed=4)
    assert result[f'top{k}']['low'] == pytest.approx(low, abs=1e-12)
    assert result[f'top{k}']['high'] == pytest.approx(high, abs=1e-12)


def test_examples_of_another_split_are_refused(pair, tmp_path):
  other = tmp_path / 'other'
  path = _save(other, 'c', 'inception_v4', '12', np.zeros(8, bool),
               np.zeros(8, bool))
  record = predictions.load(path)
  record.info['eval_split_name'] = 'train'
  with pytest.raises(predictions.PredictionsError, match='eval_split_name'):
    compare.compare(predictions.load(pair[0]), record, resamples=10)


def test_command_prints_the_table_and_the_resamples(pair, tmp_path):
  out = tmp_path / 'compare.md'
  result = subprocess.run(
      [sys.executable, '-m', 'inception.compare', *pair, '--resamples=250',
       '--seed=3', f'--out={out}'],
      cwd=ROOT, capture_output=True, text=True, check=True)
  lines = result.stdout.splitlines()
  assert lines[0] == ('| | A: Inception-v4 (144 crops) | B: Inception-ResNet-v2'
                      ' (1 crop) | B - A | 95% interval | McNemar p |')
  assert lines[1] == '|---|---|---|---|---|---|'
  assert lines[2].startswith('| Top-1 error | 37.50% | 25.00% | -12.50% | [')
  assert lines[2].endswith('] | 1.000 |')
  assert lines[3].startswith('| Top-5 error | 12.50% | 0.00% | -12.50% | [')
  assert ('8 examples of imagenet2012 validation[:8]; top-1 discordant pairs: '
          'b = 1 (A right, B wrong), c = 2 (A wrong, B right); intervals from '
          '250 paired bootstrap resamples, seed 3; McNemar p from the exact '
          'two-sided binomial test.') in lines
  assert out.read_text() == result.stdout


def test_command_refuses_other_than_two_files(pair):
  result = subprocess.run([sys.executable, '-m', 'inception.compare', pair[0]],
                          cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 1
  assert result.stderr == compare.USAGE + '\n'
