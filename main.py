"""Entry point: `python main.py --config=configs/demo.py --workdir=DIR [--mode=eval]`.

Parses the flags, joins the processes of a multi-host job, and hands over to
`train.train_and_evaluate` (--mode=train) or `inception.evaluation`
(--mode=eval: 1-, 12- or 144-crop evaluation of the workdir's checkpoint, or
of converted weights). A bad config, a missing dataset or checkpoint, a
diverging run or a full disk ends with one line on stderr and a non-zero exit
code.

Multi-host: pass `--coordinator_address`, `--num_processes` and
`--process_id`, or leave them out under SLURM (or Open MPI, or a TPU pod) and
JAX finds them; a single process skips this step.
"""

import errno
import os
import sys

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from inception import checkpointing
from inception import compilation_cache
from inception import console
from inception import evaluation
from inception import multihost
from inception import plan
from inception import runs
import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, 'Training configuration file (see configs/).',
    lock_config=True)
flags.DEFINE_string('workdir', None,
                    'Directory for checkpoints and metrics; a run resumes '
                    'from the checkpoint it finds there.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval'],
                  'train: train (or resume) and evaluate; eval: evaluate the '
                  'newest checkpoint (or config.eval_step, or '
                  'config.init_from) with config.eval_views.')
flags.DEFINE_string('coordinator_address', None,
                    'host:port of process 0 in a multi-host job.')
flags.DEFINE_integer('num_processes', None, 'Processes in the job.')
flags.DEFINE_integer('process_id', None, 'Index of this process.')
# absl's --verbosity: unset or 0 shows the project's console only; 1 or more
# adds every library's INFO (and DEBUG) records (inception/console.py).
flags.mark_flags_as_required(['config', 'workdir'])


def parse_flags(argv: list[str]) -> list[str]:
  """Parses the flags; a misspelt or mistyped config field fails in one line.

  Args:
    argv: the command line.

  Returns:
    The arguments left after the flags.
  """
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    # A locked ConfigDict rejects fields that configs/default.py lacks.
    name = str(e.args[0] if e.args else e).strip('\'"')
    sys.exit(f'Config error: no field {name!r} in the config; check the '
             f'spelling against configs/default.py')
  except flags.Error as e:
    sys.exit(f'Config error: {e}')


def _train(config, workdir: str) -> None:
  """Trains, then prints the final evaluation and where the outputs are."""
  state, scalars = train.train_and_evaluate(config, workdir)
  if jax.process_index() != 0:
    return
  if 'eval/top1_error' in scalars:
    print(evaluation.table({
        'network': config.model, 'views': config.eval_views,
        'top1_error': scalars['eval/top1_error'],
        'top5_error': scalars['eval/top5_error']}))
  workdir = os.path.abspath(workdir)
  print(f'Checkpoints: {os.path.join(workdir, "checkpoints")} (step '
        f'{int(state.step)})\n'
        f'Metrics: {os.path.join(workdir, runs.METRICS_FILE)} '
        f'(TensorBoard: tensorboard --logdir {workdir})')
  if any('eval/top1_error' in r for r in runs.read_metrics(workdir)):
    from inception import plot  # pylint: disable=g-import-not-at-top
    curves = os.path.join(workdir, 'curves.png')
    plot.plot_runs([workdir], curves, panels=('loss', 'zero_fraction'))
    print(f'Curves: {curves}')


def _evaluate(config, workdir: str) -> None:
  """Evaluates, then prints the paper's table row and the result files."""
  record = evaluation.evaluate_workdir(config, workdir)
  if 'json' in record:
    print(f'{evaluation.table(record)}\nResults: {record["json"]}\n'
          f'Predictions: {record["predictions"]}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  console.setup()
  multihost.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                       FLAGS.process_id)
  compilation_cache.setup(FLAGS.config.compilation_cache_dir)
  try:
    if FLAGS.mode == 'eval':
      _evaluate(FLAGS.config, FLAGS.workdir)
    else:
      _train(FLAGS.config, FLAGS.workdir)
  except plan.ConfigError as e:
    sys.exit(f'Config error: {e}')
  except train.NonFiniteError as e:
    sys.exit(f'Training diverged: {e}')
  except checkpointing.DiskFullError as e:
    sys.exit(f'Disk full: {e}')
  except OSError as e:
    if e.errno != errno.ENOSPC:
      raise
    sys.exit(f'Disk full: {e.filename or FLAGS.workdir}: {e.strerror}; free '
             f'space (or move the workdir), then run the same command to '
             f'resume from the last checkpoint')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
