"""Tests of inception/benchmark.py and benchmark_steps.py: figures by hand, the commands.

Pipeline mode: the module's clocks are replaced by one whose every
measurement lasts a set time, so each figure must be exactly (images
preprocessed) / (time), and the medians and the ratio can be checked against
numbers worked out by hand.

Train and infer modes: the commands run the smallest network of the family
in a process without TensorFlow, ml_collections and CLU, and their FLOPs,
memory and parameters are checked against each other and the network; a
fake step of known FLOPs under a known clock checks the arithmetic exactly.
The timm reference is never run here (PyTorch is no dependency); its checks
and its one-line refusal are.
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


# ---- Train and infer modes (inception/benchmark_steps.py) ------------------

# The smallest network of the family (no repeated blocks, an eighth of the
# filters) with configs/tiny.py's recipe: its steps compile in seconds.
SMALLEST_CONFIG = '''"""The smallest network, configs/tiny.py's recipe."""

import ml_collections

from configs import tiny


def get_config() -> ml_collections.ConfigDict:
  config = tiny.get_config()
  config.model_overrides.repeats = (0, 0, 0)
  config.model_overrides.width_multiplier = 0.125
  return config
'''
# 8 emulated devices (tests/conftest.py): 8 images each.
BATCH = 64
STEP_FIELDS = {
    'images_per_sec': float, 'step_seconds_median': float,
    'compile_seconds': float, 'init_seconds': float,
    'peak_memory_bytes': int, 'peak_memory_source': str,
    'flops_per_image': float, 'achieved_flops_per_sec': float,
    'peak_flops_per_sec': float, 'peak_fraction': float,
    'peak_matmul_size': int, 'mode': str, 'model': str, 'batch_size': int,
    'image_size': int, 'dtype': str, 'aux_logits': bool, 'num_classes': int,
    'backend': str, 'device_kind': str, 'num_devices': int,
    'jax_version': str, 'jaxlib_version': str, 'params': int, 'steps': int,
    'warmup': int, 'config': str,
}
# The named packages made absent, as on a machine without them: importing
# them raises ModuleNotFoundError and importlib.util.find_spec finds nothing
# (etils, which JAX's compilation cache uses, asks find_spec for TensorFlow).
_ABSENT = """
import sys
for name in {names!r}:
  sys.modules[name] = None
"""
# Runs benchmark.main once per command line, each output followed by '---'.
_COMMANDS = """
from absl import flags
from inception import benchmark
for argv in {commands!r}:
  flags.FLAGS.unparse_flags()
  flags.FLAGS(['benchmark'] + argv)
  benchmark.main([])
  print('---', flush=True)
"""


class _StepClock:
  """Stands in for the `time` module: measurement k lasts durations[k]."""

  def __init__(self, durations):
    self._durations = list(durations)
    self._reads = 0

  def perf_counter(self):
    k, end = divmod(self._reads, 2)
    self._reads += 1
    return 1000.0 * k + (self._durations[k] if end else 0.0)

  def measurements(self):
    return self._reads / 2


@pytest.fixture(scope='module')
def smallest(tmp_path_factory):
  path = tmp_path_factory.mktemp('configs') / 'smallest.py'
  path.write_text(SMALLEST_CONFIG)
  return str(path)


@pytest.fixture(scope='module')
def measured(smallest):
  """Train at 64 images, infer at 64 and 8, with TF, ml_collections, CLU absent.

  One process without them (as on a GPU machine that lacks them) runs the
  command for each; they run apart from the tests' own process, where
  TensorFlow is loaded and slows XLA's compiles.

  Returns:
    {(mode, batch): the printed figures}.
  """
  common = [f'--config={smallest}', '--steps=2', '--warmup=1',
            '--matmul_size=32']
  commands = [['--mode=train', f'--batch_size={BATCH}'] + common,
              ['--mode=infer', f'--batch_size={BATCH}'] + common,
              ['--mode=infer', '--batch_size=8'] + common]
  absent = ('tensorflow', 'tensorflow_datasets', 'ml_collections', 'clu')
  code = (_ABSENT.format(names=absent) + _COMMANDS.format(commands=commands))
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, check=True,
                       capture_output=True, text=True).stdout
  outputs = out.split('---\n')
  assert outputs[-1] == '' and len(outputs) == len(commands) + 1
  results = {}
  for output in outputs[:-1]:
    assert len(output.splitlines()) == 1  # one JSON object per command
    result = json.loads(output)
    assert output.strip() == json.dumps(result, sort_keys=True)
    results[result['mode'], result['batch_size']] = result
  return results


def _smallest_params():
  import jax  # pylint: disable=g-import-not-at-top
  from inception import models  # pylint: disable=g-import-not-at-top
  network = models.create_model('inception_resnet_v1', repeats=(0, 0, 0),
                                width_multiplier=0.125)
  shapes = jax.eval_shape(lambda x: network.init(jax.random.key(0), x,
                                                 train=False),
                          jax.ShapeDtypeStruct((1, 75, 75, 3), np.float32))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes['params']))


def test_train_and_infer_run_without_tensorflow_ml_collections_or_clu(
    measured, smallest):
  assert set(measured) == {('train', BATCH), ('infer', BATCH), ('infer', 8)}
  params = _smallest_params()  # the config file's network
  for (mode, batch), r in measured.items():
    for name, kind in STEP_FIELDS.items():
      assert isinstance(r[name], kind), (name, r[name])
    assert (r['mode'], r['batch_size'], r['model'], r['image_size']) == (
        mode, batch, 'inception_resnet_v1', 75)
    assert r['config'] == os.path.relpath(smallest, ROOT)
    assert r['params'] == params
    assert (r['backend'], r['dtype'], r['num_devices']) == ('cpu', 'float32', 8)
    assert r['images_per_sec'] == batch / r['step_seconds_median']
    assert r['achieved_flops_per_sec'] == r['flops_per_image'] * r['images_per_sec']
    assert r['peak_fraction'] == (r['achieved_flops_per_sec']
                                  / r['peak_flops_per_sec'])
    assert r['init_seconds'] > 0 and r['compile_seconds'] > 0
    # The CPU keeps no memory statistics: XLA's analysis of the step, per
    # device, holding at least its share of the images.
    assert r['peak_memory_source'] == 'compiled.memory_analysis'
    assert r['peak_memory_bytes'] > batch // 8 * 75 * 75 * 3 * 4 + params * 4


def test_flops_per_image_do_not_depend_on_the_batch(measured):
  assert measured['infer', 8]['flops_per_image'] == pytest.approx(
      measured['infer', BATCH]['flops_per_image'], rel=0.01)


def test_train_step_costs_about_three_forward_passes(measured):
  train_step, infer = measured['train', BATCH], measured['infer', BATCH]
  # Forward, then the gradients of the activations and of the weights; the
  # optimizer and moving average add about 30 FLOPs per parameter per device
  # per step, a tenth of a forward pass per image here.
  assert 2.8 < train_step['flops_per_image'] / infer['flops_per_image'] < 3.6
  # The train state (4 copies of the parameters and more), the gradients and
  # the activations kept for the backward pass.
  assert train_step['peak_memory_bytes'] > (
      2 * infer['peak_memory_bytes'] + 3 * 4 * train_step['params'])


def test_figures_are_the_clock_s_durations_over_the_step_s_flops(
    monkeypatch, smallest):
  """A fake step of known FLOPs under a clock: the figures by hand."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from inception import benchmark_steps  # pylint: disable=g-import-not-at-top
  from inception import multihost  # pylint: disable=g-import-not-at-top
  data = jax.sharding.NamedSharding(multihost.make_mesh(),
                                    jax.sharding.PartitionSpec('data'))
  x = jax.device_put(jnp.ones((8, 16, 16)), data)
  compiled = jax.jit(lambda a: jnp.einsum('dij,djk->dik', a, a)).lower(x).compile()
  calls = []
  built = []

  def fake_step(config, plan, model, mesh, batch):
    built.append((config.model, plan.batch_norm_groups, model.num_classes,
                  batch['image'].shape, batch['image'].sharding.spec, mesh.size))
    return benchmark_steps._Step(lambda: calls.append(1), compiled, 7.0, 11.0,
                                 123)

  monkeypatch.setattr(benchmark_steps, '_train_step', fake_step)
  # 4 steps after 1 untimed, then 5 matmuls.
  clock = _StepClock([4.0, 0.25, 1.0, 0.5] + [2.0, 1.0, 3.0, 1.0, 9.0])
  monkeypatch.setattr(benchmark_steps, 'time', clock)
  config, _ = benchmark_steps.benchmark_config(config_path=smallest,
                                               batch_size=BATCH)
  r = benchmark_steps.step_benchmark(config, 'train', steps=4, warmup=1,
                                     matmul_size=32)
  assert clock.measurements() == 9 and len(calls) == 5
  assert built == [('inception_resnet_v1', 1, 1000, (BATCH, 75, 75, 3),
                    jax.sharding.PartitionSpec('data'), 8)]
  assert (r['init_seconds'], r['compile_seconds'], r['params']) == (7.0, 11.0, 123)
  # The median step (0.75 s, between the middle two), not the mean (1.44 s)
  # nor any one step.
  assert r['step_seconds_median'] == 0.75
  assert r['images_per_sec'] == BATCH / 0.75
  # The einsum: 2 * 16**3 FLOPs on each of the 8 devices, over the batch.
  assert r['flops_per_image'] == 8 * 2 * 16**3 / BATCH
  assert r['achieved_flops_per_sec'] == r['flops_per_image'] * (BATCH / 0.75)
  # One 32x32 matmul on each of the 8 devices, median 2 s.
  assert r['peak_flops_per_sec'] == 2 * 32**3 * 8 / 2.0
  assert r['peak_fraction'] == (r['achieved_flops_per_sec']
                                / r['peak_flops_per_sec'])
  assert (r['peak_memory_bytes'], r['peak_memory_source']) == (
      benchmark_steps.peak_memory(compiled))


def test_flops_count_every_device_and_memory_each_device_s_buffers():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from inception import benchmark_steps  # pylint: disable=g-import-not-at-top
  from inception import multihost  # pylint: disable=g-import-not-at-top
  mesh = multihost.make_mesh()
  data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  x = jax.device_put(jnp.ones((8, 16, 16)), data)  # 1 kB on each device
  compiled = jax.jit(lambda a: jnp.einsum('dij,djk->dik', a, a)).lower(x).compile()
  assert benchmark_steps.flops_per_step(compiled, 8) == 8 * 2 * 16**3
  kept = jax.jit(lambda a: a * 2 + 1).lower(x).compile()
  donated = jax.jit(lambda a: a * 2 + 1, donate_argnums=0).lower(x).compile()
  # Input and output; with donation the output reuses the input.
  assert benchmark_steps.peak_memory(kept) == (2048, 'compiled.memory_analysis')
  assert benchmark_steps.peak_memory(donated) == (1024, 'compiled.memory_analysis')


def test_rounds_alternate_the_runners(monkeypatch):
  from inception import benchmark_steps  # pylint: disable=g-import-not-at-top
  calls = []
  runners = {'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')}
  monkeypatch.setattr(benchmark_steps, 'time', _StepClock([1, 2, 3, 4, 5] * 2))
  times = benchmark_steps.time_rounds(runners, steps=5, warmup=2,
                                      steps_per_round=2)
  assert ''.join(calls) == 'aabb' + 'aabb' + 'aabb' + 'ab'
  # Measurements alternate in the same order as the timed calls.
  assert times == {'a': [1, 2, 5, 1, 4], 'b': [3, 4, 2, 3, 5]}


def test_benchmark_config_is_the_network_s_config_with_the_flags():
  from configs import inception_resnet_v2  # pylint: disable=g-import-not-at-top
  from inception import benchmark_steps  # pylint: disable=g-import-not-at-top
  config, path = benchmark_steps.benchmark_config(
      'inception_resnet_v2', batch_size=32, image_size=139, dtype='bfloat16',
      aux_logits=False)
  expected = inception_resnet_v2.get_config()
  expected.batch_size, expected.image_size, expected.dtype = 32, 139, 'bfloat16'
  expected.aux_logits = False
  assert config.to_dict() == expected.to_dict()
  assert path == os.path.join(ROOT, 'configs', 'inception_resnet_v2.py')
  config, path = benchmark_steps.benchmark_config('inception_resnet_v2_paper')
  assert path == os.path.join(ROOT, 'configs', 'imagenet.py')
  assert (config.model, config.dataset) == ('inception_resnet_v2_paper',
                                            'imagenet2012')
  config, _ = benchmark_steps.benchmark_config(image_size=512)
  assert config.model == 'inception_v4' and config.train_canvas_size == 512


def test_reference_needs_torch_timm_and_a_published_network(monkeypatch):
  from inception import benchmark_reference  # pylint: disable=g-import-not-at-top
  from inception import benchmark_steps  # pylint: disable=g-import-not-at-top
  config, _ = benchmark_steps.benchmark_config('inception_resnet_v1')
  with pytest.raises(benchmark_reference.Unavailable,
                     match='timm has no inception_resnet_v1'):
    benchmark_reference.check(config)
  config, _ = benchmark_steps.benchmark_config('inception_v4')
  config.model_overrides.repeats = (1, 1, 1)
  with pytest.raises(benchmark_reference.Unavailable,
                     match='drop model_overrides repeats'):
    benchmark_reference.check(config)
  config.model_overrides.repeats = None
  monkeypatch.setitem(sys.modules, 'torch', None)  # import torch: ImportError
  with pytest.raises(benchmark_reference.Unavailable,
                     match='pip install torch timm'):
    benchmark_reference.check(config)


def test_reference_without_torch_stops_in_one_line():
  code = _ABSENT.format(names=('torch', 'timm')) + (
      'from absl import app\n'
      'from inception import benchmark\n'
      'app.run(benchmark.main, argv=["benchmark", "--mode=infer", '
      '"--model=inception_v4", "--reference=timm"])\n')
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                        capture_output=True, text=True)
  assert done.returncode == 1 and not done.stdout
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith('benchmark: --reference=timm needs PyTorch and timm')
  assert last.endswith('pip install torch timm')
