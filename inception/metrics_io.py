"""Where metrics go: TensorBoard through CLU, `metrics.jsonl`, and the console.

Every scalar the run logs is written twice by process 0:

- through CLU's default writer (TensorBoard event files in the workdir, plus
  the log), which imports TensorFlow and so is imported here only when a
  writer is made;
- as one JSON object per line in `WORKDIR/metrics.jsonl`, with `step`,
  `epoch`, `time` (Unix seconds), `hours` (the run's wall-clock hours so far,
  carried across resumes) and names such as `train/loss` or
  `eval/top1_error`, so that tools read runs without TensorFlow
  (inception/runs.py). A run that goes non-finite ends with a record of
  `diverged: true` and its `message`.

A resumed run first drops the records past its checkpoint, so the file of an
interrupted-then-resumed run matches the file of an uninterrupted one.
"""

import json
import os
import time
from typing import Any, Mapping

from absl import logging
import jax
import numpy as np

from inception import runs

def append_record(workdir: str, record: Mapping[str, Any]) -> None:
  """Appends one record to `WORKDIR/metrics.jsonl` (an evaluation's result).

  Args:
    workdir: the run's directory.
    record: 'step', 'epoch' and scalars.
  """
  with open(os.path.join(workdir, runs.METRICS_FILE), 'a') as f:
    f.write(json.dumps(dict(record)) + '\n')


def _drop_records_after(path: str, step: int) -> None:
  """Rewrites `path` without the records of steps after `step`."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  kept = [line for line in lines if json.loads(line)['step'] <= step]
  if len(kept) != len(lines):
    logging.info('metrics.jsonl: dropped %d records past step %d.',
                 len(lines) - len(kept), step)
    with open(path + '.tmp', 'w') as f:
      f.writelines(kept)
    os.replace(path + '.tmp', path)


class MetricWriter:
  """Writes scalars to TensorBoard (via CLU) and to metrics.jsonl."""

  def __init__(self, workdir: str, *, is_main: bool, start_step: int = 0):
    """Opens the writers.

    Args:
      workdir: the run's directory.
      is_main: whether this is process 0; other processes only log.
      start_step: step the run starts from; later records are dropped.
    """
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    self._is_main = is_main
    self._writer = metric_writers.create_default_writer(
        workdir, just_logging=not is_main)
    self._jsonl = None
    self._start = time.time()
    self._hours = 0.0
    if is_main:
      path = os.path.join(workdir, runs.METRICS_FILE)
      _drop_records_after(path, start_step)
      # A resumed run's clock goes on from its checkpoint's record.
      self._hours = max(
          (r.get('hours', 0.0) for r in runs.read_metrics(workdir)),
          default=0.0)
      self._jsonl = open(path, 'a')

  def write_scalars(self, step: int, epoch: float,
                    scalars: Mapping[str, Any]) -> None:
    """Writes one record.

    Args:
      step: the training step the scalars belong to.
      epoch: training progress in epochs at that step.
      scalars: name -> number (Python or NumPy scalar).
    """
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._writer.write_scalars(step, values)
    self._write_json({'step': int(step), 'epoch': float(epoch), **values})

  def write_diverged(self, step: int, epoch: float, message: str) -> None:
    """Records that the run stopped on a non-finite value at `step`.

    Args:
      step: the first non-finite step.
      epoch: training progress at that step.
      message: what went non-finite.
    """
    self._write_json({'step': int(step), 'epoch': float(epoch),
                      'diverged': True, 'message': message})

  def _write_json(self, record: dict) -> None:
    """Appends a record with its wall-clock time and the run's hours so far."""
    if self._jsonl is None:
      return
    now = time.time()
    record = {**record, 'time': now,
              'hours': self._hours + (now - self._start) / 3600.0}
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()

  def write_parameter_overview(self, params: Any) -> None:
    """Logs a table of parameter shapes and counts, and the total.

    Args:
      params: the parameter tree (arrays or shape structs).
    """
    from clu import parameter_overview  # pylint: disable=g-import-not-at-top
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    if self._is_main:
      # The table is long: shown with --verbosity=1 (inception/console.py).
      logging.vlog(1, 'Parameters:\n%s',
                   parameter_overview.get_parameter_overview(
                       params, include_stats=False))
    logging.info('Parameters: %s.', f'{total:,}')

  def close(self) -> None:
    """Flushes and closes both writers."""
    self._writer.flush()
    self._writer.close()
    if self._jsonl is not None:
      self._jsonl.close()


class Progress:
  """Steps per second, images per second and ETA between host steps."""

  def __init__(self, start_step: int, total_steps: int, global_batch: int):
    """Starts the clock.

    Args:
      start_step: the step training starts (or resumes) from.
      total_steps: the step training ends at.
      global_batch: images per step.
    """
    self._total = total_steps
    self._batch = global_batch
    self._last_step = start_step
    self._last_time = time.monotonic()

  def update(self, step: int,
             scalars: Mapping[str, float]) -> dict[str, float]:
    """Measures the speed since the last call and logs a progress line.

    Args:
      step: the step just reached.
      scalars: the interval's training means; the line shows the loss and
        the training top-1 error.

    Returns:
      {'train/steps_per_sec': ..., 'train/images_per_sec': ...}.
    """
    now = time.monotonic()
    steps = step - self._last_step
    rate = steps / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    eta = (self._total - step) / rate if rate > 0 else float('inf')
    logging.info('step %d/%d: loss %.4f, train top-1 error %.4f; %.2f steps/s '
                 '(%.0f images/s), ETA %s.', step, self._total,
                 scalars['train/loss'], scalars['train/top1_error'], rate,
                 rate * self._batch, format_seconds(eta))
    return {'train/steps_per_sec': rate,
            'train/images_per_sec': rate * self._batch}

  def restart(self) -> None:
    """Restarts the clock, so evaluation and saving do not count as training."""
    self._last_time = time.monotonic()


def format_seconds(seconds: float) -> str:
  """Seconds as H:MM:SS; '?' when unknown."""
  if not np.isfinite(seconds):
    return '?'
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}'


def log_run_start(config: Any, plan: Any, mesh: jax.sharding.Mesh) -> None:
  """Logs what the run is about to do, in one block.

  Args:
    config: the run's ConfigDict.
    plan: the run's `plan.Plan`.
    mesh: the device mesh.
  """
  logging.info('Training %s on %s at %dx%d: %d steps (%.2f epochs), global '
               'batch %d (%d per device over %s), peak learning rate %.5g.',
               config.model, config.dataset, config.image_size,
               config.image_size, plan.num_train_steps,
               plan.num_train_steps / plan.steps_per_epoch, config.batch_size,
               plan.per_device_batch, dict(mesh.shape),
               plan.learning_rate)
