"""The console every command shows: what a user acts on, libraries' chatter hidden.

By default (absl's `--verbosity` unset or 0) the console shows the project's
own INFO records (the run's plan, one progress line per interval, results,
where the outputs are) and everyone's warnings and errors, each as
`HH:MM:SS message`. Libraries' INFO records (Orbax's handlers and barriers,
TFDS's dataset messages, JAX's backend probing) and TensorFlow's C++ INFO
lines are hidden. `--verbosity=1` (or more) shows every record again, in
absl's full format, libraries' INFO and DEBUG records included.

Every command calls `setup()` once its flags are parsed, before TensorFlow is
imported.
"""

import logging
import os

from absl import flags
from absl import logging as absl_logging

# Records from files under these paths are the project's own.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN = tuple(os.path.join(_ROOT, name) for name in
             ('inception' + os.sep, 'train.py', 'input_pipeline.py', 'main.py',
              'configs' + os.sep))


class _UserFilter(logging.Filter):
  """Passes the project's records and everyone's warnings."""

  def filter(self, record: logging.LogRecord) -> bool:
    return (record.levelno >= logging.WARNING or
            os.path.abspath(record.pathname).startswith(_OWN))


class _UserFormatter(logging.Formatter):
  """`HH:MM:SS message`; warnings and errors say so."""

  def format(self, record: logging.LogRecord) -> str:
    stamp = self.formatTime(record, '%H:%M:%S')
    level = '' if record.levelno < logging.WARNING else (
        f'{record.levelname.capitalize()}: ')
    text = f'{stamp} {level}{record.getMessage()}'
    if record.exc_info:
      text += '\n' + self.formatException(record.exc_info)
    return text


def verbose() -> bool:
  """Whether --verbosity asks for libraries' records (1 or more)."""
  return flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1


def setup() -> None:
  """Installs the user console on absl's handler, unless --verbosity >= 1.

  Call after the flags are parsed (absl's app.run does) and before
  TensorFlow is imported, so its C++ INFO lines are hidden too.
  """
  if verbose():
    return
  # TensorFlow reads these when it loads: 1 hides its C++ INFO lines; its
  # oneDNN kernels (for ops the input pipeline does not use) announce
  # themselves before that level applies, on CPUs that have them.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
  handler = absl_logging.get_absl_handler()
  handler.addFilter(_UserFilter())
  handler.setFormatter(_UserFormatter())
