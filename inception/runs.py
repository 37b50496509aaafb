"""Reading run directories without TensorFlow or Orbax: configs, metrics, state.

A run directory (main.py's --workdir) describes itself:

- `checkpoints/<step>/config/metadata` is the run's config as JSON (the
  `config` item that inception/checkpointing.py saves with every checkpoint);
  a step folder without `commit_success.txt` is an unfinished save and is
  ignored;
- `metrics.jsonl` holds one record per host step (inception/metrics_io.py):
  `step`, `epoch`, `time` (Unix seconds), `hours` (the run's wall-clock hours
  so far, carried across resumes), the `train/...` means and, at evaluation
  steps, `eval/top1_error`, `eval/top5_error`, `eval/num_examples`; a run
  that went non-finite ends with a record holding `diverged: true` and a
  `message`; `main.py --mode=eval` adds records of `eval_<crops>crops/...`.

Plots, sweeps and summaries read runs through this module, so they work on any
directory of runs: a sweep's, or runs started by hand or by a scheduler.
"""

import dataclasses
import json
import os
from typing import Any, Optional

METRICS_FILE = 'metrics.jsonl'
EVAL_TOP1 = 'eval/top1_error'
EVAL_TOP5 = 'eval/top5_error'


@dataclasses.dataclass(frozen=True)
class Run:
  """What a run directory holds.

  Attributes:
    path: the directory.
    config: the newest checkpoint's config as a dict; None before the first
      checkpoint.
    records: metrics.jsonl's records, in the order written.
  """
  path: str
  config: Optional[dict]
  records: list

  @property
  def diverged(self) -> bool:
    """Whether the run stopped on a non-finite loss or gradient norm."""
    return any(r.get('diverged') for r in self.records)

  @property
  def last_step(self) -> int:
    """The step of the last training record (0 before the first)."""
    steps = [r['step'] for r in self.records if 'train/loss' in r]
    return max(steps, default=0)

  def eval_records(self) -> list:
    """The in-training evaluation records, by step."""
    return sorted((r for r in self.records if EVAL_TOP1 in r),
                  key=lambda r: r['step'])


def read_metrics(workdir: str) -> list[dict]:
  """Reads `WORKDIR/metrics.jsonl`.

  Args:
    workdir: the run's directory.

  Returns:
    The records, in the order written.
  """
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def checkpoint_steps(path: str) -> list[int]:
  """The steps of a run's complete checkpoints, ascending."""
  directory = os.path.join(path, 'checkpoints')
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory)
                if name.isdigit() and os.path.exists(
                    os.path.join(directory, name, 'commit_success.txt')))


def read_config(path: str, step: Optional[int] = None) -> Optional[dict]:
  """The config a run's checkpoint was saved with, or None without one.

  Args:
    path: the run's directory.
    step: which checkpoint; None for the newest.

  Returns:
    The config as a dict.
  """
  steps = checkpoint_steps(path)
  if not steps:
    return None
  step = steps[-1] if step is None else step
  with open(os.path.join(path, 'checkpoints', str(step), 'config',
                         'metadata')) as f:
    return json.load(f)


def is_run(path: str) -> bool:
  """Whether a directory is a run's (it has metrics or checkpoints)."""
  return (os.path.exists(os.path.join(path, METRICS_FILE)) or
          bool(checkpoint_steps(path)))


def read_run(path: str) -> Run:
  """Reads a run directory.

  Args:
    path: the run's directory.

  Returns:
    Its config and records.
  """
  return Run(path, read_config(path), read_metrics(path))


def find_runs(root: str) -> list[str]:
  """The run directories at or below `root`, sorted.

  Args:
    root: a run directory, or a folder of them (at any depth).

  Returns:
    Their paths; a run's own subfolders are not searched.
  """
  found = []
  for directory, subdirs, _ in os.walk(root):
    if is_run(directory):
      found.append(directory)
      subdirs[:] = []
    else:
      subdirs.sort()
  return sorted(found)


def flat_config(config: dict, prefix: str = '') -> dict[str, Any]:
  """A nested config as {'model_overrides.residual_scales': ..., ...}.

  Lists become tuples, so values can be compared and hashed.
  """
  flat = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(flat_config(value, name + '.'))
    else:
      flat[name] = tuple(value) if isinstance(value, list) else value
  return flat
