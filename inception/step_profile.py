"""Where a compiled step's time goes: by operation, by layer, by direction.

`profile(run, compiled, steps)` runs the step `steps` times under
`jax.profiler`, reads the trace back (`jax.profiler.ProfileData`), and adds
up the time of every XLA instruction the devices' threads ran (on CPUs, the
thread pool's busy time: seconds of all cores together). Each instruction is
placed by its name and by the `op_name` its HLO carries:

- kind: the instruction's name without its number (XLA names fusions by
  what they hold: `ynn_fusion`, `copy_bitcast_fusion`, ...; others by their
  opcode: `convolution`, `dot`, `concatenate`);
- direction: 'backward' for the gradient (JAX's transposes), 'forward' for
  the network's own operations, 'other' for the rest (optimizer, moving
  average, metrics);
- layer: the network's child module the operation belongs to (`mixed_5b`,
  `block35_3`, `logits`), and its stage (`block35`: the layer less its
  repeat number).

`python -m inception.benchmark --mode=train --profile` adds the summary to
the benchmark's figures.
"""

import collections
import glob
import os
import re
import tempfile
from typing import Any, Callable

import jax

_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?'
                          r'op_name="([^"]*)"')
_NUMBER = re.compile(r'\.\d+$')
_TRANSFORM = re.compile(r'^(?:[\w]+\()+(\w+)\)*$')


def op_names(hlo_text: str) -> dict[str, str]:
  """Instruction name -> the `op_name` of its metadata, from HLO text."""
  names = {}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if match:
      names[match.group(1)] = match.group(2)
  return names


def place(op_name: str) -> tuple[str, str]:
  """(direction, layer) of an operation's `op_name`.

  The layer is the path component after the network's own (its class name,
  or the class name inside JAX's transforms: `jvp(Inception)`); '' where the
  operation is not in a layer.
  """
  parts = [p for p in op_name.split('/') if not p.startswith('jit(')]
  backward = any(p.startswith('transpose(') for p in parts)
  # The last part is the primitive; a layer lies between it and the network.
  for i, part in enumerate(parts[:-1]):
    match = _TRANSFORM.match(part)
    name = match.group(1) if match else part
    if name.lstrip('_')[:1].isupper():
      layer = parts[i + 1] if i + 2 < len(parts) else ''
      return ('backward' if backward else 'forward'), layer
  return ('backward' if backward else 'other'), ''


def stage(layer: str) -> str:
  """`block35_3` -> `block35`; names without a repeat number stay."""
  return re.sub(r'_\d+$', '', layer)


def summarize(seconds: dict[str, float], names: dict[str, str],
              steps: int, top: int) -> dict[str, Any]:
  """Per-step seconds by (kind, direction), by stage and by layer.

  Args:
    seconds: instruction name -> seconds over all traced steps.
    names: instruction name -> op_name (`op_names`).
    steps: how many steps the trace holds.
    top: rows kept per table (the rest are summed into 'other rows').

  Returns:
    {'seconds_per_step', 'by_direction', 'by_kind', 'by_stage', 'by_layer'},
    each table a list of [name, direction, seconds per step] rows, largest
    first.
  """
  tables = {key: collections.Counter()
            for key in ('by_direction', 'by_kind', 'by_stage', 'by_layer')}
  for instruction, total in seconds.items():
    direction, layer = place(names.get(instruction, ''))
    per_step = total / steps
    tables['by_direction'][(direction, '')] += per_step
    tables['by_kind'][(_NUMBER.sub('', instruction), direction)] += per_step
    tables['by_stage'][(stage(layer) or '(none)', direction)] += per_step
    tables['by_layer'][(layer or '(none)', direction)] += per_step
  summary = {'seconds_per_step': sum(seconds.values()) / steps}
  for key, counter in tables.items():
    rows = [[name, direction, value]
            for (name, direction), value in counter.most_common()]
    if len(rows) > top:
      rows = rows[:top] + [['other rows', '', sum(r[2] for r in rows[top:])]]
    summary[key] = [[n, d, round(v, 6)] if d else [n, round(v, 6)]
                    for n, d, v in rows]
  return summary


def _instruction_seconds(trace_dir: str) -> dict[str, float]:
  """Seconds per XLA instruction in the trace under `trace_dir`."""
  from jax.profiler import ProfileData  # pylint: disable=g-import-not-at-top
  files = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'),
                    recursive=True)
  if not files:
    raise RuntimeError(f'jax.profiler wrote no trace under {trace_dir}')
  data = ProfileData.from_file(max(files, key=os.path.getmtime))
  seconds: dict[str, float] = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if line.name == 'python':
        continue
      for event in line.events:
        seconds[event.name] += event.duration_ns / 1e9
  return seconds


def profile(run: Callable[[], None], compiled: Any, steps: int = 2,
            top: int = 15) -> dict[str, Any]:
  """Traces `steps` calls of `run` and sums them as `summarize` does.

  Args:
    run: one step, returning once it is done (warmed up already).
    compiled: its compiled program, for the instructions' op_names.
    steps: steps traced.
    top: rows kept per table.

  Returns:
    The summary of `summarize`; only instructions of `compiled` count.
  """
  names = op_names(compiled.as_text())
  with tempfile.TemporaryDirectory(prefix='step-profile-') as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        run()
    seconds = _instruction_seconds(trace_dir)
  return summarize({k: v for k, v in seconds.items() if k in names}, names,
                   steps, top)
