"""Stored evaluation results: one JSON record and its per-example predictions.

An evaluation (`python main.py --mode=eval`) writes two files under
`WORKDIR/eval/`:

- `<name>.json`: the record: top-1 and top-5 error, the number of examples,
  every setting that changes the result (network, overrides, image size,
  views, crop, weights, checkpoint step, dataset, split, classes) and the time
  taken; `predictions` names the file below, relative to the JSON's folder.
- `<name>.predictions.npz` (plain NumPy arrays, no pickles):
  `keys` int64 [N], the examples' record indices in the TFDS split the record
  names (record i of 'validation' has key i, also when a slice such as
  'validation[:40]' was evaluated), ascending; `labels` int32 [N];
  `probabilities` float16 [N, classes], the softmax averaged over the views;
  `info`, the JSON record as a string, so the file describes itself.

Ensembles, comparisons and figures read these files and never evaluate again.
Readers need NumPy only.
"""

import dataclasses
import json
import os
import sys
from typing import Any, Optional

import numpy as np

PREDICTIONS_SUFFIX = '.predictions.npz'

# The paper's names of the networks, for tables.
NETWORK_NAMES = {
    'inception_v3': 'Inception-v3',
    'inception_v4': 'Inception-v4',
    'inception_resnet_v1': 'Inception-ResNet-v1',
    'inception_resnet_v2': 'Inception-ResNet-v2',
    'inception_resnet_v2_paper': 'Inception-ResNet-v2 (paper)',
}


class PredictionsError(ValueError):
  """A predictions file or eval record that cannot be used; says which and why."""


@dataclasses.dataclass(frozen=True)
class Predictions:
  """One evaluation's per-example results.

  Attributes:
    info: the eval record (see the module docstring).
    keys: int64 [N] record indices in the split, ascending.
    labels: int32 [N].
    probabilities: float32 [N, classes], view-averaged softmax.
    path: the file they were read from.
  """
  info: dict
  keys: np.ndarray
  labels: np.ndarray
  probabilities: np.ndarray
  path: str


def network_name(model: str) -> str:
  """The paper's name of a network, e.g. 'Inception-ResNet-v2'."""
  return NETWORK_NAMES.get(model, model)


def num_crops(views: str) -> int:
  """Views per image: 1 for 'single', else the number ('12', '144')."""
  return 1 if views == 'single' else int(views)


def percent(error: float) -> str:
  """An error rate as the tables print it, e.g. '3.40%'."""
  return f'{100.0 * error:.2f}%'


def save(directory: str, name: str, info: dict, keys: np.ndarray,
         labels: np.ndarray, probabilities: np.ndarray) -> tuple[str, str]:
  """Writes `<name>.json` and `<name>.predictions.npz` into `directory`.

  Both are written to temporary files and renamed, so a reader never sees a
  half-written result.

  Args:
    directory: created if needed (WORKDIR/eval).
    name: file stem, e.g. 'step625-ema-144crops'.
    info: the eval record; 'predictions' is set here.
    keys: [N] record indices, ascending.
    labels: [N] integer labels.
    probabilities: [N, classes] probabilities; stored as float16.

  Returns:
    (JSON path, predictions path).
  """
  os.makedirs(directory, exist_ok=True)
  info = {**info, 'predictions': name + PREDICTIONS_SUFFIX}
  npz_path = os.path.join(directory, name + PREDICTIONS_SUFFIX)
  json_path = os.path.join(directory, name + '.json')
  with open(npz_path + '.tmp', 'wb') as f:
    np.savez(f, keys=np.asarray(keys, np.int64),
             labels=np.asarray(labels, np.int32),
             probabilities=np.asarray(probabilities, np.float16),
             info=np.array(json.dumps(info)))
  os.replace(npz_path + '.tmp', npz_path)
  with open(json_path + '.tmp', 'w') as f:
    json.dump(info, f, indent=2)
    f.write('\n')
  os.replace(json_path + '.tmp', json_path)
  return json_path, npz_path


def _npz_path(path: str) -> str:
  """The predictions file of a member given as an eval JSON or an npz."""
  if path.endswith('.npz'):
    return path
  try:
    with open(path) as f:
      info = json.load(f)
  except OSError as e:
    raise PredictionsError(f'{path}: cannot read it ({e.strerror})') from None
  except ValueError:
    raise PredictionsError(f'{path}: not an eval JSON or a predictions '
                           f'file') from None
  if not isinstance(info, dict) or 'predictions' not in info:
    raise PredictionsError(f'{path}: an eval JSON without predictions; '
                           f'evaluate again with main.py --mode=eval')
  return os.path.join(os.path.dirname(path), info['predictions'])


def load(path: str) -> Predictions:
  """Reads a predictions file, given it or its eval JSON.

  Args:
    path: `<name>.predictions.npz` or `<name>.json`.

  Returns:
    The predictions, probabilities as float32.

  Raises:
    PredictionsError: in one line, naming the file and what is wrong.
  """
  npz = _npz_path(path)
  try:
    with np.load(npz, allow_pickle=False) as data:
      info = json.loads(str(data['info']))
      keys, labels = data['keys'], data['labels']
      probabilities = data['probabilities'].astype(np.float32)
  except FileNotFoundError:
    raise PredictionsError(f'{path}: predictions file {npz} is '
                           f'missing') from None
  except (OSError, ValueError, KeyError) as e:
    raise PredictionsError(f'{npz}: not a predictions file of '
                           f'inception ({type(e).__name__})') from None
  return Predictions(info, keys, labels, probabilities, path)


def check_same_examples(members: list[Predictions]) -> None:
  """Refuses members of other datasets, splits, classes or examples.

  Args:
    members: at least one.

  Raises:
    PredictionsError: one line naming the first member that differs from the
      first and how.
  """
  first = members[0]
  for other in members[1:]:
    for field in ('dataset', 'eval_split_name', 'num_classes'):
      if first.info.get(field) != other.info.get(field):
        raise PredictionsError(
            f'{other.path} has {field} {other.info.get(field)!r}, '
            f'{first.path} has {first.info.get(field)!r}; combine '
            f'evaluations of the same examples only')
    if not np.array_equal(first.keys, other.keys):
      common = np.intersect1d(first.keys, other.keys).size
      raise PredictionsError(
          f'{other.path} holds other examples than {first.path} '
          f'({other.keys.size} and {first.keys.size} examples, {common} in '
          f'common); evaluate both on the same split')
    if not np.array_equal(first.labels, other.labels):
      raise PredictionsError(f'{other.path} and {first.path} disagree on the '
                             f'labels of the same examples')


def topk_errors(probabilities: np.ndarray, labels: np.ndarray,
                ks: tuple[int, ...] = (1, 5)) -> dict[int, np.ndarray]:
  """Per-example top-k errors.

  The label's rank is the number of classes scored above it, plus those
  scored equal with a lower index: ties go to the lower class index, as
  `jax.lax.top_k` breaks them, so these errors equal the eval step's.

  Args:
    probabilities: [N, classes].
    labels: [N].
    ks: which k.

  Returns:
    k -> bool [N], True where the label is NOT among the top k.
  """
  scores = probabilities[np.arange(len(labels)), labels]
  higher = (probabilities > scores[:, None]).sum(axis=1)
  classes = np.arange(probabilities.shape[1])[None, :]
  tied_before = ((probabilities == scores[:, None]) &
                 (classes < labels[:, None])).sum(axis=1)
  rank = higher + tied_before
  return {k: rank >= k for k in ks}


def describe(info: dict) -> dict[str, Any]:
  """The fields of a record that tables print: network, crops, errors."""
  return {'network': network_name(info['network']),
          'crops': num_crops(info['views']),
          'top1': info['top1_error'], 'top5': info['top5_error']}


def print_report(text: str, out: Optional[str]) -> None:
  """Prints a tool's markdown and, with `out`, writes the same text there.

  Args:
    text: the report, ending with a newline.
    out: a file to write too, or None.

  Raises:
    SystemExit: in one line, when `out` cannot be written.
  """
  print(text, end='')
  if out:
    try:
      with open(out, 'w') as f:
        f.write(text)
    except OSError as e:
      sys.exit(f'{out}: cannot write it ({e.strerror})')
