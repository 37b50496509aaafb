"""Sweeps: a grid of config overrides, run point by point or as a SLURM array.

  python -m inception.sweep --sweep=configs/sweeps/NAME.py --root=DIR
      [--launcher=local|print|slurm] [--max_parallel=K]
      [--slurm_options=--partition=gpu ...]
  python -m inception.sweep --summarize --root=DIR [--target_top1=0.5]

A sweep file is a config file that main.py loads (its `get_config()` is the
base config) with a `get_grid()`: a dict {config field path: list of values}.
The points are the Cartesian product of the values in the dict's order (the
last field varies fastest), and each point is one run of

  python main.py --config=SWEEP_FILE --workdir=DIR/<point> \
      --config.<field>=<value> ...

from the repository root. A point is named by its settings, e.g.
`residual_scales=0.1,0.1,0.1__seed=1`: the last part of each field's path
(the whole path where two fields share it), characters other than letters,
digits and `._,=+-` replaced by `_`, one for each run of them.

Launchers:

- `local` (the default) runs the points one after another. Each point's
  output goes to `<point>/sweep.log`; the console gets a line when a point
  starts and one when it ends. A point that ended is recorded in
  `<point>/sweep.json` (status `finished` or `diverged`, exit code, seconds)
  and skipped when the sweep runs again; an interrupted one has no record and
  runs again in the same workdir, where main.py resumes it from its
  checkpoint. A diverged run is recorded and the sweep goes on; any other
  failure (a config error, a crash, a preempted run) stops the sweep with one
  line naming the point, exit code 1. When every point has ended the summary
  below is written.
- `print` prints one shell command per point.
- `slurm` writes `DIR/sweep.sbatch`, a SLURM job array with one task per
  point and the sweep file's `get_slurm()` options, and prints the `sbatch`
  command that submits it. Nothing is submitted here.

`--summarize` reads any directory of runs (a sweep's, or runs started by
hand), groups them by their saved config minus `seed`, and writes
`DIR/summary.md` (one row per group: final errors as mean ± std over seeds,
steps to reach `--target_top1`, zero fractions, divergences) and
`DIR/summary.png` (every run's curves); the table is printed too.
"""

import importlib.util
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections

from inception import console
from inception import runs as runs_lib
from inception import slurm
from inception import sweep_summary

USAGE = ('usage: python -m inception.sweep --sweep=configs/sweeps/NAME.py '
         '--root=DIR [--launcher=local|print|slurm]\n'
         '       python -m inception.sweep --summarize --root=DIR '
         '[--target_top1=0.5]')
REPO = slurm.REPO
STATUS_FILE = 'sweep.json'
LOG_FILE = 'sweep.log'
# Statuses of a point whose run has ended; the sweep skips these points.
ENDED = ('finished', 'diverged')
# main.py's words for the endings the sweep tells apart (main.py, train.py).
_DIVERGED = 'Training diverged'
_PREEMPTED = 'Preempted:'
_SEPARATOR = '__'
_UNSAFE = re.compile(r'[^A-Za-z0-9._,=+-]+')
# The longest file name most filesystems take.
_MAX_NAME = 255
# Bytes of a point's log read back to say how it ended.
_TAIL_BYTES = 16_384

RunPoint = Callable[[list[str], str], tuple[int, str]]


class SweepError(ValueError):
  """A sweep that cannot go on; says which file or point, and why, in a line."""


def load_sweep(path: str) -> Any:
  """Imports a sweep file, as main.py's --config does.

  Args:
    path: the file.

  Returns:
    The module; it has `get_config()` and `get_grid()`.

  Raises:
    SweepError: for a missing file or function.
  """
  if not os.path.isfile(path):
    raise SweepError(f'{path}: no such sweep file')
  if REPO not in sys.path:
    sys.path.insert(0, REPO)  # `from configs import demo`, as under main.py.
  spec = importlib.util.spec_from_file_location('sweep_file', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  missing = [name for name in ('get_config', 'get_grid')
             if not callable(getattr(module, name, None))]
  if missing:
    raise SweepError(f'{path}: no {" or ".join(missing)}(); a sweep file '
                     'defines both (see configs/sweeps/)')
  return module


def _check_field(config: ml_collections.ConfigDict, field: str,
                 values: Any) -> None:
  """Raises SweepError unless every value fits the config's field."""
  where = f'get_grid(): {field}'
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
    raise SweepError(f'{where}: give a list of values, not {values!r}')
  if not values or len({repr(v) for v in values}) != len(values):
    raise SweepError(f'{where}: give distinct values, at least one')
  *parents, key = field.split('.')
  node = config
  for part in parents + [key]:
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise SweepError(f'{where}: no such field in the config; check the '
                       'spelling against configs/default.py')
    parent, node = node, node[part]
  if isinstance(node, ml_collections.ConfigDict):
    raise SweepError(f'{where}: a group of fields; sweep its fields instead')
  for value in values:
    if value is None:
      raise SweepError(f'{where}: None cannot be written as a --config '
                       'override; leave the field out for its default')
    try:
      parent[key] = value  # The ConfigDict's own type check.
    except (TypeError, ValueError) as e:
      raise SweepError(f'{where}={value!r}: {e}') from None


def format_override(value: Any) -> str:
  """A value as main.py's `--config.<field>=` reads it back.

  Tuples of numbers are written `0.1,0.1,0.1`, which config_flags reads as a
  tuple (one number: a tuple of one) and the shell takes unquoted; tuples
  holding strings as Python literals, `('kernel','bias')`.

  Args:
    value: a grid value: a number, string, bool or tuple of them.

  Returns:
    Its text.
  """
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, (tuple, list)):
    inner = ','.join(repr(v) for v in value)
    if value and not any(isinstance(v, str) for v in value):
      return inner
    return f'({inner},)' if len(value) == 1 else f'({inner})'
  return str(value)


def _name_value(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return ','.join(_name_value(v) for v in value)
  return str(value)


def point_names(fields: Sequence[str],
                combos: Sequence[Sequence[Any]]) -> list[str]:
  """Readable, filesystem-safe, unique names of the grid's points.

  Args:
    fields: the grid's field paths.
    combos: each point's values, in the order of `fields`.

  Returns:
    One name per point, e.g. 'residual_scales=0.1,0.1,0.1__seed=1'.

  Raises:
    SweepError: when even full field paths leave two points one name.
  """
  short = [field.rsplit('.', 1)[-1] for field in fields]
  names = []
  for keys in (short, list(fields)):
    names = [_UNSAFE.sub('_', _SEPARATOR.join(
        f'{key}={_name_value(value)}' for key, value in zip(keys, combo)))
             for combo in combos]
    if len(set(keys)) == len(keys) and len(set(names)) == len(names):
      break
  else:
    twice = next(name for name in names if names.count(name) > 1)
    raise SweepError(f'get_grid(): two points are both named {twice!r}; '
                     'make the values differ in more than punctuation')
  too_long = [name for name in names if len(name.encode()) > _MAX_NAME]
  if too_long:
    raise SweepError(f'point name {too_long[0][:60]}... is longer than '
                     f'{_MAX_NAME} bytes; sweep fewer fields or shorter values')
  return names


def grid_points(config: ml_collections.ConfigDict,
                grid: Mapping[str, Sequence[Any]]) -> list[tuple[str, dict]]:
  """The grid's points, in the order of the Cartesian product.

  Args:
    config: the sweep's base config; each field must be one of its fields
      and each value must fit its type. Its values are changed.
    grid: {config field path: values}; the last field varies fastest.

  Returns:
    (name, {field: value}) per point.

  Raises:
    SweepError: for an empty grid, an unknown field or a value that does not
      fit.
  """
  if not isinstance(grid, Mapping) or not grid:
    raise SweepError('get_grid(): give a dict of at least one field and its '
                     'values')
  for field, values in grid.items():
    _check_field(config, field, values)
  combos = list(itertools.product(*grid.values()))
  names = point_names(list(grid), combos)
  return [(name, dict(zip(grid, combo))) for name, combo in zip(names, combos)]


def point_command(sweep_path: str, root: str, name: str,
                  settings: Mapping[str, Any],
                  python: str = 'python') -> list[str]:
  """The main.py command line of one point, to run from the repository root.

  Args:
    sweep_path: the sweep file; given relative to the repository when it is
      inside it.
    root: the sweep's directory; given absolute.
    name: the point's name, its workdir under `root`.
    settings: {field: value} of the point.
    python: the interpreter.

  Returns:
    The arguments.
  """
  sweep_path = os.path.abspath(sweep_path)
  if sweep_path.startswith(REPO + os.sep):
    sweep_path = os.path.relpath(sweep_path, REPO)
  workdir = os.path.join(os.path.abspath(root), name)
  return [python, 'main.py', f'--config={sweep_path}', f'--workdir={workdir}',
          *(f'--config.{field}={format_override(value)}'
            for field, value in settings.items())]


def run_subprocess(command: list[str], workdir: str) -> tuple[int, str]:
  """Runs one point's command from the repository root, into its log.

  stdout and stderr go to `WORKDIR/sweep.log`, in order (unbuffered). If the
  sweep is interrupted (Ctrl-C, SIGTERM) the run gets SIGTERM, so that
  main.py saves a checkpoint and stops, and the interruption goes on up.

  Args:
    command: the arguments.
    workdir: the point's run directory.

  Returns:
    The exit code and the end of what this run wrote.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOG_FILE)
  with open(path, 'ab') as log:
    log.write(f'\n$ {shlex.join(command)}\n'.encode())
    log.flush()
    start = log.tell()
    process = subprocess.Popen(command, cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT,
                               env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    try:
      returncode = process.wait()
    except BaseException:
      if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait()
      raise
  with open(path, 'rb') as log:
    log.seek(max(start, os.path.getsize(path) - _TAIL_BYTES))
    return returncode, log.read().decode(errors='replace')


def read_status(workdir: str) -> Optional[str]:
  """A point's recorded status ('finished', 'diverged'), or None."""
  try:
    with open(os.path.join(workdir, STATUS_FILE)) as f:
      return json.load(f).get('status')
  except (OSError, ValueError):
    return None


def _result(workdir: str) -> str:
  """The run's last evaluation, in words."""
  evals = runs_lib.read_run(workdir).eval_records()
  if not evals:
    return 'no evaluation records'
  last = evals[-1]
  return (f'top-1 error {100 * last[runs_lib.EVAL_TOP1]:.2f}%, top-5 error '
          f'{100 * last[runs_lib.EVAL_TOP5]:.2f}% at step {last["step"]}')


def point_ending(returncode: int, tail: str,
                 workdir: str) -> tuple[Optional[str], str]:
  """How a point's run ended.

  Args:
    returncode: main.py's exit code.
    tail: the end of its output.
    workdir: its run directory.

  Returns:
    ('finished' or 'diverged', a summary), or (None, why the sweep must stop).
  """
  lines = [line.strip() for line in tail.splitlines() if line.strip()]
  if returncode == 0:
    preempted = [line for line in lines if _PREEMPTED in line]
    if preempted:
      return None, preempted[-1][preempted[-1].index(_PREEMPTED):]
    return 'finished', _result(workdir)
  diverged = [line for line in lines if line.startswith(_DIVERGED)]
  if diverged or runs_lib.read_run(workdir).diverged:
    return 'diverged', diverged[-1] if diverged else 'diverged'
  last = lines[-1] if lines else 'no output'
  return None, f'{last} (exit code {returncode}; see {workdir}/{LOG_FILE})'


def _log(line: str) -> None:
  logging.info('%s', line)


def run_local(points: Sequence[tuple[str, dict]], commands: Sequence[list],
              root: str, run_point: RunPoint = run_subprocess,
              log: Callable[[str], None] = _log) -> dict[str, int]:
  """Runs the points one after another; those that ended before are skipped.

  Args:
    points: (name, settings) per point.
    commands: each point's command.
    root: the sweep's directory.
    run_point: runs a command for a workdir, returns (exit code, end of its
      output).
    log: takes the console's lines.

  Returns:
    How many points were skipped, finished, diverged.

  Raises:
    SweepError: at the first point that fails other than by diverging, or
      when interrupted; that point has no status and runs again next time.
  """
  counts = dict.fromkeys(('skipped',) + ENDED, 0)
  for i, ((name, settings), command) in enumerate(zip(points, commands), 1):
    workdir = os.path.join(root, name)
    prefix = f'[{i}/{len(points)}] {name}'
    status = read_status(workdir)
    if status in ENDED:
      log(f'{prefix}: {status} before; skipped')
      counts['skipped'] += 1
      continue
    log(f'{prefix}: running (output: {os.path.join(workdir, LOG_FILE)})')
    start = time.monotonic()
    try:
      returncode, tail = run_point(command, workdir)
    except KeyboardInterrupt:
      raise SweepError(f'{name}: interrupted; run the sweep again to resume '
                       'it from its checkpoint') from None
    seconds = time.monotonic() - start
    status, message = point_ending(returncode, tail, workdir)
    if status is None:
      raise SweepError(f'{name}: {message}')
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, STATUS_FILE), 'w') as f:
      json.dump({'point': name, 'status': status, 'returncode': returncode,
                 'seconds': round(seconds, 1), 'message': message,
                 'settings': settings, 'command': command}, f, indent=1)
    log(f'{prefix}: {status} in {seconds:.0f} s: {message}')
    counts[status] += 1
  return counts


def launch(sweep_path: str, root: str, launcher: str = 'local',
           max_parallel: Optional[int] = None,
           extra_slurm: Sequence[str] = (),
           run_point: RunPoint = run_subprocess,
           log: Callable[[str], None] = _log) -> None:
  """Expands a sweep file's grid and hands its points to a launcher.

  Args:
    sweep_path: the sweep file.
    root: the sweep's directory, one workdir per point below it.
    launcher: 'local', 'print' or 'slurm'.
    max_parallel: slurm: at most this many tasks at once.
    extra_slurm: slurm: options added to (or replacing) `get_slurm()`'s.
    run_point: local: runs one point (tests pass a fake).
    log: local: takes the console's lines.

  Raises:
    SweepError: for a bad sweep file, or a point that failed (local).
  """
  module = load_sweep(sweep_path)
  points = grid_points(module.get_config(), module.get_grid())
  python = sys.executable if launcher == 'local' else 'python'
  commands = [point_command(sweep_path, root, name, settings, python)
              for name, settings in points]
  if launcher != 'slurm' and (max_parallel is not None or extra_slurm):
    raise SweepError('--max_parallel and --slurm_options are for '
                     '--launcher=slurm')
  if launcher == 'print':
    print('\n'.join(shlex.join(command) for command in commands))
  elif launcher == 'slurm':
    get_slurm = getattr(module, 'get_slurm', None)
    options = slurm.slurm_options(get_slurm() if get_slurm else (),
                                  extra_slurm)
    os.makedirs(root, exist_ok=True)
    script = os.path.join(os.path.abspath(root), slurm.SCRIPT_FILE)
    with open(script, 'w') as f:
      f.write(slurm.slurm_script(sweep_path, root, commands, options,
                                 max_parallel))
    print(f'sbatch {shlex.quote(script)}')
  else:
    counts = run_local(points, commands, os.path.abspath(root), run_point, log)
    log(f'Sweep done: {len(points)} points ({counts["finished"]} finished, '
        f'{counts["diverged"]} diverged, {counts["skipped"]} ended before).')
    print(sweep_summary.summarize(root))


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  args = flags.FLAGS
  if not args.root or bool(args.sweep) == args.summarize:
    sys.exit(USAGE)
  console.setup()
  # A sweep stopped with SIGTERM stops its run the same way as with Ctrl-C.
  signal.signal(signal.SIGTERM, signal.default_int_handler)
  try:
    if args.summarize:
      print(sweep_summary.summarize(args.root, args.target_top1))
    else:
      launch(args.sweep, args.root, args.launcher, args.max_parallel,
             args.slurm_options or ())
  except (SweepError, slurm.SlurmError, sweep_summary.SummaryError) as e:
    sys.exit(str(e))
  except KeyboardInterrupt:
    sys.exit('Sweep interrupted; run the same command to go on.')


def _define_flags() -> None:
  """Command-line flags, defined only when run as a program, not on import."""
  flags.DEFINE_string('sweep', None, 'The sweep file (configs/sweeps/).')
  flags.DEFINE_string('root', None, 'The sweep\'s directory: one run '
                      'directory per point; summary.md and summary.png.')
  flags.DEFINE_enum('launcher', 'local', ['local', 'print', 'slurm'],
                    'local: run the points one after another; print: print '
                    'their commands; slurm: write ROOT/sweep.sbatch.')
  flags.DEFINE_integer('max_parallel', None, 'slurm: run at most this many '
                       'tasks of the array at once.', lower_bound=1)
  flags.DEFINE_multi_string('slurm_options', [], 'slurm: an #SBATCH option, '
                            'e.g. --partition=gpu; repeat the flag for more. '
                            'Replaces the sweep file\'s option of that name.')
  flags.DEFINE_bool('summarize', False, 'Summarise the runs below --root '
                    'instead of running a sweep.')
  flags.DEFINE_float('target_top1', 0.5, 'summarize: the top-1 error (a '
                     'fraction) whose first reach the table counts.')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
