"""Training curves: evaluation error over training, one line per run.

  python -m inception.plot RUN_DIR... --out=FILE.png [--x=epoch|hours|step]
      [--label=LABEL1,LABEL2,...] [--panels=loss,zero_fraction]

The paper's Figures 8 to 11: top-1 and top-5 error of the in-training
evaluations (`eval/top1_error`, `eval/top5_error` in metrics.jsonl, see
inception/runs.py) against training epochs, one line per network, side by
side; `--panels` adds the training loss and the fraction of zero activations
in the last feature map, from every training record. The x axis is the
records' `epoch`, `hours` (wall clock, carried across resumes) or `step`.
Records are taken one per step, the last one written, and drawn in the order
of the chosen axis; the `eval_<crops>crops/...` records of `--mode=eval` are
not points of the curves.

A line is labelled with its network and the settings in which the runs
differ (`--label` replaces them). A run without evaluation records gets one
line on stderr and is left out; when none has any, nothing is written and the
exit code is 1. A diverged run's lines end with an 'x'.

Readers need no TensorFlow: this reads JSON and draws with matplotlib's Agg
renderer, which is imported only when a figure is drawn.
"""

import dataclasses
import os
import sys
from typing import Callable, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np

from inception import console
from inception import predictions
from inception import runs as runs_lib

USAGE = ('usage: python -m inception.plot RUN_DIR... --out=FILE.png '
         '[--x=epoch|hours|step] [--label=LABEL1,LABEL2,...] '
         '[--panels=loss,zero_fraction]')
# The x axes: the record field each one reads is its name.
AXES = {'epoch': 'Epoch', 'hours': 'Hours', 'step': 'Step'}
# The optional panels of the training records, and their y labels.
PANELS = {'loss': 'Training loss',
          'zero_fraction': 'Zero activations, last feature map'}
_ERROR_PANELS = {'top1': 'Top-1 error (%)', 'top5': 'Top-5 error (%)'}
_TRAIN_KEYS = {'loss': 'train/loss', 'zero_fraction': 'train/zero_fraction'}
_OVERRIDES = 'model_overrides.'
# Config fields that say nothing about the network or recipe compared, so a
# difference in them does not label a line: the network is already named
# (model), where the data lives, how often the run reports, evaluates and
# saves, host-side buffering and resizing, and --mode=eval's own choices.
_NOT_IN_LABELS = ('model', 'data_dir', 'log_every_steps', 'eval_every_epochs',
                  'checkpoint_every_steps', 'checkpoints_to_keep',
                  'prefetch_batches', 'train_canvas_size', 'eval_step',
                  'eval_weights')
_ABSENT = object()  # A field one run's config lacks: differs from any value.
_DPI = 100
_PANEL_SIZE = (4.0, 3.4)  # Inches per panel; the legend goes below.


class PlotError(ValueError):
  """Runs or arguments that cannot be drawn; says which and why in one line."""


@dataclasses.dataclass(frozen=True)
class Curve:
  """The data behind one run's lines.

  Attributes:
    label: the legend's name of the run.
    x: the evaluation points on the chosen axis, ascending.
    top1: eval/top1_error at those points (a fraction).
    top5: eval/top5_error at those points.
    train_x: every training record on the same axis, ascending.
    loss: train/loss of those records.
    zero_fraction: train/zero_fraction of those records (NaN where absent).
    diverged: whether the run stopped on a non-finite value.
  """
  label: str
  x: np.ndarray
  top1: np.ndarray
  top5: np.ndarray
  train_x: np.ndarray
  loss: np.ndarray
  zero_fraction: np.ndarray
  diverged: bool


def _check(x: str, panels: Sequence[str]) -> None:
  """Raises PlotError for an unknown axis or panel."""
  if x not in AXES:
    raise PlotError(f'--x={x}: not one of {", ".join(AXES)}')
  unknown = [name for name in panels if name not in PANELS]
  if unknown:
    raise PlotError(f'--panels: {", ".join(unknown)} not one of '
                    f'{", ".join(PANELS)}')


def _points(records: list, key: str, x: str) -> list:
  """The records holding `key` and `x`, one per step, ascending in `x`.

  Of the records of one step the last one written is kept: a resumed run
  rewrites the steps after its checkpoint.
  """
  last = {}
  for record in records:
    if key in record and x in record:
      last[record['step']] = record
  return sorted(last.values(), key=lambda record: (record[x], record['step']))


def _column(records: list, key: str) -> np.ndarray:
  """One field of the records as float64, NaN where a record lacks it."""
  return np.array([record.get(key, np.nan) for record in records],
                  dtype=np.float64)


def _directory_name(path: str) -> str:
  return os.path.basename(os.path.normpath(path))


def labels_for(runs: list[runs_lib.Run]) -> list[str]:
  """Legend labels: the network and the settings in which the runs differ.

  Args:
    runs: the runs drawn together.

  Returns:
    One label per run, e.g. 'Inception-ResNet-v2, residual_scales=(0.1, 0.1,
    0.1)'; a run without a saved config is named by its directory, and runs
    whose labels coincide get their directory's name added.
  """
  flats = [None if run.config is None else runs_lib.flat_config(run.config)
           for run in runs]
  configured = [flat for flat in flats if flat is not None]
  keys = dict.fromkeys(key for flat in configured for key in flat)
  differing = [key for key in keys if key not in _NOT_IN_LABELS and
               len({repr(flat.get(key, _ABSENT)) for flat in configured}) > 1]
  labels = []
  for run, flat in zip(runs, flats):
    if flat is None or 'model' not in flat:
      labels.append(_directory_name(run.path))
      continue
    parts = [predictions.network_name(flat['model'])]
    parts += [f'{key.removeprefix(_OVERRIDES)}={flat[key]}'
              for key in differing if key in flat]
    labels.append(', '.join(parts))
  return [f'{label} ({_directory_name(run.path)})'
          if labels.count(label) > 1 and label != _directory_name(run.path)
          else label for run, label in zip(runs, labels)]


def curves(runs: list[runs_lib.Run], x: str = 'epoch',
           labels: Optional[list[str]] = None) -> list[Curve]:
  """The data of each run's lines.

  Args:
    runs: the runs, in legend order.
    x: the axis, 'epoch', 'hours' or 'step'.
    labels: one per run; None for `labels_for(runs)`.

  Returns:
    One Curve per run; a run without evaluation records has empty `x`,
    `top1` and `top5`.

  Raises:
    PlotError: for an unknown axis or a wrong number of labels.
  """
  _check(x, ())
  labels = labels_for(runs) if labels is None else list(labels)
  if len(labels) != len(runs):
    raise PlotError(f'--label: {len(labels)} labels for {len(runs)} runs; '
                    'give one per RUN_DIR')
  result = []
  for run, label in zip(runs, labels):
    evals = _points(run.records, runs_lib.EVAL_TOP1, x)
    train = _points(run.records, _TRAIN_KEYS['loss'], x)
    result.append(Curve(
        label=label, x=_column(evals, x),
        top1=_column(evals, runs_lib.EVAL_TOP1),
        top5=_column(evals, runs_lib.EVAL_TOP5), train_x=_column(train, x),
        loss=_column(train, _TRAIN_KEYS['loss']),
        zero_fraction=_column(train, _TRAIN_KEYS['zero_fraction']),
        diverged=run.diverged))
  return result


def _legend_label(curve: Curve) -> str:
  return f'{curve.label} (diverged)' if curve.diverged else curve.label


def _draw_lines(ax, panel: str, curve: Curve, colour: str) -> None:
  """One run's line on one panel; a diverged run's ends with an 'x'."""
  if panel in _ERROR_PANELS:
    xs, ys, marker = curve.x, 100.0 * getattr(curve, panel), 'o'
  else:
    xs, ys, marker = curve.train_x, getattr(curve, panel), None
  label = _legend_label(curve) if panel == 'top1' else '_nolegend_'
  ax.plot(xs, ys, color=colour, marker=marker, markersize=3, linewidth=1.2,
          label=label)
  finite = np.isfinite(ys)
  if curve.diverged and finite.any():
    ax.plot(xs[finite][-1:], ys[finite][-1:], linestyle='none', marker='x',
            markersize=8, markeredgewidth=2, color=colour, label='_nolegend_')


def draw(curves: list[Curve], out: str, x: str = 'epoch',
         panels: tuple[str, ...] = (), title: Optional[str] = None) -> None:
  """Draws the curves side by side and writes the figure.

  Args:
    curves: the runs' data (`curves()`), one colour each, in legend order.
    out: the file to write; its extension names the format (PNG by default).
      Its folder is made if needed; the file appears complete or not at all.
    x: the axis the curves were made for.
    panels: extra panels after the top-1 and top-5 error: 'loss',
      'zero_fraction'.
    title: the figure's title; None for none.

  Raises:
    PlotError: for no curves, an unknown axis, panel or file format.
  """
  # Imported here so that importing this module stays light. The figure is
  # drawn on an Agg canvas of its own, without pyplot: nothing changes the
  # backend of, or keeps figures alive in, the process that calls this.
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top
  _check(x, panels)
  if not curves:
    raise PlotError(f'{out}: no curves to draw')
  names = tuple(_ERROR_PANELS) + tuple(panels)
  columns = min(len(curves), 2)
  legend_rows = -(-len(curves) // columns)
  fig = mpl_figure.Figure(
      figsize=(_PANEL_SIZE[0] * len(names), _PANEL_SIZE[1] + 0.22 * legend_rows),
      dpi=_DPI, layout='constrained')
  canvas = backend_agg.FigureCanvasAgg(fig)
  fmt = os.path.splitext(out)[1][1:].lower() or 'png'
  if fmt not in canvas.get_supported_filetypes():
    raise PlotError(f'{out}: cannot write .{fmt} files; use .png')
  axes = fig.subplots(1, len(names), squeeze=False)[0]
  for i, curve in enumerate(curves):
    for ax, name in zip(axes, names):
      _draw_lines(ax, name, curve, f'C{i % 10}')
  for ax, name in zip(axes, names):
    ax.set_xlabel(AXES[x])
    ax.set_ylabel({**_ERROR_PANELS, **PANELS}[name])
    ax.grid(True, alpha=0.3)
    if name == 'zero_fraction':
      # On the whole scale, so that a network whose features die (near 1)
      # stands out from the sparse features of a healthy one.
      ax.set_ylim(0.0, 1.0)
  fig.legend(loc='outside lower center', ncols=columns,
             frameon=False, fontsize='small')
  if title:
    fig.suptitle(title)
  if os.path.dirname(out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
  temporary = out + '.tmp'
  fig.savefig(temporary, format=fmt, dpi=_DPI)
  os.replace(temporary, out)


def _why_not_drawn(run: runs_lib.Run, x: str) -> Optional[str]:
  """Why a run has no line on the figure; None if it has one."""
  evals = [record for record in run.records if runs_lib.EVAL_TOP1 in record]
  if not evals:
    if run.diverged:
      return (f'no evaluation records in {runs_lib.METRICS_FILE}: it '
              'diverged before its first evaluation')
    return (f'no evaluation records in {runs_lib.METRICS_FILE}; train with '
            '--config.eval_every_epochs=1 to draw its curve')
  if not any(x in record for record in evals):
    return f"its evaluation records have no '{x}'; draw it with --x=epoch"
  return None


def _log_warning(line: str) -> None:
  logging.warning('%s', line)


def plot_runs(paths: list[str], out: str, x: str = 'epoch',
              labels: Optional[list[str]] = None,
              panels: tuple[str, ...] = (), *,
              warn: Callable[[str], None] = _log_warning) -> list[Curve]:
  """Reads runs, says which cannot be drawn, and draws the others.

  Args:
    paths: the runs' directories, in legend order.
    out: the figure to write (see `draw`); not written if no run has
      evaluation records.
    x: the axis, 'epoch', 'hours' or 'step'.
    labels: one per path; None for `labels_for` of the runs drawn.
    panels: extra panels, 'loss' and 'zero_fraction'.
    warn: called with one line for each run left out (by default, a logged
      warning).

  Returns:
    The curves drawn; empty if none was.

  Raises:
    PlotError: for a path that is not a run directory, a wrong number of
      labels, an unknown axis or panel.
  """
  _check(x, panels)
  if labels is not None and len(labels) != len(paths):
    raise PlotError(f'--label: {len(labels)} labels for {len(paths)} runs; '
                    'give one per RUN_DIR')
  for path in paths:
    if not runs_lib.is_run(path):
      below = runs_lib.find_runs(path) if os.path.isdir(path) else []
      hint = (f'; it holds {len(below)} runs: give them one by one'
              if below else '')
      raise PlotError(f'{path}: not a run directory (no '
                      f'{runs_lib.METRICS_FILE} or checkpoints){hint}')
  drawn, chosen = [], []
  for i, path in enumerate(paths):
    run = runs_lib.read_run(path)
    problem = _why_not_drawn(run, x)
    if problem:
      warn(f'{path}: {problem}')
    else:
      drawn.append(run)
      chosen.append(None if labels is None else labels[i])
  if not drawn:
    return []
  result = curves(drawn, x, None if labels is None else chosen)
  draw(result, out, x, panels)
  logging.info('Training curves of %d run(s): %s', len(result), out)
  return result


def main(argv: list[str]) -> None:
  paths = argv[1:]
  args = flags.FLAGS
  if not paths or not args.out:
    sys.exit(USAGE)
  console.setup()

  def warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

  try:
    drawn = plot_runs(paths, args.out, args.x, args.label, tuple(args.panels),
                      warn=warn)
  except PlotError as e:
    sys.exit(str(e))
  if not drawn:
    sys.exit(1)


def _define_flags() -> None:
  """Command-line flags, defined only when run as a program, not on import."""
  flags.DEFINE_string('out', None, 'The figure to write, e.g. curves.png.')
  flags.DEFINE_enum('x', 'epoch', list(AXES), 'The horizontal axis.')
  flags.DEFINE_list('label', None, 'Legend labels, one per RUN_DIR, in order '
                    '(default: the network and the settings that differ).')
  flags.DEFINE_list('panels', [], 'Panels of the training records after the '
                    f'error panels: {", ".join(PANELS)}.')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
