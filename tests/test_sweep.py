"""Tests of inception/sweep.py: grids, launchers, resuming, and the summary.

Most tests use a fake runner and fabricated run directories; one runs a
sweep of two tiny points through the real main.py.
"""

import glob
import json
import os
import shlex
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import pytest

from configs import demo
from inception import runs
from inception import slurm
from inception import sweep
from inception import sweep_summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET_SWEEP = 'configs/sweeps/residual_scale.py'
SCALES = ['1.0,1.0,1.0', '0.1,0.1,0.1', '0.2,0.2,0.2', '0.3,0.3,0.3']


def _write_sweep(directory, body: str) -> str:
  path = os.path.join(directory, 'my_sweep.py')
  with open(path, 'w') as f:
    f.write('"""A test sweep."""\n\nfrom configs import demo\nfrom configs '
            'import tiny\n\n' + body)
  return path


def _write_run(path, config, records, steps=(100,)):
  """A run directory as train.py leaves it, without TensorFlow or Orbax."""
  os.makedirs(path)
  for step in steps:
    directory = os.path.join(path, 'checkpoints', str(step))
    os.makedirs(os.path.join(directory, 'config'))
    with open(os.path.join(directory, 'config', 'metadata'), 'w') as f:
      json.dump(config, f)
    open(os.path.join(directory, 'commit_success.txt'), 'w').close()
  with open(os.path.join(path, runs.METRICS_FILE), 'w') as f:
    f.writelines(json.dumps(record) + '\n' for record in records)


@pytest.mark.parametrize('path', sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(
        os.path.join(ROOT, 'configs', 'sweeps', '*.py'))))
def test_every_sweep_file_gives_points_that_fit_its_config(path):
  module = sweep.load_sweep(path)
  # grid_points checks every field and value against the base config.
  points = sweep.grid_points(module.get_config(), module.get_grid())
  assert len(points) >= 2 and len({name for name, _ in points}) == len(points)


def test_grid_order_point_names_and_commands(tmp_path):
  points = sweep.grid_points(sweep.load_sweep(IMAGENET_SWEEP).get_config(),
                             sweep.load_sweep(IMAGENET_SWEEP).get_grid())
  names = [name for name, _ in points]
  assert names == [f'residual_scales={s}__seed={seed}'
                   for s in SCALES for seed in (0, 1, 2)]
  assert points[4][1] == {'model_overrides.residual_scales': (0.1, 0.1, 0.1),
                          'seed': 1}
  command = sweep.point_command(IMAGENET_SWEEP, str(tmp_path), *points[4])
  assert command == [
      'python', 'main.py', '--config=configs/sweeps/residual_scale.py',
      f'--workdir={tmp_path}/residual_scales=0.1,0.1,0.1__seed=1',
      '--config.model_overrides.residual_scales=0.1,0.1,0.1',
      '--config.seed=1']
  # No shell quoting needed: the printed line is the command as is.
  assert shlex.join(command) == ' '.join(command)


def test_overrides_parse_back_through_main_pys_config_flag(tmp_path):
  path = _write_sweep(tmp_path, (
      'def get_config():\n  return demo.get_config()\n\n'
      'def get_grid():\n  return {\n'
      "      'model_overrides.residual_scales': [(0.1, 0.2, 0.3)],\n"
      "      'model_overrides.width_multiplier': [0.5],\n"
      "      'aux_logits': [False], 'model': ['inception_v4'],\n"
      "      'weight_decay_param_names': [('kernel', 'bias')],\n"
      "      'train_split': ['train[:10%]'], 'seed': [7]}\n"))
  module = sweep.load_sweep(path)
  [(name, settings)] = sweep.grid_points(module.get_config(),
                                         module.get_grid())
  assert name == ('residual_scales=0.1,0.2,0.3__width_multiplier=0.5__'
                  'aux_logits=False__model=inception_v4__'
                  'weight_decay_param_names=kernel,bias__'
                  'train_split=train_10___seed=7')
  command = sweep.point_command(path, str(tmp_path), name, settings)
  argv = ['main.py'] + [arg for arg in command[2:]
                        if not arg.startswith('--workdir=')]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  config = values.config
  assert config.model_overrides.residual_scales == (0.1, 0.2, 0.3)
  assert config.model_overrides.width_multiplier == 0.5
  assert config.aux_logits is False and config.model == 'inception_v4'
  assert config.weight_decay_param_names == ('kernel', 'bias')
  assert config.train_split == 'train[:10%]' and config.seed == 7


def test_shared_field_names_fall_back_to_full_paths():
  names = sweep.point_names(['a.x', 'b.x'], [(1, 2), (1, 3)])
  assert names == ['a.x=1__b.x=2', 'a.x=1__b.x=3']
  with pytest.raises(sweep.SweepError, match="both named 'split=a_b'"):
    sweep.point_names(['split'], [('a/b',), ('a:b',)])


@pytest.mark.parametrize('grid, message', [
    ({'seeds': [0]}, "get_grid\\(\\): seeds: no such field in the config"),
    ({'model_overrides.residual_scales': [None]}, 'None cannot be written'),
    ({'seed': [0.5]}, 'get_grid\\(\\): seed=0.5: '),
    ({'seed': [0, 0]}, 'give distinct values'),
    ({'seed': 3}, 'give a list of values'),
    ({'model_overrides': [{}]}, 'a group of fields'),
    ({}, 'give a dict of at least one field'),
])
def test_a_bad_grid_fails_in_one_line(grid, message):
  with pytest.raises(sweep.SweepError, match=message) as error:
    sweep.grid_points(demo.get_config(), grid)
  assert '\n' not in str(error.value)


class FakeRunner:
  """Records the commands it is given and answers from a script."""

  def __init__(self, answers=None):
    self.answers = answers or {}
    self.workdirs = []

  def __call__(self, command, workdir):
    self.workdirs.append(os.path.basename(workdir))
    answer = self.answers.get(os.path.basename(workdir), (0, 'done'))
    if isinstance(answer, BaseException):
      raise answer
    return answer


def _points_and_commands(root, seeds=(0, 1, 2)):
  points = sweep.grid_points(demo.get_config(), {'seed': list(seeds)})
  return points, [sweep.point_command(IMAGENET_SWEEP, root, *point)
                  for point in points]


def test_finished_points_are_skipped_and_an_interrupted_one_runs_again(
    tmp_path):
  root = str(tmp_path)
  points, commands = _points_and_commands(root)
  lines = []
  # seed=1 is interrupted: it raises, and has no status afterwards.
  runner = FakeRunner({'seed=1': KeyboardInterrupt()})
  with pytest.raises(sweep.SweepError,
                     match='^seed=1: interrupted; run the sweep again'):
    sweep.run_local(points, commands, root, runner, lines.append)
  assert runner.workdirs == ['seed=0', 'seed=1']
  assert sweep.read_status(os.path.join(root, 'seed=0')) == 'finished'
  assert sweep.read_status(os.path.join(root, 'seed=1')) is None
  with open(os.path.join(root, 'seed=0', sweep.STATUS_FILE)) as f:
    record = json.load(f)
  assert (record['returncode'], record['settings'], record['command']) == (
      0, {'seed': 0}, commands[0])

  runner = FakeRunner()
  counts = sweep.run_local(points, commands, root, runner, lines.append)
  assert runner.workdirs == ['seed=1', 'seed=2']
  assert counts == {'skipped': 1, 'finished': 2, 'diverged': 0}
  assert lines[-5] == '[1/3] seed=0: finished before; skipped'
  assert lines[-4] == ('[2/3] seed=1: running (output: '
                       f'{root}/seed=1/sweep.log)')
  assert lines[-3].startswith('[2/3] seed=1: finished in ')
  assert lines[-3].endswith(' s: no evaluation records')

  runner = FakeRunner()
  sweep.run_local(points, commands, root, runner, lines.append)
  assert runner.workdirs == []


def test_a_diverged_point_is_recorded_and_the_sweep_goes_on(tmp_path):
  root = str(tmp_path)
  points, commands = _points_and_commands(root)
  diverged = 'Training diverged: step 12: non-finite loss nan'
  runner = FakeRunner({'seed=0': (1, f'12:00:01 step 10/20\n{diverged}\n')})
  lines = []
  counts = sweep.run_local(points, commands, root, runner, lines.append)
  assert runner.workdirs == ['seed=0', 'seed=1', 'seed=2']
  assert counts == {'skipped': 0, 'finished': 2, 'diverged': 1}
  with open(os.path.join(root, 'seed=0', sweep.STATUS_FILE)) as f:
    record = json.load(f)
  assert (record['status'], record['returncode'], record['message']) == (
      'diverged', 1, diverged)
  assert lines[1].endswith(f' s: {diverged}')
  # Diverged points end the point: a rerun skips it too.
  runner = FakeRunner()
  sweep.run_local(points, commands, root, runner, lines.append)
  assert runner.workdirs == []


@pytest.mark.parametrize('answer, message', [
    ((1, "Config error: no field 'seeds' in the config; check the spelling"),
     "^seed=1: Config error: no field 'seeds' in the config; check the "
     r'spelling \(exit code 1; see .*/seed=1/sweep.log\)$'),
    ((0, '12:00:00 Warning: Preempted: checkpoint of step 4 written; run '
      'the same command to resume.'),
     '^seed=1: Preempted: checkpoint of step 4 written; run the same'),
])
def test_a_failed_point_stops_the_sweep_in_one_line(tmp_path, answer,
                                                     message):
  root = str(tmp_path)
  points, commands = _points_and_commands(root)
  runner = FakeRunner({'seed=1': answer})
  with pytest.raises(sweep.SweepError, match=message) as error:
    sweep.run_local(points, commands, root, runner, lambda line: None)
  assert '\n' not in str(error.value)
  assert runner.workdirs == ['seed=0', 'seed=1']
  assert sweep.read_status(os.path.join(root, 'seed=1')) is None


def test_run_subprocess_logs_both_streams_in_order(tmp_path):
  workdir = str(tmp_path / 'point')
  code = ('import sys; print("to stdout"); print("to stderr", file=sys.stderr)'
          '; sys.exit("Config error: x")')
  for _ in range(2):
    returncode, tail = sweep.run_subprocess([sys.executable, '-c', code],
                                            workdir)
    assert returncode == 1
    assert tail == 'to stdout\nto stderr\nConfig error: x\n'
  log = (tmp_path / 'point' / sweep.LOG_FILE).read_text()
  assert log.count(f'$ {shlex.join([sys.executable, "-c", code])}\n') == 2
  assert log.endswith(tail)


def test_print_launcher_prints_one_command_per_point(tmp_path, capsys):
  sweep.launch(IMAGENET_SWEEP, str(tmp_path), 'print')
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 12
  assert shlex.split(lines[11]) == [
      'python', 'main.py', '--config=configs/sweeps/residual_scale.py',
      f'--workdir={tmp_path}/residual_scales=0.3,0.3,0.3__seed=2',
      '--config.model_overrides.residual_scales=0.3,0.3,0.3',
      '--config.seed=2']


def _bash_array(script: str) -> list[str]:
  """The COMMANDS array of a script, as bash itself reads it."""
  start = script.index('COMMANDS=(')
  block = script[start:script.index('\n)\n', start) + 3]
  out = subprocess.run(['bash', '-c', block + 'printf "%s\\0" '
                        '"${COMMANDS[@]}"'], capture_output=True, text=True,
                       check=True).stdout
  return out.split('\0')[:-1]


def test_slurm_launcher_writes_a_job_array(tmp_path, capsys):
  root = tmp_path / 'sweep'
  sweep.launch(IMAGENET_SWEEP, str(root), 'slurm', max_parallel=4,
               extra_slurm=['--time=12:00:00', '--partition=gpu'])
  script_path = root / slurm.SCRIPT_FILE
  assert capsys.readouterr().out == f'sbatch {script_path}\n'
  script = script_path.read_text()
  options = [line for line in script.splitlines()
             if line.startswith('#SBATCH')]
  assert options == [
      '#SBATCH --array=0-11%4',
      f'#SBATCH --output={root}/slurm-%A_%a.out',
      f'#SBATCH --error={root}/slurm-%A_%a.out',
      '#SBATCH --job-name=sweep-residual_scale', '#SBATCH --nodes=1',
      '#SBATCH --ntasks-per-node=8', '#SBATCH --gpus-per-node=8',
      '#SBATCH --cpus-per-task=12', '#SBATCH --signal=TERM@300',
      '#SBATCH --time=12:00:00', '#SBATCH --partition=gpu']
  assert script.startswith('#!/bin/bash\n')
  assert script.rstrip().endswith(
      'srun bash -c "${COMMANDS[$SLURM_ARRAY_TASK_ID]}"')
  assert f'\ncd {ROOT}\n' in script
  subprocess.run(['bash', '-n', str(script_path)], check=True)
  module = sweep.load_sweep(IMAGENET_SWEEP)
  expected = [sweep.point_command(IMAGENET_SWEEP, str(root), *point)
              for point in sweep.grid_points(module.get_config(),
                                             module.get_grid())]
  assert [shlex.split(c) for c in _bash_array(script)] == expected


@pytest.mark.parametrize('options, message', [
    (['--array=0-3'], 'the sweep sets it'),
    (['nodes=2'], 'write it as --name=value'),
])
def test_slurm_options_the_sweep_owns_or_cannot_read_are_refused(options,
                                                                 message):
  with pytest.raises(slurm.SlurmError, match=message):
    slurm.slurm_options({'nodes': 1}, options)


def _config(scale, seed):
  return {'model': 'inception_resnet_v2', 'seed': seed, 'num_epochs': 3.0,
          'model_overrides': {'residual_scales': [scale] * 3,
                              'width_multiplier': 0.25}}


def _records(top1, top5, zero, diverged=False):
  """Train records at steps 50, 100, ...; an evaluation every 100 steps."""
  records = []
  for i, z in enumerate(zero):
    step = 50 * (i + 1)
    record = {'step': step, 'epoch': step / 100, 'train/loss': 1.0,
              'train/zero_fraction': z}
    if step % 100 == 0 and step // 100 <= len(top1):
      record.update({'eval/top1_error': top1[step // 100 - 1],
                     'eval/top5_error': top5[step // 100 - 1]})
    records.append(record)
  if diverged:
    records.append({'step': records[-1]['step'] + 1, 'epoch': 9.0,
                    'diverged': True, 'message': 'non-finite loss'})
  return records


def test_summary_of_fabricated_runs(tmp_path, capsys):
  root = tmp_path / 'runs'
  # Scale 1.0: three seeds; final top-1 10, 12, 14% (std 2), top-5 1, 2, 3%;
  # top-1 at or below 50% first at steps 200, 100, 300; final zero fractions
  # 0.2, 0.3, 0.4, peaks 0.5, 0.6, 0.7.
  _write_run(root / 'a0', _config(1.0, 0), _records(
      [0.6, 0.4, 0.10], [0.3, 0.1, 0.01], [0.5, 0.4, 0.3, 0.3, 0.2, 0.2]))
  _write_run(root / 'a1', _config(1.0, 1), _records(
      [0.45, 0.3, 0.12], [0.3, 0.1, 0.02], [0.6, 0.5, 0.4, 0.3, 0.3, 0.3]))
  _write_run(root / 'a2', _config(1.0, 2), _records(
      [0.7, 0.6, 0.14], [0.3, 0.1, 0.03], [0.7, 0.6, 0.5, 0.4, 0.4, 0.4]))
  # Scale 0.1: seed 0 ends at 20% top-1, reaching 50% at step 300; seed 1
  # diverges after one evaluation and counts only as diverged.
  _write_run(root / 'b0', _config(0.1, 0), _records(
      [0.8, 0.7, 0.2], [0.5, 0.3, 0.05], [0.1, 0.1, 0.2, 0.1, 0.1, 0.1]))
  _write_run(root / 'b1', _config(0.1, 1), _records(
      [0.9], [0.6], [0.3, 0.9], diverged=True))
  # Left out: no checkpoint yet, and no evaluation yet.
  os.makedirs(root / 'c0')
  with open(root / 'c0' / runs.METRICS_FILE, 'w') as f:
    f.write(json.dumps({'step': 50, 'epoch': 0.5, 'train/loss': 2.0}) + '\n')
  _write_run(root / 'd0', _config(0.3, 0), _records([], [], [0.1]))

  text = sweep_summary.summarize(str(root), target_top1=0.5)
  assert capsys.readouterr().out == ''
  assert (root / sweep_summary.SUMMARY_MD).read_text() == text
  lines = text.splitlines()
  assert ('7 runs, 2 points (runs whose configs differ only in seed), 2 '
          'incomplete. Target top-1 error: 50%.') in lines
  header = next(line for line in lines if line.startswith('| residual'))
  assert header == (
      '| residual_scales | seeds | final step | top-1 error (%) | '
      'top-5 error (%) | steps to top-1 ≤ 50% (reached) | '
      'zero fraction, final | zero fraction, peak | diverged |')
  rows = [line for line in lines if line.startswith('| (')]
  assert rows == [
      '| (0.1, 0.1, 0.1) | 2 | 100–300 | 20.00 ± — (n=1) | 5.00 ± — (n=1) '
      '| 300 (1/2) | 0.500 | 0.550 | 1 |',
      '| (1.0, 1.0, 1.0) | 3 | 300 | 12.00 ± 2.00 | 2.00 ± 1.00 | '
      '200 (3/3) | 0.300 | 0.600 | 0 |']
  assert f'- `{root}/c0`: no complete checkpoint, so no config (last ' \
         'training step 50)' in lines
  assert f'- `{root}/d0`: no evaluation records yet (last training step ' \
         '50)' in lines
  with open(root / sweep_summary.SUMMARY_PNG, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_mean_std_uses_ddof_1_and_a_dash_for_one_seed():
  assert sweep_summary.mean_std([0.1, 0.12, 0.14]) == '12.00 ± 2.00'
  assert sweep_summary.mean_std([0.1]) == '10.00 ± —'
  assert sweep_summary.mean_std([]) == '—'


def test_two_tiny_points_through_main_py_then_skipped(tmp_path):
  # 8 steps of 16 images from 512: an evaluation at steps 4 and 8.
  path = _write_sweep(tmp_path, (
      'def get_config():\n  config = tiny.get_config()\n'
      '  config.eval_every_epochs = 0.125\n  return config\n\n'
      "def get_grid():\n  return {'seed': [0, 1]}\n"))
  root = tmp_path / 'root'
  command = [sys.executable, '-m', 'inception.sweep', f'--sweep={path}',
             f'--root={root}']
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  for i, seed in enumerate((0, 1), 1):
    assert f'[{i}/2] seed={seed}: running (output: {root}/seed={seed}/' \
           'sweep.log)' in done.stderr
    assert f'[{i}/2] seed={seed}: finished in ' in done.stderr
    with open(root / f'seed={seed}' / sweep.STATUS_FILE) as f:
      assert json.load(f)['status'] == 'finished'
    log = (root / f'seed={seed}' / sweep.LOG_FILE).read_text()
    assert 'step 8: eval top-1 error' in log
  finals = [[r for r in runs.read_metrics(str(root / f'seed={s}'))
             if 'eval/top1_error' in r][-1] for s in (0, 1)]
  assert [r['step'] for r in finals] == [8, 8]
  top1 = sweep_summary.mean_std([r['eval/top1_error'] for r in finals])
  row = next(line for line in done.stdout.splitlines()
             if line.startswith('| inception_resnet_v1 |'))
  assert row.startswith(f'| inception_resnet_v1 | 2 | 8 | {top1} | ')
  assert (root / sweep_summary.SUMMARY_MD).read_text() + '\n' == done.stdout
  with open(root / sweep_summary.SUMMARY_PNG, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'

  again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count('finished before; skipped') == 2
  assert 'running' not in again.stderr
