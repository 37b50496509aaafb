"""SLURM job arrays for sweeps: one array task per grid point.

`slurm_script` writes the batch script that `python -m inception.sweep
--launcher=slurm` saves as `ROOT/sweep.sbatch`: SLURM's own `--array` (with
an optional `%K` throttle), the sweep file's #SBATCH options, and a bash
array of the points' main.py commands, task i running command i under
`srun`. The cluster's scheduler runs the sweep; nothing here submits or
watches jobs.
"""

import os
import shlex
from typing import Any, Mapping, Optional, Sequence

SCRIPT_FILE = 'sweep.sbatch'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Options the script sets itself, by long and short name.
_OWN_OPTIONS = ('array', 'a', 'output', 'o', 'error', 'e')


class SlurmError(ValueError):
  """An #SBATCH option that cannot be used; the message says which and why."""


def slurm_options(*groups: Any) -> list[str]:
  """#SBATCH options from dicts ({'nodes': 1}) or lists ('--nodes=1').

  Args:
    *groups: in order; a later option of the same name replaces an earlier.

  Returns:
    The options, e.g. ['--nodes=1', '--time=2:00:00'].

  Raises:
    SlurmError: for an option that is not `--name[=value]`, or one the
      script sets itself.
  """
  merged = {}
  for group in groups:
    if isinstance(group, Mapping):
      items = [f'--{key}' if value is True else f'--{key}={value}'
               for key, value in group.items() if value not in (None, False)]
    else:
      items = [str(item).strip().removeprefix('#SBATCH').strip()
               for item in group or ()]
    for option in items:
      name = option.split('=', 1)[0].lstrip('-')
      if not option.startswith('-') or not name:
        raise SlurmError(f'SLURM option {option!r}: write it as --name=value')
      if name in _OWN_OPTIONS:
        raise SlurmError(f'SLURM option {option!r}: the sweep sets it (use '
                         '--max_parallel to throttle the array)')
      merged.pop(name, None)
      merged[name] = option
  return list(merged.values())


def slurm_script(sweep_path: str, root: str, commands: Sequence[list],
                 options: Sequence[str],
                 max_parallel: Optional[int] = None) -> str:
  """A job-array script: task i runs point i.

  Args:
    sweep_path: the sweep file, for the job's name and the comments.
    root: the sweep's directory; the tasks' output files go there.
    commands: each point's command, from the repository root.
    options: #SBATCH options of every task.
    max_parallel: at most this many tasks at a time; None for no limit.

  Returns:
    The script's text.
  """
  root = os.path.abspath(root)
  stem = os.path.splitext(os.path.basename(sweep_path))[0]
  throttle = '' if max_parallel is None else f'%{max_parallel}'
  options = slurm_options([f'--job-name=sweep-{stem}'], options)
  lines = [
      '#!/bin/bash',
      f'# Sweep {sweep_path}: {len(commands)} points, one task of this SLURM '
      'job array each.',
      f'# Submit: sbatch {os.path.join(root, SCRIPT_FILE)}',
      '# Submitting it again resumes unfinished points from their checkpoints '
      '(a finished one',
      '# only evaluates again); `sbatch --array=3,7 ...` reruns chosen tasks.',
      f'#SBATCH --array=0-{len(commands) - 1}{throttle}',
      f'#SBATCH --output={root}/slurm-%A_%a.out',
      f'#SBATCH --error={root}/slurm-%A_%a.out',
      *(f'#SBATCH {option}' for option in options),
      '',
      'set -euo pipefail',
      f'cd {shlex.quote(REPO)}',
      'COMMANDS=(',
  ]
  for i, command in enumerate(commands):
    workdir = next(arg for arg in command if arg.startswith('--workdir='))
    lines += [f'  # {i}: {os.path.basename(workdir)}',
              f'  {shlex.quote(shlex.join(command))}']
  lines += [
      ')',
      "# srun starts the task's processes: --ntasks-per-node of them (one "
      'when unset).',
      '# main.py gets no cluster flags, so jax.distributed.initialize() reads '
      'the variables',
      '# srun sets for each (SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS, '
      'SLURM_PROCID,',
      '# SLURM_LOCALID): the processes join one job, each on the GPU of its '
      'SLURM_LOCALID.',
      'srun bash -c "${COMMANDS[$SLURM_ARRAY_TASK_ID]}"',
  ]
  return '\n'.join(lines) + '\n'
