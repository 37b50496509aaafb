"""Tests of inception/plot.py: curve data, labels, the figure and the command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from inception import plot
from inception import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'

# Run 'a': written out of order, step 200 written twice (the second wins), an
# --mode=eval record at step 400 that is no point of the curves, and hours
# out of step order so that each axis gives another order.
RECORDS_A = [
    {'step': 100, 'epoch': 1.0, 'hours': 0.5, 'train/loss': 6.0,
     'train/zero_fraction': 0.30, 'train/top1_error': 0.99},
    {'step': 300, 'epoch': 3.0, 'hours': 0.2, 'train/loss': 4.0,
     'train/zero_fraction': 0.50, 'train/top1_error': 0.90},
    {'step': 200, 'epoch': 2.0, 'hours': 1.0, 'train/loss': 5.5,
     'train/zero_fraction': 0.40, 'eval/top1_error': 0.80,
     'eval/top5_error': 0.60, 'eval/num_examples': 50},
    {'step': 400, 'epoch': 4.0, 'hours': 0.8, 'train/loss': 3.0,
     'train/zero_fraction': 0.60, 'eval/top1_error': 0.50,
     'eval/top5_error': 0.30, 'eval/num_examples': 50},
    {'step': 200, 'epoch': 2.0, 'hours': 1.1, 'train/loss': 5.0,
     'train/zero_fraction': 0.45, 'eval/top1_error': 0.70,
     'eval/top5_error': 0.55, 'eval/num_examples': 50},
    {'step': 400, 'epoch': 4.0, 'eval_12crops/top1_error': 0.10,
     'eval_12crops/top5_error': 0.05, 'eval_12crops/num_examples': 50},
]
# What run 'a' must give on each axis: (x, top1, top5) at the evaluation
# points, (train_x, loss, zero_fraction) of the training records.
EXPECTED_A = {
    'epoch': ([2.0, 4.0], [0.70, 0.50], [0.55, 0.30],
              [1.0, 2.0, 3.0, 4.0], [6.0, 5.0, 4.0, 3.0],
              [0.30, 0.45, 0.50, 0.60]),
    'step': ([200, 400], [0.70, 0.50], [0.55, 0.30],
             [100, 200, 300, 400], [6.0, 5.0, 4.0, 3.0],
             [0.30, 0.45, 0.50, 0.60]),
    'hours': ([0.8, 1.1], [0.50, 0.70], [0.30, 0.55],
              [0.2, 0.5, 0.8, 1.1], [4.0, 6.0, 3.0, 5.0],
              [0.50, 0.30, 0.60, 0.45]),
}
# Run 'b' diverged after one evaluation.
RECORDS_B = [
    {'step': 100, 'epoch': 1.0, 'hours': 0.4, 'train/loss': 6.5,
     'train/zero_fraction': 0.2, 'eval/top1_error': 0.9,
     'eval/top5_error': 0.7, 'eval/num_examples': 50},
    {'step': 150, 'epoch': 1.5, 'hours': 0.6, 'diverged': True,
     'message': 'step 150: loss nan is not finite'},
]
# Run 'c' was trained without in-training evaluations.
RECORDS_C = [
    {'step': 100, 'epoch': 1.0, 'hours': 0.3, 'train/loss': 6.1,
     'train/zero_fraction': 0.25},
    {'step': 200, 'epoch': 2.0, 'hours': 0.6, 'train/loss': 5.1,
     'train/zero_fraction': 0.35},
]


def _config(model='inception_resnet_v2', residual_scales=None, **fields):
  """A saved config as JSON holds it (tuples are lists)."""
  config = {'model': model, 'dataset': 'builtin', 'data_dir': None,
            'learning_rate': 0.045, 'log_every_steps': 100,
            'eval_every_epochs': 1.0, 'checkpoint_every_steps': 1000,
            'model_overrides': {'residual_scales': residual_scales,
                                'dropout_rate': None}}
  config.update(fields)
  return config


def _write_run(directory, records, config=None, step=400):
  """A run directory: metrics.jsonl and, with a config, one checkpoint."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(record) + '\n' for record in records)
  if config is not None:
    checkpoint = os.path.join(directory, 'checkpoints', str(step))
    os.makedirs(os.path.join(checkpoint, 'config'))
    with open(os.path.join(checkpoint, 'config', 'metadata'), 'w') as f:
      json.dump(config, f)
    open(os.path.join(checkpoint, 'commit_success.txt'), 'w').close()
  return str(directory)


@pytest.fixture
def three_runs(tmp_path):
  """Runs a (residual scales 0.1), b (diverged) and c (no evaluations)."""
  a = _write_run(tmp_path / 'a', RECORDS_A,
                 _config(residual_scales=[0.1, 0.1, 0.1], data_dir='/data/a'))
  b = _write_run(tmp_path / 'b', RECORDS_B,
                 _config(data_dir='/data/b', log_every_steps=50), step=100)
  c = _write_run(tmp_path / 'c', RECORDS_C, _config(), step=200)
  return a, b, c


def _png_size(path):
  """(width, height) from a PNG's header; fails for any other file."""
  with open(path, 'rb') as f:
    data = f.read()
  assert data[:8] == PNG_SIGNATURE
  return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'inception.plot', *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300,
                        check=False)


@pytest.mark.parametrize('x', ['epoch', 'step', 'hours'])
def test_curve_data_follows_the_axis_one_record_per_step(three_runs, x):
  a, b, _ = three_runs
  curve_a, curve_b = plot.curves([runs.read_run(a), runs.read_run(b)], x=x)
  expected = EXPECTED_A[x]
  for got, want in zip((curve_a.x, curve_a.top1, curve_a.top5,
                        curve_a.train_x, curve_a.loss,
                        curve_a.zero_fraction), expected):
    np.testing.assert_allclose(got, want)
  assert not curve_a.diverged
  # The diverged record is no training point; the run says it diverged.
  assert curve_b.diverged
  np.testing.assert_allclose(curve_b.x, [{'epoch': 1.0, 'step': 100,
                                          'hours': 0.4}[x]])
  np.testing.assert_allclose(curve_b.loss, [6.5])


def test_a_run_without_evaluations_has_empty_error_lines(three_runs):
  (curve,) = plot.curves([runs.read_run(three_runs[2])], x='step')
  assert curve.x.size == curve.top1.size == curve.top5.size == 0
  np.testing.assert_allclose(curve.train_x, [100, 200])


def test_labels_name_the_network_and_the_differing_setting_only(three_runs):
  a, b, c = three_runs
  labels = plot.labels_for([runs.read_run(path) for path in (a, b)])
  # data_dir and log_every_steps differ too, but say nothing of the recipe.
  assert labels == ['Inception-ResNet-v2, residual_scales=(0.1, 0.1, 0.1)',
                    'Inception-ResNet-v2, residual_scales=None']
  # The same settings: told apart by their directories.
  assert plot.labels_for([runs.read_run(path) for path in (b, c)]) == [
      'Inception-ResNet-v2 (b)', 'Inception-ResNet-v2 (c)']
  assert plot.labels_for([runs.read_run(a)]) == ['Inception-ResNet-v2']


def test_labels_of_other_networks_and_of_runs_without_a_config(tmp_path):
  v4 = _write_run(tmp_path / 'v4', RECORDS_C,
                  _config(model='inception_v4', learning_rate=0.09))
  irv2 = _write_run(tmp_path / 'irv2', RECORDS_C, _config())
  fresh = _write_run(tmp_path / 'fresh', RECORDS_C)
  assert plot.labels_for([runs.read_run(path) for path in (v4, irv2, fresh)]
                        ) == ['Inception-v4, learning_rate=0.09',
                              'Inception-ResNet-v2, learning_rate=0.045',
                              'fresh']


def test_curves_refuse_a_wrong_number_of_labels(three_runs):
  with pytest.raises(plot.PlotError, match='1 labels for 2 runs'):
    plot.curves([runs.read_run(path) for path in three_runs[:2]],
                labels=['only one'])


def test_plot_runs_leaves_out_a_run_without_evaluations(three_runs, tmp_path):
  warnings = []
  out = str(tmp_path / 'figures' / 'curves.png')
  drawn = plot.plot_runs(list(three_runs), out, x='hours',
                         panels=('loss', 'zero_fraction'),
                         warn=warnings.append)
  assert [curve.label for curve in drawn] == [
      'Inception-ResNet-v2, residual_scales=(0.1, 0.1, 0.1)',
      'Inception-ResNet-v2, residual_scales=None']
  assert warnings == [f'{three_runs[2]}: no evaluation records in '
                      'metrics.jsonl; train with --config.eval_every_epochs=1 '
                      'to draw its curve']
  width, _ = _png_size(out)
  assert width == 4 * 400  # Four panels of 4 inches at 100 dpi.
  assert os.path.getsize(out) < 200_000
  assert not os.path.exists(out + '.tmp')


def test_plot_runs_as_training_ends_draws_one_run_quietly(three_runs):
  a = three_runs[0]
  warnings = []
  out = os.path.join(a, 'curves.png')
  drawn = plot.plot_runs([a], out, panels=('loss', 'zero_fraction'),
                         warn=warnings.append)
  assert warnings == []
  assert [curve.label for curve in drawn] == ['Inception-ResNet-v2']
  np.testing.assert_allclose(drawn[0].top1, [0.70, 0.50])
  _png_size(out)


def test_plot_runs_explicit_labels_follow_the_runs_drawn(three_runs, tmp_path):
  drawn = plot.plot_runs(list(three_runs), str(tmp_path / 'f.png'),
                         labels=['A', 'B', 'C'], warn=lambda line: None)
  assert [curve.label for curve in drawn] == ['A', 'B']


def test_plot_runs_writes_nothing_when_no_run_has_evaluations(three_runs,
                                                             tmp_path):
  warnings = []
  out = str(tmp_path / 'none.png')
  assert plot.plot_runs([three_runs[2]], out, warn=warnings.append) == []
  assert len(warnings) == 1
  assert not os.path.exists(out)


def test_legend_marks_a_diverged_run(three_runs):
  curve_a, curve_b = plot.curves(
      [runs.read_run(path) for path in three_runs[:2]])
  assert plot._legend_label(curve_a) == curve_a.label
  assert plot._legend_label(curve_b) == curve_b.label + ' (diverged)'


def test_unknown_axis_and_panel_are_refused(three_runs, tmp_path):
  with pytest.raises(plot.PlotError, match='--x=time'):
    plot.plot_runs([three_runs[0]], str(tmp_path / 'f.png'), x='time')
  with pytest.raises(plot.PlotError, match='lr not one of'):
    plot.plot_runs([three_runs[0]], str(tmp_path / 'f.png'), panels=('lr',))


def test_cli_draws_the_others_and_names_the_run_it_leaves_out(three_runs,
                                                              tmp_path):
  a, b, c = three_runs
  out = str(tmp_path / 'cli.png')
  result = _cli(a, b, c, f'--out={out}', '--x=step')
  assert result.returncode == 0, result.stderr
  about = [line for line in result.stderr.splitlines()
           if any(f'{path}:' in line for path in (a, b, c))]
  assert about == [f'{c}: no evaluation records in metrics.jsonl; train with '
                   '--config.eval_every_epochs=1 to draw its curve']
  width, _ = _png_size(out)
  assert width == 2 * 400


def test_cli_exits_1_and_writes_nothing_when_no_run_has_evaluations(
    three_runs, tmp_path):
  c = three_runs[2]
  out = str(tmp_path / 'none.png')
  result = _cli(c, f'--out={out}')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f'{c}: no evaluation records in metrics.jsonl; train with '
      '--config.eval_every_epochs=1 to draw its curve']
  assert not os.path.exists(out)


def test_cli_refuses_a_directory_that_is_no_run_in_one_line(tmp_path):
  (tmp_path / 'empty').mkdir()
  result = _cli(str(tmp_path / 'empty'), f'--out={tmp_path / "f.png"}')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f'{tmp_path / "empty"}: not a run directory (no metrics.jsonl or '
      'checkpoints)']


def test_cli_refuses_a_wrong_number_of_labels_in_one_line(three_runs,
                                                          tmp_path):
  result = _cli(*three_runs[:2], f'--out={tmp_path / "f.png"}',
                '--label=only one')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      '--label: 1 labels for 2 runs; give one per RUN_DIR']
  assert not os.path.exists(tmp_path / 'f.png')


def test_no_tensorflow_on_import_or_drawing(three_runs, tmp_path):
  out = str(tmp_path / 'f.png')
  code = ('import sys\n'
          'import inception.plot\n'
          "assert 'tensorflow' not in sys.modules\n"
          "assert 'matplotlib' not in sys.modules\n"
          f'inception.plot.plot_runs({list(three_runs[:2])!r}, {out!r},\n'
          "                          panels=('loss', 'zero_fraction'))\n"
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
          "assert 'matplotlib.pyplot' not in sys.modules\n")
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr
  _png_size(out)
