"""Sweep summaries: a table and a figure of any directory of runs.

`summarize(root)` finds the run directories below `root` (a sweep's, or
runs started by hand or by a cluster's scheduler; inception/runs.py reads
them), groups them by their saved config minus `seed`, and writes
`ROOT/summary.md` (one row per group: the settings that differ between
groups, the final top-1 and top-5 error as mean ± std over seeds, the steps
to reach a target top-1 error, the final and peak `train/zero_fraction`,
divergences; runs that cannot be placed are listed as incomplete) and
`ROOT/summary.png` (every run's error curves and zero fraction,
inception/plot.py).
"""

import os
from typing import Any, Optional, Sequence

from absl import logging
import numpy as np

from inception import plot
from inception import runs as runs_lib

SUMMARY_MD = 'summary.md'
SUMMARY_PNG = 'summary.png'
# Characters of a legend label that fit below summary.png's two columns;
# longer ones are replaced by the run's directory name.
_MAX_LABEL = 60


class SummaryError(ValueError):
  """A directory that holds nothing to summarise."""


def _differing(flats: Sequence[dict]) -> list[str]:
  """The fields whose values are not the same in all of `flats`."""
  keys = dict.fromkeys(key for flat in flats for key in flat)
  absent = object()
  return [key for key in keys
          if len({repr(flat.get(key, absent)) for flat in flats}) > 1]


def _why_incomplete(run: runs_lib.Run) -> Optional[str]:
  """Why a run has no place in the table; None when it has one."""
  ended = f'diverged at step {run.records[-1]["step"]}' if run.diverged else (
      f'last training step {run.last_step}')
  if run.config is None:
    return f'no complete checkpoint, so no config ({ended})'
  if not run.eval_records() and not run.diverged:
    return f'no evaluation records yet ({ended})'
  return None


def group_runs(runs: Sequence[runs_lib.Run]) -> tuple[list, list, list]:
  """Groups runs whose saved configs differ only in `seed`.

  Args:
    runs: the runs.

  Returns:
    (fields in which the groups differ, [(settings, runs)] per group in
    the order of their settings, [(run, why)] for runs left out).
  """
  groups, incomplete = {}, []
  for run in runs:
    why = _why_incomplete(run)
    if why:
      incomplete.append((run, why))
      continue
    flat = runs_lib.flat_config(run.config)
    flat.pop('seed', None)
    key = repr(sorted(flat.items(), key=lambda item: item[0]))
    groups.setdefault(key, (flat, []))[1].append(run)
  differing = _differing([flat for flat, _ in groups.values()])
  rows = [({key: flat.get(key) for key in differing}, members)
          for flat, members in groups.values()]
  try:
    rows = sorted(rows, key=lambda row: tuple((v is None, v)
                                              for v in row[0].values()))
  except TypeError:
    pass  # Values of mixed types: the order of the runs' directories.
  return differing, rows, incomplete


def _run_numbers(run: runs_lib.Run, target_top1: float) -> dict:
  """One run's final errors, step reaching the target, zero fractions."""
  evals = run.eval_records()
  zeros = [r['train/zero_fraction'] for r in run.records
           if np.isfinite(r.get('train/zero_fraction', np.nan))]
  return {
      'top1': evals[-1][runs_lib.EVAL_TOP1] if evals else None,
      'top5': evals[-1][runs_lib.EVAL_TOP5] if evals else None,
      'step': evals[-1]['step'] if evals else None,
      'reached': next((r['step'] for r in evals
                       if r[runs_lib.EVAL_TOP1] <= target_top1), None),
      'zero_final': zeros[-1] if zeros else None,
      'zero_peak': max(zeros) if zeros else None,
      'diverged': run.diverged}


def mean_std(values: Sequence[float], scale: float = 100.0) -> str:
  """'mean ± std' of `values * scale`, std over them with ddof=1.

  Args:
    values: one number per seed.
    scale: 100 for percentages.

  Returns:
    E.g. '12.00 ± 2.00'; '12.00 ± —' for one value, '—' for none.
  """
  if not values:
    return '—'
  values = scale * np.asarray(values, dtype=np.float64)
  std = f'{np.std(values, ddof=1):.2f}' if len(values) > 1 else '—'
  return f'{np.mean(values):.2f} ± {std}'


def _row_cells(members: Sequence[runs_lib.Run], target_top1: float) -> list:
  """The numeric cells of one group's row."""
  numbers = [_run_numbers(run, target_top1) for run in members]
  kept = [n for n in numbers if not n['diverged'] and n['top1'] is not None]
  counted = '' if len(kept) == len(numbers) else f' (n={len(kept)})'
  steps = sorted({n['step'] for n in numbers if n['step'] is not None})
  reached = [n['reached'] for n in numbers if n['reached'] is not None]

  def mean(key: str) -> str:
    values = [n[key] for n in numbers if n[key] is not None]
    return f'{np.mean(values):.3f}' if values else '—'

  return [
      str(len(numbers)),
      '—' if not steps else str(steps[0]) if len(steps) == 1 else
      f'{steps[0]}–{steps[-1]}',
      mean_std([n['top1'] for n in kept]) + counted,
      mean_std([n['top5'] for n in kept]) + counted,
      f'{np.mean(reached):.0f} ({len(reached)}/{len(numbers)})' if reached
      else f'— (0/{len(numbers)})',
      mean('zero_final'), mean('zero_peak'),
      str(sum(n['diverged'] for n in numbers))]


def _column_names(fields: Sequence[str]) -> list[str]:
  short = [field.rsplit('.', 1)[-1] for field in fields]
  return short if len(set(short)) == len(short) else list(fields)


def _count(n: int, noun: str) -> str:
  return f'{n} {noun}' if n == 1 else f'{n} {noun}s'


def _cell(value: Any) -> str:
  return str(value).replace('|', '\\|')


def summary_markdown(root: str, target_top1: float, differing: Sequence[str],
                     rows: Sequence, incomplete: Sequence) -> str:
  """The summary table, its legend and the runs left out, as markdown.

  Args:
    root: the directory summarised.
    target_top1: the top-1 error (a fraction) whose first reach is counted.
    differing: the fields in which the groups differ.
    rows: (settings, runs) per group (`group_runs`).
    incomplete: (run, why) per run left out.

  Returns:
    The text.
  """
  settings = _column_names(differing) if differing else ['model']
  target = f'{100 * target_top1:g}%'
  header = settings + [
      'seeds', 'final step', 'top-1 error (%)', 'top-5 error (%)',
      f'steps to top-1 ≤ {target} (reached)', 'zero fraction, final',
      'zero fraction, peak', 'diverged']
  total = sum(len(members) for _, members in rows) + len(incomplete)
  lines = [f'# Summary of {root}', '',
           f'{_count(total, "run")}, {_count(len(rows), "point")} (runs '
           'whose configs differ only in seed), '
           f'{len(incomplete)} incomplete. Target top-1 error: {target}.', '',
           'Errors: each run\'s last in-training evaluation, mean ± std over '
           'the seeds that did not diverge (std with ddof=1; n= when fewer '
           'than all); steps to target: the first evaluation at or below it, '
           'mean over the seeds that reached it; zero fraction: '
           '`train/zero_fraction`, its last and its largest value, mean over '
           'seeds.', '',
           '| ' + ' | '.join(header) + ' |',
           '|' + '---|' * len(header)]
  for values, members in rows:
    names = ([_cell(v) for v in values.values()] if differing else
             [_cell(members[0].config['model'])])
    lines.append('| ' + ' | '.join(names + _row_cells(members, target_top1))
                 + ' |')
  if incomplete:
    lines += ['', 'Incomplete runs (not in the table):', '']
    lines += [f'- `{run.path}`: {why}' for run, why in incomplete]
  return '\n'.join(lines) + '\n'


def _draw(path: str, differing: Sequence[str], rows: Sequence) -> bool:
  """summary.png: every run with evaluations, labelled by point and seed.

  Where the runs differ in so many fields that a label would not fit below
  the figure, a run is labelled by its directory instead.
  """
  drawn, labels = [], []
  for values, members in rows:
    point = ', '.join(f'{name}={_cell(value)}' for name, value in
                      zip(_column_names(differing), values.values()))
    for run in members:
      if run.eval_records():
        label = ', '.join(filter(None, [point,
                                        f'seed {run.config["seed"]}']))
        drawn.append(run)
        labels.append(label if len(label) <= _MAX_LABEL else
                      os.path.basename(os.path.normpath(run.path)))
  if not drawn:
    return False
  plot.draw(plot.curves(drawn, x='epoch', labels=labels), path, x='epoch',
            panels=('zero_fraction',))
  return True


def summarize(root: str, target_top1: float = 0.5) -> str:
  """Writes ROOT/summary.md and ROOT/summary.png of the runs below `root`.

  Args:
    root: a directory of run directories (at any depth).
    target_top1: the top-1 error, a fraction, for the steps-to-target column.

  Returns:
    The markdown.

  Raises:
    SummaryError: when no run is found.
  """
  paths = runs_lib.find_runs(root)
  if not paths:
    raise SummaryError(f'{root}: no run directories below it (none has '
                     f'{runs_lib.METRICS_FILE} or a checkpoint)')
  differing, rows, incomplete = group_runs(
      [runs_lib.read_run(path) for path in paths])
  text = summary_markdown(root, target_top1, differing, rows, incomplete)
  with open(os.path.join(root, SUMMARY_MD), 'w') as f:
    f.write(text)
  figure = os.path.join(root, SUMMARY_PNG)
  if _draw(figure, differing, rows):
    logging.info('Summary: %s, %s', os.path.join(root, SUMMARY_MD), figure)
  else:
    logging.info('Summary: %s (no run has evaluation records to draw)',
                 os.path.join(root, SUMMARY_MD))
  return text
