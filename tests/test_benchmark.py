"""Tests of inception/benchmark.py: the pipeline figures, and no TF at import."""

import json
import os
import subprocess
import sys

import tensorflow as tf

from inception import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED_KEYS = ('pipeline_images_per_sec_per_core', 'pipeline_images_per_sec',
                 'decode_images_per_sec_per_core')


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


def test_pipeline_figures():
  result = benchmark.pipeline_benchmark(num_images=24, rounds=1, image_size=64,
                                        batch_size=8, num_jpegs=4)
  for key in REQUIRED_KEYS:
    assert result[key] > 1.0
  assert result['num_cores'] == os.cpu_count()
  assert result['image_size'] == 64
  assert result['canvas_size'] == 384  # configs/default.py's.
  smallest = benchmark.pipeline_benchmark(
      num_images=8, rounds=1, image_size=64, batch_size=8, num_jpegs=2,
      canvas_size=64)
  assert smallest['canvas_size'] == 64
  for key in REQUIRED_KEYS:  # Every crop of more than 64 x 64 pixels resized.
    assert smallest[key] > 1.0


def test_command_prints_one_json_object():
  out = subprocess.run(
      [sys.executable, '-m', 'inception.benchmark', '--mode=pipeline',
       '--num_images=16', '--rounds=1', '--num_jpegs=4'], cwd=ROOT, check=True,
      capture_output=True, text=True).stdout
  lines = [line for line in out.splitlines() if line.strip()]
  assert len(lines) == 1
  result = json.loads(lines[0])
  assert all(result[key] > 0 for key in REQUIRED_KEYS)
  assert result['image_size'] == 299
  assert 50_000 < result['mean_jpeg_bytes'] < 200_000
