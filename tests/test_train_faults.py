"""Faults injected for real into training runs of configs/tiny.py.

- kill -9 while a checkpoint's files are being written, then a resume that
  must end with the parameters and metrics of the uninterrupted run
  (tests/conftest.py);
- a non-finite loss (a batch turned to NaN inside main.py's process), after
  which the checkpoint the error names restores, finite;
- a full disk: the run's workdir on a small tmpfs, mounted in a private mount
  namespace (`unshare`), so the last save fails with ENOSPC;
- two processes on loopback training together, then SIGTERM to both of them,
  both saving the same step, and a two-process resume that ends exactly like
  the uninterrupted two-process run.

Workers are main.py, or this file run as a script (see the bottom).
"""

import glob
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import tiny
import input_pipeline
from inception import checkpointing
from inception import multihost
from inception import runs
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Measured per run, so they differ between identical runs.
_TIMING = ('train/steps_per_sec', 'train/images_per_sec', 'time', 'hours')


def _strip(records):
  return [{k: v for k, v in r.items() if k not in _TIMING} for r in records]


def _main(workdir, *overrides) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, 'main.py', '--config=configs/tiny.py',
       f'--workdir={workdir}', *overrides],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, process, what: str, every: float = 0.05,
              timeout: float = 400) -> None:
  deadline = time.monotonic() + timeout
  while not condition():
    assert process.poll() is None, (
        f'ended before {what}: {process.communicate()[1][-3000:]}')
    assert time.monotonic() < deadline, f'timed out waiting for {what}'
    time.sleep(every)


def test_kill_9_in_the_middle_of_a_save_then_a_resume_ends_like_no_crash(
    reference_run, tmp_path, monkeypatch):
  checkpoints = tmp_path / 'checkpoints'
  # The data files of step 8's arrays, in the folder Orbax renames when done.
  data = f'{checkpoints}/8.orbax-checkpoint-tmp*/state*/ocdbt.process_*/d/*'
  process = _main(tmp_path)
  _wait_for(lambda: glob.glob(data), process, 'the save of step 8',
            every=0.002)
  os.kill(process.pid, signal.SIGSTOP)
  try:
    # Caught mid-write: files are there, the step is not complete.
    assert not (checkpoints / '8').exists()
  finally:
    os.kill(process.pid, signal.SIGKILL)
  process.communicate()
  assert process.returncode == -signal.SIGKILL
  assert runs.checkpoint_steps(str(tmp_path)) == [4]
  # The resume runs in this process (the fault was the other's), which lets
  # it see which checkpoint was restored.
  restored = []
  restore = checkpointing.Checkpointer.restore

  def recording_restore(self, abstract_state, step=None):
    restored.append(self.latest_step() if step is None else step)
    return restore(self, abstract_state, step)

  monkeypatch.setattr(checkpointing.Checkpointer, 'restore',
                      recording_restore)
  state, _ = train.train_and_evaluate(tiny.get_config(), str(tmp_path))
  assert restored == [4]
  # The partial save was ignored, then removed and written again.
  assert sorted(os.listdir(checkpoints)) == ['4', '8']
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               reference_run[1])
  assert _strip(runs.read_metrics(str(tmp_path))) == _strip(
      runs.read_metrics(reference_run[0]))


# main.py, with the batch of step 7 turned to NaN on its way to the device.
_POISONED_MAIN = """
import jax.numpy as jnp
import input_pipeline
real = input_pipeline.create_train_iterator

def poisoned(config, mesh, *, start_step=0):
  for index, batch in enumerate(real(config, mesh, start_step=start_step),
                                start=start_step):
    yield {**batch, 'image': batch['image'] * jnp.nan} if index == 6 else batch

input_pipeline.create_train_iterator = poisoned
from absl import app
import main
app.run(main.main, flags_parser=main.parse_flags)
"""


def test_a_non_finite_loss_stops_and_the_named_checkpoint_restores_finite(
    reference_run, tmp_path):
  # Host steps only at checkpoints (4, 8): step 8 must check before saving.
  run = subprocess.run(
      [sys.executable, '-c', _POISONED_MAIN, '--config=configs/tiny.py',
       f'--workdir={tmp_path}', '--config.log_every_steps=100'], cwd=ROOT,
      env={**os.environ, 'PYTHONPATH': ROOT}, capture_output=True, text=True,
      timeout=400)
  assert run.returncode == 1, run.stderr[-3000:]
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith('Training diverged: step 7: loss nan'), last
  named = int(re.search(r'last good checkpoint: step (\d+)\)', last)[1])
  assert named == 4 and runs.checkpoint_steps(str(tmp_path)) == [4]
  # Finite, and steps 1-4 were the reference run's: its step 4 exactly.
  assert _checkpoint_digest(str(tmp_path), named) == _checkpoint_digest(
      reference_run[0], 4)
  records = runs.read_metrics(str(tmp_path))
  assert [r['step'] for r in records] == [4, 7]
  assert 'diverged' not in records[0]
  assert records[1]['diverged'] is True
  assert records[1]['message'].startswith('step 7: loss nan')


def _digest(tree) -> str:
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(tree)):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def _checkpoint_digest(workdir: str, step: int) -> str:
  reader = checkpointing.Reader(os.path.join(workdir, 'checkpoints'))
  replicated = jax.sharding.NamedSharding(multihost.make_mesh(),
                                          jax.sharding.PartitionSpec())
  fields = reader.fields(step, ('params', 'batch_stats', 'opt_state', 'ema'),
                         replicated)
  reader.close()
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(fields))
  return _digest(fields)


def test_a_full_disk_stops_the_run_in_one_line_and_keeps_the_last_checkpoint(
    reference_run, tmp_path):
  step_4 = os.path.join(reference_run[0], 'checkpoints', '4')
  size = sum(os.path.getsize(os.path.join(d, f))
             for d, _, files in os.walk(step_4) for f in files)
  disk = tmp_path / 'disk'
  disk.mkdir()
  # Room for one checkpoint and a half: step 4 fits, step 8 does not.
  worker = subprocess.run(
      ['unshare', '--mount', '--map-root-user', sys.executable, __file__,
       'full_disk', str(disk), str(int(1.5 * size))],
      cwd=ROOT, env={**os.environ, 'PYTHONPATH': ROOT}, capture_output=True,
      text=True, timeout=600)
  assert worker.returncode == 0, worker.stderr[-3000:]
  report = json.loads(worker.stdout.strip().splitlines()[-1])
  assert report['returncode'] == 1
  # Refused before a byte of it was written: 'not enough space (x MiB free,
  # about y MiB needed) for the checkpoint of step 8 in DIR; ...'.
  assert re.match(r'Disk full: not enough space \([\d.]+ MiB free, about '
                  r'[\d.]+ MiB needed\) for the checkpoint of step 8 in ',
                  report['last_line']), report['last_line']
  assert report['last_line'].endswith(
      'the checkpoint of step 4 is intact: free space (or move the workdir), '
      'then run the same command to resume')
  assert report['steps'] == [4]
  assert report['digest'] == _checkpoint_digest(reference_run[0], 4)


def _full_disk(disk: str, size: int) -> None:
  """Worker, in its own mount namespace: trains on a tmpfs of `size` bytes."""
  subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', disk],
                 check=True)
  workdir = os.path.join(disk, 'run')
  run = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/tiny.py',
       f'--workdir={workdir}'], cwd=ROOT, capture_output=True, text=True)
  steps = runs.checkpoint_steps(workdir)
  print(json.dumps({
      'returncode': run.returncode,
      'last_line': run.stderr.strip().splitlines()[-1], 'steps': steps,
      'digest': _checkpoint_digest(workdir, steps[-1]) if steps else None}))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _config():
  config = tiny.get_config()
  # A record every step: a run preempted at any step then resumed writes the
  # same records as one that was not.
  config.log_every_steps = 1
  return config


def _start_two(workdir) -> list[subprocess.Popen]:
  address = f'127.0.0.1:{_free_port()}'
  env = {**os.environ, 'JAX_NUM_CPU_DEVICES': '1', 'PYTHONPATH': ROOT}
  return [subprocess.Popen(
      [sys.executable, __file__, 'train', address, str(i), str(workdir)],
      env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]


def _finish(workers) -> list[tuple[dict, str]]:
  outputs = [w.communicate(timeout=400) for w in workers]
  for worker, (_, err) in zip(workers, outputs):
    assert worker.returncode == 0, err[-3000:]
  return [(json.loads(out.strip().splitlines()[-1]), err)
          for out, err in outputs]


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory):
  """The tiny run by two processes (one device each), and a preempted one.

  Both pairs run at once: each pair's process 1 compiles while its process 0
  waits (JAX's compilation cache serves process 0 only), so together they
  keep both cores busy.

  Returns:
    (workdir of the uninterrupted run, its reports; workdir of the run that
    got SIGTERM after its first step, its (report, stderr) pairs).
  """
  input_pipeline.get_dataset_info(_config())  # prepared before two readers
  workdir = str(tmp_path_factory.mktemp('two'))
  preempted = str(tmp_path_factory.mktemp('two_preempted'))
  uninterrupted, stopping = _start_two(workdir), _start_two(preempted)
  _wait_for(lambda: runs.read_metrics(preempted), stopping[0],
            'the first record')
  for worker in stopping:
    worker.send_signal(signal.SIGTERM)
  stopped = _finish(stopping)
  return (workdir, [report for report, _ in _finish(uninterrupted)],
          preempted, stopped)


def test_two_processes_train_together(two_processes):
  workdir, reports, _, _ = two_processes
  assert [r['process'] for r in reports] == [0, 1]
  assert all(r['devices'] == 2 and r['step'] == 8 for r in reports)
  assert reports[0]['params'] == reports[1]['params']
  assert all(r['eval_examples'] == 40 for r in reports)
  assert all(r['resumed_from'] == 0 for r in reports)
  steps = [r['step'] for r in runs.read_metrics(workdir)]
  assert steps == [1, 2, 3, 4, 5, 6, 7, 8, 8]  # written once, by process 0


def test_sigterm_to_both_processes_then_a_resume_ends_like_no_preemption(
    two_processes):
  workdir, reference, preempted, stopped = two_processes
  step = stopped[0][0]['step']
  assert 1 <= step < 8 and stopped[1][0]['step'] == step
  for _, err in stopped:  # Both agreed on it, through JAX's service.
    assert f'Preemption notice: every process saves at step {step}' in err
  assert runs.checkpoint_steps(preempted)[-1] == step
  resumed = [report for report, _ in _finish(_start_two(preempted))]
  assert [r['resumed_from'] for r in resumed] == [step, step]
  assert [r['params'] for r in resumed] == [reference[0]['params']] * 2
  assert _strip(runs.read_metrics(preempted)) == _strip(
      runs.read_metrics(workdir))


def _train(address: str, process_id: int, workdir: str) -> None:
  """One of two training processes; reports what it ended with."""
  multihost.initialize(address, 2, process_id)
  resumed_from = max(runs.checkpoint_steps(workdir), default=0)
  state, scalars = train.train_and_evaluate(_config(), workdir)
  print(json.dumps({
      'process': jax.process_index(), 'devices': jax.device_count(),
      'step': int(state.step), 'resumed_from': resumed_from,
      'params': _digest([s.addressable_shards[0].data
                         for s in jax.tree.leaves(state.params)]),
      'eval_examples': scalars.get('eval/num_examples')}))


if __name__ == '__main__':
  if sys.argv[1] == 'full_disk':
    _full_disk(sys.argv[2], int(sys.argv[3]))
  else:
    _train(sys.argv[2], int(sys.argv[3]), sys.argv[4])
