"""Evaluation as in the paper: `python main.py --mode=eval`, 1, 12 or 144 crops.

`evaluate_workdir(config, workdir)` evaluates the newest checkpoint of a run
(or `config.eval_step`), with the moving average of the weights
(`config.eval_weights='ema'`, the paper's "running average of the
parameters") or the raw ones; a workdir without a checkpoint evaluates the
converted weights that `config.init_from` names, so published weights get
the paper's Table 2 and 3 rows with one command.

It visits every example of `config.eval_split` once over all processes
(padding is masked), averages the softmax over each image's views
(`config.eval_views`: 'single', '12' or '144'; see inception/preprocessing.py),
gathers the per-example probabilities from every process and, on process 0,
writes `WORKDIR/eval/<name>.json` and `<name>.predictions.npz`
(inception/predictions.py) and appends the errors to `metrics.jsonl` under
names that say the crops and weights (`eval_144crops/top1_error`,
`eval_1crop_raw/top5_error`). The name is made of the step, the weights and
the crops, e.g. `step625-ema-144crops` (`converted-12crops` for converted
weights), plus the crop or the split when they are not the defaults.

Every check that can fail does so before anything compiles, in one line.
"""

import json
import os
import time
from typing import Any, Callable, Iterable, Optional

from absl import logging
import jax
import numpy as np

from inception import metrics_io
from inception import models
from inception import multihost
from inception import plan as plan_lib
from inception import predictions
from inception import pretrained
from inception import resume
from inception import runs
from inception import weights as weights_lib
import train

# Seconds between progress lines.
_PROGRESS_SECONDS = 15.0


def crops_label(views: str) -> str:
  """'1crop', '12crops' or '144crops'."""
  crops = predictions.num_crops(views)
  return f'{crops}crop' if crops == 1 else f'{crops}crops'


def result_name(config: Any, kind: str, step: Optional[int]) -> str:
  """The file stem of an evaluation, e.g. 'step625-ema-144crops'.

  Args:
    config: reads eval_views, eval_crop, eval_crop_fraction and eval_split.
    kind: 'ema', 'raw' or 'converted'.
    step: the checkpoint step (None for converted weights).

  Returns:
    The name; the crop (single views) and the split are added when they
    differ from the defaults, so those evaluations do not overwrite others.
  """
  parts = ['converted' if step is None else f'step{step}']
  if kind != 'converted':
    parts.append(kind)
  parts.append(crops_label(config.eval_views))
  if config.eval_views == 'single' and (config.eval_crop != 'central' or
                                        config.eval_crop_fraction != 0.875):
    parts.append(f'{config.eval_crop}{config.eval_crop_fraction:g}')
  if config.eval_split != 'validation':
    parts.append(''.join(c if c.isalnum() else '_'
                         for c in config.eval_split).strip('_'))
  return '-'.join(parts)


def metric_prefix(views: str, kind: str) -> str:
  """Where an evaluation's errors go in metrics.jsonl, e.g. 'eval_144crops'."""
  return f'eval_{crops_label(views)}' + ('_raw' if kind == 'raw' else '')


def make_predict_step(model: Any, mesh: jax.sharding.Mesh) -> Callable:
  """The jitted step: view-averaged probabilities of a batch, on every process.

  Args:
    model: the Linen network.
    mesh: the batch is sharded over its 'data' axis.

  Returns:
    `step(variables, batch) -> (probabilities, labels, keys, mask)`, each
    replicated, so every process holds the whole global batch.
  """
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def step(variables, batch):
    probabilities = train.eval_probabilities(model, variables, batch['image'])
    return probabilities, batch['label'], batch['key'], batch['mask']

  return jax.jit(step, out_shardings=replicated)


def predict(predict_step: Callable, variables: Any, batches: Iterable[dict],
            num_images: int, num_views: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Runs the step over every batch, with progress lines; keeps real examples.

  Args:
    predict_step: from make_predict_step (or any function of that contract).
    variables: the network's variables.
    batches: padded, masked global batches with 'image', 'label', 'key' and
      'mask'.
    num_images: real examples in all, for the progress lines.
    num_views: views per image, for the progress lines.

  Returns:
    (keys int64 [N], labels int32 [N], probabilities float32 [N, classes]),
    sorted by key.
  """
  keys, labels, probabilities = [], [], []
  start = last = time.monotonic()
  done = 0

  def keep(outputs) -> int:
    probs, label, key, mask = (np.asarray(x) for x in outputs)
    keys.append(key[mask])
    labels.append(label[mask])
    probabilities.append(probs[mask])
    return int(mask.sum())

  pending = None
  for batch in batches:
    # The next batch is dispatched before the last one is fetched, so the
    # device does not wait for the host's copy.
    outputs = predict_step(variables, batch)
    if pending is not None:
      done += keep(pending)
    pending = outputs
    now = time.monotonic()
    if done and now - last >= _PROGRESS_SECONDS:
      last = now
      rate = done / (now - start)
      logging.info('eval: %d/%d images (%.0f%%), %.1f images/s (%.0f crops/s), '
                   'ETA %s.', done, num_images, 100.0 * done / num_images,
                   rate, rate * num_views,
                   metrics_io.format_seconds((num_images - done) / rate))
  if pending is not None:
    done += keep(pending)
  keys = np.concatenate(keys).astype(np.int64)
  order = np.argsort(keys, kind='stable')
  return (keys[order], np.concatenate(labels)[order].astype(np.int32),
          np.concatenate(probabilities)[order])


def _load(config: Any, workdir: str, num_classes: int,
          mesh: jax.sharding.Mesh) -> weights_lib.Loaded:
  """The weights to evaluate: the run's checkpoint, else config.init_from."""
  if runs.checkpoint_steps(workdir):
    try:
      loaded = weights_lib.load_run(
          workdir, weights=config.eval_weights, step=config.eval_step,
          mesh=mesh,
          check=lambda saved: resume.check_network(saved, config, workdir))
    except weights_lib.WeightsError as e:
      raise plan_lib.ConfigError(f'eval_step: {e}') from None
    # The network is the configured one (check_network compared them), in
    # the configured compute dtype.
    return weights_lib.Loaded(
        models.create_model_from_config(config, loaded.num_classes),
        loaded.variables, loaded.config, loaded.kind, loaded.step,
        loaded.num_classes, workdir)
  if config.eval_step is not None:
    raise plan_lib.ConfigError(
        f'eval_step: {workdir} has no checkpoint to take step '
        f'{config.eval_step} from; train first or pick another --workdir')
  if not config.init_from:
    raise plan_lib.ConfigError(
        f'init_from: {workdir} has no checkpoint to evaluate; train there '
        f'first (--mode=train), or set --config.init_from to a directory of '
        f'converted weights (python -m inception.convert --output)')
  variables = pretrained.load_checked(config)
  classes = weights_lib.num_classes_of(variables)
  if classes != num_classes:
    raise plan_lib.ConfigError(
        f'init_from: the weights in {config.init_from} classify {classes} '
        f'classes, dataset {config.dataset} has {num_classes}; evaluate them '
        f'on a dataset of their classes')
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return weights_lib.Loaded(
      models.create_model_from_config(config, classes),
      jax.device_put(dict(variables), replicated), None, 'converted', None,
      classes, config.init_from)


def _record(config: Any, loaded: weights_lib.Loaded, plan: plan_lib.Plan,
            labels: np.ndarray, probabilities: np.ndarray,
            seconds: float) -> dict:
  """The eval record: errors, counts and every setting that changes them."""
  errors = predictions.topk_errors(probabilities, labels)
  saved = loaded.config if loaded.config is not None else config
  overrides = {k: v for k, v in json.loads(
      config.model_overrides.to_json()).items() if v is not None}
  epoch = None
  if loaded.step is not None:
    epoch = loaded.step * saved.batch_size / plan.num_train_examples
  return {
      'top1_error': float(errors[1].mean()),
      'top5_error': float(errors[5].mean()),
      'num_examples': int(labels.size),
      'network': config.model, 'model_overrides': overrides,
      'aux_logits': config.aux_logits, 'bn_scale': config.bn_scale,
      'dtype': config.dtype, 'image_size': config.image_size,
      'views': config.eval_views, 'crops': predictions.num_crops(
          config.eval_views),
      'eval_crop': config.eval_crop,
      'eval_crop_fraction': config.eval_crop_fraction,
      'weights': loaded.kind, 'checkpoint_step': loaded.step, 'epoch': epoch,
      'init_from': config.init_from if loaded.kind == 'converted' else None,
      'seed': saved.seed, 'dataset': config.dataset,
      'eval_split': config.eval_split,
      'eval_split_name': config.eval_split.split('[')[0],
      'num_classes': loaded.num_classes,
      'seconds': seconds, 'images_per_sec': labels.size / max(seconds, 1e-9),
      'num_processes': jax.process_count(),
  }


def evaluate_workdir(config: Any, workdir: str) -> dict:
  """Evaluates a run's checkpoint (or converted weights) and stores the result.

  Args:
    config: the ConfigDict (configs/default.py): the network fields must
      match the checkpoint's; eval_split, eval_views, eval_crop,
      eval_crop_fraction, eval_weights, eval_step, batch_size and init_from
      say what to evaluate and how.
    workdir: the run's directory; results go to workdir/eval/.

  Returns:
    The eval record (see inception/predictions.py), with 'json' and
    'predictions' paths on process 0.

  Raises:
    plan.ConfigError: for a bad config, a missing checkpoint, step or
      dataset, or weights of another network, before anything compiles.
  """
  import input_pipeline  # pylint: disable=g-import-not-at-top
  mesh = multihost.make_mesh()
  plan = plan_lib.make_plan(config, jax.device_count(),
                            input_pipeline.get_dataset_info)
  loaded = _load(config, workdir, plan.num_classes, mesh)
  views = config.eval_views
  num_views = predictions.num_crops(views)
  what = (f'converted weights from {loaded.path}' if loaded.step is None else
          f'{loaded.kind} weights of step {loaded.step}')
  logging.info('Evaluating %s (%s) on %s %s: %d images x %d crop%s at %dx%d.',
               config.model, what, config.dataset, config.eval_split,
               plan.num_eval_examples, num_views, 's' if num_views > 1 else '',
               config.image_size, config.image_size)
  start = time.monotonic()
  keys, labels, probabilities = predict(
      make_predict_step(loaded.model, mesh), loaded.variables,
      input_pipeline.create_eval_iterator(config, mesh),
      plan.num_eval_examples, num_views)
  record = _record(config, loaded, plan, labels, probabilities,
                   time.monotonic() - start)
  name = result_name(config, loaded.kind, loaded.step)
  record['name'] = name
  if jax.process_index() == 0:
    json_path, npz_path = predictions.save(
        os.path.join(workdir, 'eval'), name, record, keys, labels,
        probabilities)
    prefix = metric_prefix(views, loaded.kind)
    metrics_io.append_record(workdir, {
        'step': loaded.step or 0, 'epoch': record['epoch'] or 0.0,
        f'{prefix}/top1_error': record['top1_error'],
        f'{prefix}/top5_error': record['top5_error'],
        f'{prefix}/num_examples': record['num_examples']})
    record = {**record, 'json': json_path, 'predictions': npz_path}
  logging.info('eval %s: top-1 error %.4f, top-5 error %.4f over %d examples '
               'in %s.', name, record['top1_error'], record['top5_error'],
               record['num_examples'],
               metrics_io.format_seconds(record['seconds']))
  return record


def table(record: dict) -> str:
  """The paper's Table 2/3 layout, one row: network, crops, errors."""
  row = predictions.describe(record)
  return ('| Network | Crops | Top-1 Error | Top-5 Error |\n'
          '|---|---|---|---|\n'
          f'| {row["network"]} | {row["crops"]} | {predictions.percent(row["top1"])}'
          f' | {predictions.percent(row["top5"])} |')

