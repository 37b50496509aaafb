"""Tests of inception/metrics_io.py: metrics.jsonl, TensorBoard files, progress."""

import json
import os

import numpy as np
import pytest

from inception import metrics_io
from inception import runs


def test_every_scalar_goes_to_jsonl_and_tensorboard(tmp_path):
  writer = metrics_io.MetricWriter(str(tmp_path), is_main=True)
  writer.write_scalars(10, 0.5, {'train/loss': np.float32(2.5),
                                 'eval/num_examples': 1000})
  writer.write_scalars(20, 1.0, {'train/loss': 1.25})
  writer.close()
  records = runs.read_metrics(str(tmp_path))
  assert all(r.pop('time') > 0 and r.pop('hours') >= 0 for r in records)
  assert records == [
      {'step': 10, 'epoch': 0.5, 'train/loss': 2.5, 'eval/num_examples': 1000.0},
      {'step': 20, 'epoch': 1.0, 'train/loss': 1.25}]
  assert any(name.startswith('events.out.tfevents')
             for name in os.listdir(tmp_path))


def test_only_the_main_process_writes_files(tmp_path):
  writer = metrics_io.MetricWriter(str(tmp_path), is_main=False)
  writer.write_scalars(1, 0.0, {'train/loss': 1.0})
  writer.close()
  assert os.listdir(tmp_path) == []


def test_a_resumed_run_drops_records_past_its_checkpoint(tmp_path):
  path = tmp_path / runs.METRICS_FILE
  path.write_text(''.join(json.dumps({'step': s, 'epoch': 0.0, 'x': s}) + '\n'
                          for s in (5, 10, 15)))
  writer = metrics_io.MetricWriter(str(tmp_path), is_main=True, start_step=10)
  writer.write_scalars(15, 0.0, {'x': 99.0})
  writer.close()
  assert [(r['step'], r['x']) for r in runs.read_metrics(str(tmp_path))] == [
      (5, 5), (10, 10), (15, 99.0)]


def test_progress_measures_images_per_second(monkeypatch):
  clock = iter([100.0, 102.0, 110.0, 111.0])
  monkeypatch.setattr(metrics_io.time, 'monotonic', lambda: next(clock))
  progress = metrics_io.Progress(start_step=0, total_steps=100, global_batch=32)
  train = {'train/loss': 1.5, 'train/top1_error': 0.25}
  rates = progress.update(10, train)  # 10 steps in 2 s
  assert rates == {'train/steps_per_sec': pytest.approx(5.0),
                   'train/images_per_sec': pytest.approx(160.0)}
  progress.restart()  # time spent evaluating (8 s) does not count
  assert progress.update(20, train)['train/steps_per_sec'] == pytest.approx(
      10.0)


def test_parameter_overview_logs_the_total_and_the_table_when_verbose(
    tmp_path, caplog):
  writer = metrics_io.MetricWriter(str(tmp_path), is_main=True)
  tree = {'conv': {'kernel': np.zeros((3, 3, 3, 8))}, 'bn': {'bias': np.zeros(8)}}
  with caplog.at_level('INFO'):
    writer.write_parameter_overview(tree)
  assert 'Parameters: 224.' in caplog.text
  assert 'conv/kernel' not in caplog.text  # The table is for --verbosity=1.
  caplog.clear()
  with caplog.at_level('DEBUG'):
    writer.write_parameter_overview(tree)
  writer.close()
  assert 'conv/kernel' in caplog.text


def test_records_carry_wall_time_and_hours_across_a_resume(tmp_path,
                                                           monkeypatch):
  clock = iter([1000.0, 1000.0 + 1800, 1000.0 + 3600,  # first run
                5000.0, 5000.0 + 900])                   # resumed at step 2
  monkeypatch.setattr(metrics_io.time, 'time', lambda: next(clock))
  writer = metrics_io.MetricWriter(str(tmp_path), is_main=True)
  writer.write_scalars(2, 0.5, {'x': 1})   # 0.5 h after the start
  writer.write_scalars(4, 1.0, {'x': 2})   # 1 h: dropped by the resume
  writer.close()
  writer = metrics_io.MetricWriter(str(tmp_path), is_main=True, start_step=2)
  writer.write_diverged(3, 0.75, 'step 3: loss nan')
  writer.close()
  records = runs.read_metrics(str(tmp_path))
  assert [(r['step'], r['time']) for r in records] == [(2, 2800.0),
                                                       (3, 5900.0)]
  # The resumed run's clock starts from its checkpoint's record: 0.5 + 0.25.
  assert [r['hours'] for r in records] == [pytest.approx(0.5),
                                           pytest.approx(0.75)]
  assert records[1]['diverged'] is True and 'x' not in records[1]
