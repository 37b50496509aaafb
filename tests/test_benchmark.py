"""Tests of inception/benchmark.py: exact figures under a known clock, the command.

The module's clocks are replaced by one whose every measurement lasts a set
time, so each figure must be exactly (images preprocessed) / (time), and the
medians and the ratio can be checked against numbers worked out by hand.
"""

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from inception import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = ('pipeline_images_per_sec_per_core', 'pipeline_images_per_sec',
           'decode_images_per_sec_per_core')
KEYS = set(FIGURES) | {'pipeline_to_decode_per_core', 'num_cores', 'image_size',
                       'canvas_size', 'mean_jpeg_bytes'}


def test_import_needs_no_tensorflow():
  code = ('import sys; import inception.benchmark; '
          'assert "tensorflow" not in sys.modules, "TF imported"')
  subprocess.run([sys.executable, '-c', code], cwd=ROOT, check=True)


def test_generated_jpegs_are_imagenet_sized():
  jpegs = benchmark._make_jpegs(3)
  for jpeg in jpegs:
    assert tf.io.extract_jpeg_shape(jpeg).numpy().tolist() == [375, 500, 3]
    assert 50_000 < len(jpeg) < 200_000  # ImageNet's average is about 110 kB.
  assert len(set(jpegs)) == 3
  assert benchmark._make_jpegs(3) == jpegs  # seeded: the same images each run


class _Clock:
  """Stands in for the `time` module: measurement k lasts walls[k] wall-clock
  and cpus[k] CPU seconds (the clocks are read at its start and end)."""

  def __init__(self, walls, cpus):
    self._elapsed = {'wall': list(walls), 'cpu': list(cpus)}
    self._reads = {'wall': 0, 'cpu': 0}

  def _read(self, clock):
    k, end = divmod(self._reads[clock], 2)
    self._reads[clock] += 1
    return 1000.0 * k + (self._elapsed[clock][k] if end else 0.0)

  def perf_counter(self):
    return self._read('wall')

  def process_time(self):
    return self._read('cpu')

  def measurements(self):
    assert self._reads['wall'] == self._reads['cpu']
    return self._reads['wall'] / 2


def test_figures_are_images_over_measured_time(monkeypatch):
  # Three rounds of (pipeline on one core, on all cores, decode on one core).
  # Only the figure's own clock matters: CPU time for per core, wall for all.
  cpus = [2.0, 9.0, 0.5,   4.0, 9.0, 1.0,   1.0, 9.0, 4.0]
  walls = [9.0, 5.0, 9.0,  9.0, 1.0, 9.0,   9.0, 2.5, 9.0]
  clock = _Clock(walls, cpus)
  monkeypatch.setattr(benchmark, 'time', clock)
  n = 20  # two batches of 8 and one of 4: counts images, not batches
  result = benchmark.pipeline_benchmark(num_images=n, rounds=3, image_size=64,
                                        batch_size=8, num_jpegs=3)
  assert clock.measurements() == 9
  assert set(result) == KEYS
  # Medians over the rounds of n / time.
  assert result['pipeline_images_per_sec_per_core'] == pytest.approx(n / 2.0)
  assert result['pipeline_images_per_sec'] == pytest.approx(n / 2.5)
  assert result['decode_images_per_sec_per_core'] == pytest.approx(n / 1.0)
  # Median of the rounds' ratios (1/4, 1/4, 4), not the ratio of medians (1/2).
  assert result['pipeline_to_decode_per_core'] == pytest.approx(0.25)
  assert result['num_cores'] == os.cpu_count()
  assert result['image_size'] == 64
  assert result['canvas_size'] == 384  # configs/default.py's
  sizes = [len(j) for j in benchmark._make_jpegs(3)]
  assert result['mean_jpeg_bytes'] == pytest.approx(np.mean(sizes))


def test_canvas_is_the_flag_or_the_config_raised_to_the_image(monkeypatch):
  from configs import default  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(benchmark, 'time', _Clock([1.0] * 3, [4.0] * 3))
  result = benchmark.pipeline_benchmark(num_images=4, rounds=1, image_size=64,
                                        batch_size=4, num_jpegs=1,
                                        canvas_size=96)
  assert result['canvas_size'] == 96
  assert result['pipeline_images_per_sec'] == pytest.approx(4.0)
  assert result['decode_images_per_sec_per_core'] == pytest.approx(1.0)
  small = default.get_config()
  small.train_canvas_size = 32
  monkeypatch.setattr(default, 'get_config', lambda: small)
  monkeypatch.setattr(benchmark, 'time', _Clock([1.0] * 3, [1.0] * 3))
  result = benchmark.pipeline_benchmark(num_images=4, rounds=1, image_size=64,
                                        batch_size=4, num_jpegs=1)
  assert result['canvas_size'] == 64


def test_command_prints_the_figures_of_its_flags_as_one_json_object():
  # The measurement is stubbed (no TensorFlow): the flags must reach it, and
  # its figures come out as one sorted JSON line.
  code = (
      'import json, sys\n'
      'from absl import app\n'
      'from inception import benchmark\n'
      'def fake(*args, **kwargs):\n'
      '  return {"z": 1.5, "called": [list(args), kwargs]}\n'
      'benchmark.pipeline_benchmark = fake\n'
      'app.run(benchmark.main, argv=["benchmark", "--mode=pipeline", '
      '"--num_images=16", "--rounds=3", "--num_jpegs=4", "--canvas_size=100"])\n')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, check=True,
                       capture_output=True, text=True).stdout
  lines = [line for line in out.splitlines() if line.strip()]
  assert len(lines) == 1
  result = json.loads(lines[0])
  assert lines[0] == json.dumps(result, sort_keys=True)
  args, kwargs = result['called']
  bound = inspect.signature(benchmark.pipeline_benchmark).bind(*args, **kwargs)
  bound.apply_defaults()
  assert bound.arguments == dict(num_images=16, rounds=3, image_size=299,
                                 batch_size=64, num_jpegs=4, canvas_size=100)
  assert result['z'] == 1.5
