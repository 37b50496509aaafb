"""Tests of inception/config_files.py: every config reads as with ml_collections.

Each file under configs/ is loaded twice, with ml_collections and with the
stand-in, and every field must have the same value and type; single
assignments are checked against ml_collections' casting and refusals.
"""

import glob
import importlib
import os

import ml_collections
import pytest

from inception import config_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(
    os.path.relpath(path, ROOT) for path in
    glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True))


def _typed(tree: dict, prefix: tuple = ()) -> dict:
  """{path: (type, repr)} of every leaf: 1 and 1.0, (1,) and [1] differ."""
  leaves = {}
  for name, value in tree.items():
    if isinstance(value, dict):
      leaves.update(_typed(value, prefix + (name,)))
    else:
      leaves[prefix + (name,)] = (type(value).__name__, repr(value))
  return leaves


def test_the_files_are_found():
  assert {'configs/default.py', 'configs/imagenet.py', 'configs/inception_v4.py',
          'configs/tiny.py', 'configs/sweeps/residual_scale.py'} <= set(CONFIG_FILES)


@pytest.mark.parametrize('path', CONFIG_FILES)
def test_every_config_file_gives_ml_collections_values_and_types(path):
  module = importlib.import_module(os.path.splitext(path)[0].replace(os.sep, '.'))
  expected = _typed(module.get_config().to_dict())
  got = _typed(config_files.load(os.path.join(ROOT, path)).to_dict())
  assert got == expected
  assert len(got) > 50  # every field of configs/default.py at least


def _assign(config_module, declare, value):
  """Declares field f as `declare` says, then sets it: its value, or the error."""
  config = config_module.ConfigDict()
  kind, initial = declare
  config.f = (config_module.FieldReference(None, field_type=initial)
              if kind == 'reference' else initial)
  try:
    config.f = value
  except TypeError:
    return 'TypeError'
  return type(config.f).__name__, repr(config.f), repr(config['f'])


@pytest.mark.parametrize('declare,value', [
    (('value', 1.5), 2),             # int into a float field: 2.0
    (('value', 1.5), True),          # bool too
    (('value', 2), 2.5),             # refused
    (('value', 'a'), 3),             # refused
    (('value', (1, 2)), [3]),        # list into a tuple field: (3,)
    (('value', True), 1),            # refused
    (('value', None), 'anything'),   # a None field takes any type
    (('reference', float), 3),
    (('reference', tuple), [1, 2]),
    (('reference', int), 'x'),
    (('reference', str), None),
    (('reference', bool), 0),
])
def test_assignment_casts_and_refuses_as_ml_collections_does(declare, value):
  assert (_assign(config_files, declare, value)
          == _assign(ml_collections, declare, value))


def test_reading_a_missing_field_fails_and_nested_configs_flatten():
  config = config_files.ConfigDict()
  config.inner = config_files.ConfigDict()
  config.inner.x = None
  with pytest.raises(AttributeError, match='no field .y'):
    config.inner.y  # pylint: disable=pointless-statement
  assert config.to_dict() == {'inner': {'x': None}}
  assert 'inner' in config and list(config.keys()) == ['inner']


def test_a_config_file_using_more_of_ml_collections_fails_loudly(tmp_path):
  path = tmp_path / 'other.py'
  path.write_text('import ml_collections\n\n'
                  'def get_config():\n'
                  '  return ml_collections.config_dict.placeholder(int)\n')
  with pytest.raises(AttributeError, match='config_dict'):
    config_files.load(str(path))


def test_network_config_path_falls_back_to_imagenet():
  assert config_files.network_config_path('inception_v3') == os.path.join(
      ROOT, 'configs', 'inception_v3.py')
  assert config_files.network_config_path('inception_resnet_v2_paper') == (
      os.path.join(ROOT, 'configs', 'imagenet.py'))
