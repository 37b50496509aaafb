"""Tests of inception/multihost.py with real processes: joining, preemption.

Workers are this file run as a script (see the bottom): two processes on
loopback that find each other as SLURM tasks would, and two that agree on the
step to stop at after one of them gets SIGTERM, through JAX's preemption
service. The training system's own multi-process runs are in test_train.py.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax

from inception import multihost

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SLURM = ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS',
          'SLURM_PROCID', 'SLURM_LOCALID', 'SLURM_STEP_NUM_NODES')


def test_mesh_spans_every_device_on_the_data_axis():
  mesh = multihost.make_mesh()
  assert dict(mesh.shape) == {'data': 8}
  assert set(mesh.devices.flat) == set(jax.devices())


def _workers(mode: str, envs: list[dict], *args: str,
             timeout: float = 120) -> list[dict]:
  """Runs this file as one worker per env; returns their last JSON lines."""
  base = {k: v for k, v in os.environ.items() if k not in _SLURM}
  processes = [subprocess.Popen(
      [sys.executable, __file__, mode, *args],
      env={**base, 'JAX_NUM_CPU_DEVICES': '1', 'PYTHONPATH': ROOT, **env},
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for env in envs]
  outputs = [p.communicate(timeout=timeout) for p in processes]
  for process, (_, err) in zip(processes, outputs):
    assert process.returncode == 0, err[-3000:]
  return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def _free_port(low: int = 1024, high: int = 65535) -> int:
  for port in range(low, high + 1):
    with socket.socket() as s:
      try:
        s.bind(('127.0.0.1', port))
      except OSError:
        continue
      return port
  raise RuntimeError('no free port')


def test_slurm_tasks_join_one_job_and_a_lone_process_stays_alone():
  # JAX derives the coordinator port from the job id: 61440 + id % 4096.
  job = _free_port(61440) - 61440
  slurm = {'SLURM_JOB_ID': str(job), 'SLURM_STEP_NODELIST': 'localhost',
           'SLURM_NTASKS': '2', 'SLURM_STEP_NUM_NODES': '1'}
  tasks = _workers('join', [{**slurm, 'SLURM_PROCID': str(i),
                             'SLURM_LOCALID': str(i)} for i in range(2)])
  assert [t['process'] for t in tasks] == [0, 1]
  assert all(t['processes'] == 2 and t['devices'] == 2 and t['mesh'] == 2
             for t in tasks)
  (alone,) = _workers('join', [{}])
  assert alone == {'process': 0, 'processes': 1, 'devices': 1, 'mesh': 1,
                   'distributed': False}
  assert all(t['distributed'] for t in tasks)


def test_sigterm_stops_one_process_at_the_next_step_and_restores_the_handler():
  before = signal.getsignal(signal.SIGTERM)
  with multihost.Preemption() as preemption:
    assert not preemption.reached(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert preemption.reached(2)
  assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step():
  address = f'127.0.0.1:{_free_port(20000)}'
  # Process 1 steps more slowly and signals itself at its step 10.
  reports = _workers('preempt', [{'WORKER_ID': '0'}, {'WORKER_ID': '1'}],
                     address, timeout=180)
  assert reports[0]['signalled_at'] is None
  assert reports[1]['signalled_at'] == 10
  stops = {r['stopped_at'] for r in reports}
  assert len(stops) == 1, reports
  # The step after the furthest any process had reached when the notice
  # spread: past the signal, and long before the loop's end.
  assert 10 < stops.pop() < 100


def _join() -> None:
  multihost.initialize()
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  print(json.dumps({
      'process': jax.process_index(), 'processes': jax.process_count(),
      'devices': jax.device_count(), 'mesh': multihost.make_mesh().size,
      'distributed': distributed.global_state.client is not None}))


def _preempt(address: str) -> None:
  """Worker of the two-process preemption test (WORKER_ID: its index)."""
  process_id = int(os.environ['WORKER_ID'])
  multihost.initialize(address, 2, process_id)
  signalled_at = stopped_at = None
  with multihost.Preemption() as preemption:
    for step in range(1, 1000):
      time.sleep(0.02 if process_id == 0 else 0.05)
      if process_id == 1 and step == 10:
        os.kill(os.getpid(), signal.SIGTERM)
        signalled_at = step
      if preemption.reached(step):
        stopped_at = step
        break
  print(json.dumps({'signalled_at': signalled_at, 'stopped_at': stopped_at}))


if __name__ == '__main__':
  if sys.argv[1] == 'join':
    _join()
  else:
    _preempt(sys.argv[2])
