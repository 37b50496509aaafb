"""Entry point: `python main.py --config=configs/demo.py --workdir=DIR`.

Parses the flags, joins the processes of a multi-host job, and hands over to
`train.train_and_evaluate`. A bad config, a missing dataset or a diverging
run ends with one line on stderr and a non-zero exit code.

Multi-host: pass `--coordinator_address`, `--num_processes` and
`--process_id`, or leave them out under SLURM (or Open MPI, or a TPU pod) and
JAX finds them; a single process skips this step.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from inception import multihost
from inception import plan
import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, 'Training configuration file (see configs/).',
    lock_config=True)
flags.DEFINE_string('workdir', None,
                    'Directory for checkpoints and metrics; a run resumes '
                    'from the checkpoint it finds there.')
flags.DEFINE_enum('mode', 'train', ['train'], 'What to run.')
flags.DEFINE_string('coordinator_address', None,
                    'host:port of process 0 in a multi-host job.')
flags.DEFINE_integer('num_processes', None, 'Processes in the job.')
flags.DEFINE_integer('process_id', None, 'Index of this process.')
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  multihost.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                       FLAGS.process_id)
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except plan.ConfigError as e:
    sys.exit(f'Config error: {e}')
  except train.NonFiniteError as e:
    sys.exit(f'Training diverged: {e}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
