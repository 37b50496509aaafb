"""Is B's error really lower than A's? A paired comparison of two evaluations.

  python -m inception.compare A B [--resamples=10000] [--seed=0] [--out=FILE.md]

A and B are evaluations' `<name>.predictions.npz` files or their `<name>.json`
records (see inception/predictions.py), of the same examples of the same
dataset, split and classes; any other pair is refused in one line. For top-1
and top-5 error the table gives A's, B's, the difference B - A and its 95%
paired-bootstrap interval: the examples are resampled with replacement, the
same indices for A and B (and for top-1 and top-5), from
`numpy.random.default_rng(seed)`, and the interval is the 2.5th and 97.5th
percentiles of the resampled differences. For top-1 it also gives the exact
two-sided McNemar test's p-value, from the discordant examples: b that A gets
right and B wrong, c the reverse.

Nothing is evaluated again; this needs NumPy only.
"""

import math
import sys

from absl import app
from absl import flags
import numpy as np

from inception import predictions

USAGE = ('usage: python -m inception.compare A B [--resamples=10000] '
         '[--seed=0] [--out=FILE.md]')
# Resample indices drawn per chunk: bounds the memory (8 bytes each) while
# keeping NumPy's loops long.
_CHUNK_INDICES = 1 << 22


def mcnemar_p(b: int, c: int) -> float:
  """The exact McNemar test's two-sided p-value.

  Under the null hypothesis each of the b + c discordant examples is equally
  likely to go either way, so p = min(1, 2 P[Binomial(b + c, 1/2) <= min(b,
  c)]). The binomial terms are summed in log space, relative to the largest,
  so that b + c of millions neither overflows nor loses accuracy.

  Args:
    b: examples A gets right and B wrong.
    c: examples A gets wrong and B right.

  Returns:
    The p-value in [0, 1]; 1 when b + c is 0. Below about 1e-308 it is 0.0.
  """
  n, k = b + c, min(b, c)
  if n == 0:
    return 1.0
  log_n_factorial = math.lgamma(n + 1)
  logs = [log_n_factorial - math.lgamma(i + 1) - math.lgamma(n - i + 1)
          for i in range(k + 1)]
  largest = logs[-1]  # k <= n / 2: the terms grow with i.
  log_tail = (largest + math.log(math.fsum(math.exp(x - largest) for x in logs))
              - n * math.log(2.0))
  return min(1.0, 2.0 * math.exp(log_tail))


def _resampled_differences(err_a: np.ndarray, err_b: np.ndarray,
                           resamples: int, seed: int) -> np.ndarray:
  """mean(err_b) - mean(err_a) over each resample of the last axis.

  Args:
    err_a: bool [..., N], True where A is wrong.
    err_b: bool [..., N], the same for B.
    resamples: number of resamples.
    seed: for `numpy.random.default_rng`.

  Returns:
    float [..., resamples]; every leading index sees the same resamples.
  """
  diff = np.asarray(err_b, np.int8) - np.asarray(err_a, np.int8)
  shape, n = diff.shape[:-1], diff.shape[-1]
  diff = diff.reshape(-1, n)
  rng = np.random.default_rng(seed)
  rows = max(1, _CHUNK_INDICES // n)
  differences = np.empty((len(diff), resamples))
  for start in range(0, resamples, rows):
    size = min(rows, resamples - start)
    indices = rng.integers(0, n, size=(size, n))
    for metric, values in enumerate(diff):  # 1-D gathers are the fast ones.
      differences[metric, start:start + size] = values[indices].sum(axis=1) / n
  return differences.reshape(shape + (resamples,))


def paired_bootstrap(err_a: np.ndarray, err_b: np.ndarray, resamples: int,
                     seed: int) -> tuple[float, float]:
  """95% percentile interval of mean(err_b) - mean(err_a), paired bootstrap.

  Each resample draws len(err_a) example indices with replacement and scores
  A and B on the same ones. The draws depend on the seed and the number of
  examples only: `compare` resamples top-1 and top-5 with the same indices,
  and gets the intervals this function gives for each.

  Args:
    err_a: bool [N], True where A is wrong.
    err_b: bool [N], True where B is wrong, on the same examples.
    resamples: number of bootstrap resamples, at least 1.
    seed: for `numpy.random.default_rng`.

  Returns:
    (low, high): the 2.5th and 97.5th percentiles of the resampled
    differences B - A, as fractions.
  """
  differences = _resampled_differences(err_a, err_b, resamples, seed)
  low, high = np.percentile(differences, [2.5, 97.5])
  return float(low), float(high)


def compare(a: predictions.Predictions, b: predictions.Predictions,
            resamples: int = 10_000, seed: int = 0) -> dict:
  """Compares two evaluations of the same examples.

  Args:
    a: the baseline.
    b: the other; differences are B - A.
    resamples: bootstrap resamples.
    seed: the bootstrap's seed.

  Returns:
    A dict: 'a' and 'b' (each {'name', 'crops', 'path'}); 'top1' and 'top5'
    (each {'a', 'b', 'diff', 'low', 'high'}, error rates as fractions);
    'b_count' and 'c_count' (top-1 discordant examples: A right and B wrong,
    A wrong and B right); 'p' (McNemar, top-1); 'num_examples', 'dataset',
    'eval_split', 'resamples', 'seed'.

  Raises:
    PredictionsError: in one line, when A and B are not of the same examples.
  """
  predictions.check_same_examples([a, b])
  errors_a = predictions.topk_errors(a.probabilities, a.labels)
  errors_b = predictions.topk_errors(b.probabilities, b.labels)
  result = {
      side: {'name': predictions.network_name(member.info['network']),
             'crops': predictions.num_crops(member.info['views']),
             'path': member.path}
      for side, member in (('a', a), ('b', b))}
  # One draw of indices for both: generating them is most of the time.
  differences = _resampled_differences(
      np.stack([errors_a[1], errors_a[5]]),
      np.stack([errors_b[1], errors_b[5]]), resamples, seed)
  intervals = np.percentile(differences, [2.5, 97.5], axis=-1).T
  for k, (low, high) in zip((1, 5), intervals.tolist()):
    error_a, error_b = float(errors_a[k].mean()), float(errors_b[k].mean())
    result[f'top{k}'] = {'a': error_a, 'b': error_b, 'diff': error_b - error_a,
                         'low': low, 'high': high}
  b_count = int((~errors_a[1] & errors_b[1]).sum())
  c_count = int((errors_a[1] & ~errors_b[1]).sum())
  result.update(b_count=b_count, c_count=c_count,
                p=mcnemar_p(b_count, c_count), num_examples=int(a.keys.size),
                dataset=a.info.get('dataset'),
                eval_split=a.info.get('eval_split'), resamples=resamples,
                seed=seed)
  return result


def _signed(fraction: float) -> str:
  """A difference of error rates, e.g. '-0.50%'."""
  return f'{100.0 * fraction:+.2f}%'


def _p_value(p: float) -> str:
  """A p-value to three figures; tiny ones in scientific notation."""
  if p == 0.0:
    return '<1e-300'
  return f'{p:.3f}' if p >= 0.001 else f'{p:.2e}'


def format_comparison(result: dict) -> str:
  """The comparison as a markdown table and the lines that qualify it.

  Args:
    result: as `compare` returns it.

  Returns:
    Markdown text ending in a newline.
  """
  def side(key):
    crops = result[key]['crops']
    return (f"{key.upper()}: {result[key]['name']} "
            f"({crops} crop{'s' if crops != 1 else ''})")
  lines = [f"| | {side('a')} | {side('b')} | B - A | 95% interval | "
           'McNemar p |', '|---|---|---|---|---|---|']
  for k in (1, 5):
    row = result[f'top{k}']
    p = _p_value(result['p']) if k == 1 else ''
    lines.append(
        f"| Top-{k} error | {predictions.percent(row['a'])} | "
        f"{predictions.percent(row['b'])} | {_signed(row['diff'])} | "
        f"[{_signed(row['low'])}, {_signed(row['high'])}] | {p} |")
  lines += [
      '',
      f"{result['num_examples']} examples of {result['dataset']} "
      f"{result['eval_split']}; top-1 discordant pairs: b = "
      f"{result['b_count']} (A right, B wrong), c = {result['c_count']} "
      f"(A wrong, B right); intervals from {result['resamples']} paired "
      f"bootstrap resamples, seed {result['seed']}; McNemar p from the "
      'exact two-sided binomial test.',
      '',
      f"A: {result['a']['path']}", '',
      f"B: {result['b']['path']}"]
  return '\n'.join(lines) + '\n'


def main(argv: list[str]) -> None:
  paths = argv[1:]
  if len(paths) != 2:
    sys.exit(USAGE)
  try:
    a, b = (predictions.load(path) for path in paths)
    result = compare(a, b, flags.FLAGS.resamples, flags.FLAGS.seed)
  except predictions.PredictionsError as e:
    sys.exit(str(e))
  predictions.print_report(format_comparison(result), flags.FLAGS.out)


def _define_flags() -> None:
  """Command-line flags, defined only when run as a program, not on import."""
  flags.DEFINE_integer('resamples', 10_000, 'Paired bootstrap resamples.',
                       lower_bound=1)
  flags.DEFINE_integer('seed', 0, 'Seed of the bootstrap resampling.')
  flags.DEFINE_string('out', None, 'Also write the markdown to this file.')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
