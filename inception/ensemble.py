"""Ensembles of stored evaluations, as the paper's Table 4.

  python -m inception.ensemble MEMBER... [--out=FILE.md]

Each MEMBER is an evaluation's `<name>.predictions.npz` or its `<name>.json`
(see inception/predictions.py). The members must hold the same examples of
the same dataset, split and classes; any other is refused in one line. The
ensemble's class probabilities are the plain mean of the members'
view-averaged softmaxes, as the paper's ensembles average them; members may
be different networks, checkpoints, weights or views.

The table has one row per member, with its own top-1 and top-5 error
recomputed from its stored (float16) probabilities, and a last row for the
ensemble. A single member is allowed: its ensemble row equals its own row. A
member given twice (say as its JSON and as its npz, as `eval/*` matches both)
is refused, since it would silently count twice in the mean.

Nothing is evaluated again; this needs NumPy only.
"""

import collections
import os
import sys

from absl import app
from absl import flags
import numpy as np

from inception import predictions

USAGE = 'usage: python -m inception.ensemble MEMBER... [--out=FILE.md]'


def _source(member: predictions.Predictions) -> str:
  """The real path of the predictions file a member was read from."""
  path = member.path
  if not path.endswith('.npz'):  # An eval JSON names its predictions file.
    path = os.path.join(os.path.dirname(path), member.info['predictions'])
  return os.path.realpath(path)


def _errors(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Top-1 and top-5 error rates, with the eval step's tie rule."""
  errors = predictions.topk_errors(probabilities, labels)
  return {'top1': float(errors[1].mean()), 'top5': float(errors[5].mean())}


def ensemble_name(networks: list[str]) -> str:
  """Names an ensemble by its members' networks, in order of first appearance.

  Args:
    networks: the members' model names, e.g. ['inception_v4',
      'inception_resnet_v2', 'inception_resnet_v2'].

  Returns:
    e.g. 'Ensemble: Inception-v4 + Inception-ResNet-v2 x2'.
  """
  counts = collections.Counter(networks)
  parts = []
  for network in dict.fromkeys(networks):
    count = counts[network]
    name = predictions.network_name(network)
    parts.append(name if count == 1 else f'{name} x{count}')
  return 'Ensemble: ' + ' + '.join(parts)


def ensemble(members: list[predictions.Predictions]
             ) -> tuple[np.ndarray, list[dict]]:
  """Averages the members' probabilities and tabulates every error.

  Args:
    members: one or more loaded predictions.

  Returns:
    (probabilities float32 [N, classes], the plain mean over the members;
     rows, one dict per member then one for the ensemble, each with
     'network' (the paper's name), 'models', 'crops' (e.g. '144' or
     '12/144'), 'top1' and 'top5' (error rates in [0, 1])).

  Raises:
    PredictionsError: in one line, when there are no members, a member is
      given twice, or members differ in dataset, split, classes or examples.
  """
  if not members:
    raise predictions.PredictionsError('no members given; ' + USAGE)
  seen = {}
  for member in members:
    source = _source(member)
    if source in seen:
      raise predictions.PredictionsError(
          f'{member.path} and {seen[source]} are the same evaluation; give '
          f'each member once')
    seen[source] = member.path
  predictions.check_same_examples(members)
  labels = members[0].labels
  rows = []
  for member in members:
    rows.append({'network': predictions.network_name(member.info['network']),
                 'models': 1,
                 'crops': str(predictions.num_crops(member.info['views'])),
                 **_errors(member.probabilities, labels)})
  probabilities = np.mean([m.probabilities for m in members], axis=0,
                          dtype=np.float32)
  crops = sorted({predictions.num_crops(m.info['views']) for m in members})
  rows.append({'network': ensemble_name([m.info['network'] for m in members]),
               'models': len(members),
               'crops': '/'.join(str(c) for c in crops),
               **_errors(probabilities, labels)})
  return probabilities, rows


def format_table(rows: list[dict]) -> str:
  """The paper's Table 4 layout, as markdown.

  Args:
    rows: as `ensemble` returns them.

  Returns:
    The table, one line per row after the header, no trailing newline.
  """
  lines = ['| Network | Models | Crops | Top-1 | Top-5 |',
           '|---|---|---|---|---|']
  for row in rows:
    lines.append(f"| {row['network']} | {row['models']} | {row['crops']} | "
                 f"{predictions.percent(row['top1'])} | "
                 f"{predictions.percent(row['top5'])} |")
  return '\n'.join(lines)


def report(members: list[predictions.Predictions]) -> str:
  """The table, then which examples and which member files it covers.

  Args:
    members: one or more loaded predictions.

  Returns:
    Markdown text ending in a newline.

  Raises:
    PredictionsError: as `ensemble`.
  """
  _, rows = ensemble(members)
  info = members[0].info
  lines = [format_table(rows), '',
           f"{members[0].keys.size} examples of {info.get('dataset')} "
           f"{info.get('eval_split')} ({info.get('num_classes')} classes); "
           'the ensemble row scores the mean of the members\' '
           'probabilities.', '', 'Members, in row order:', '']
  for i, member in enumerate(members, 1):
    lines.append(f"{i}. {member.path} (weights {member.info.get('weights')}, "
                 f"step {member.info.get('checkpoint_step')})")
  return '\n'.join(lines) + '\n'


def main(argv: list[str]) -> None:
  paths = argv[1:]
  if not paths:
    sys.exit(USAGE)
  try:
    text = report([predictions.load(path) for path in paths])
  except predictions.PredictionsError as e:
    sys.exit(str(e))
  predictions.print_report(text, flags.FLAGS.out)


def _define_flags() -> None:
  """Command-line flags, defined only when run as a program, not on import."""
  flags.DEFINE_string('out', None, 'Also write the markdown to this file.')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
