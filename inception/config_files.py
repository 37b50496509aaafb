"""Reads the config files (configs/*.py) where ml_collections is not installed.

The config files build an `ml_collections.ConfigDict`. Tools that must run
with JAX alone (`python -m inception.benchmark --mode=train` on a machine
without TensorFlow, ml_collections or CLU) still need their values, not
copies of them, so `load(path)` executes the file with a small stand-in for
the two names the files use, `ConfigDict` and `FieldReference`:

- a `ConfigDict` is fields set by attribute and read by attribute or
  `config[name]`, with `items()`, `keys()` and `to_dict()`;
- `FieldReference(None, field_type=T)` declares a field that is None until a
  value of type T is set; reading it gives the value;
- setting a field that holds a value (or a typed reference) keeps its type as
  ml_collections does: an int or a bool becomes a float in a float field, a
  list becomes a tuple in a tuple field, and any other change of type raises
  `TypeError`.

`from configs import NAME` inside a config file loads configs/NAME.py the
same way, so a network's config over configs/imagenet.py over
configs/default.py reads as it does with ml_collections, which
tests/test_benchmark.py checks for every file under configs/. Nothing else of
ml_collections is offered: a config file that uses more fails here, loudly.
"""

import builtins
import os
import types
from typing import Any

CONFIGS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


class FieldReference:
  """A typed field whose value may be None (ml_collections' `FieldReference`).

  Attributes:
    value: the field's value.
    field_type: the type a value must have (ints and bools cast to float,
      lists to tuple).
  """

  def __init__(self, default: Any, field_type: type | None = None):
    self.field_type = field_type if field_type is not None else type(default)
    self.value = None if default is None else _cast('reference', default,
                                                    self.field_type)


def _cast(name: str, value: Any, field_type: type) -> Any:
  """`value` as a `field_type`, by ml_collections' rules, or TypeError."""
  if value is None or isinstance(value, field_type):
    return value
  if field_type is float and isinstance(value, int):
    return float(value)
  if field_type is tuple and isinstance(value, list):
    return tuple(value)
  raise TypeError(f'field {name!r} holds {field_type.__name__}; cannot set it '
                  f'to {value!r} of type {type(value).__name__}')


class ConfigDict:
  """Named fields (ml_collections' `ConfigDict`, the part the configs use)."""

  def __init__(self):
    object.__setattr__(self, '_fields', {})

  def __getattr__(self, name: str) -> Any:
    fields = object.__getattribute__(self, '_fields')
    if name not in fields:
      raise AttributeError(f'config has no field {name!r}; it has '
                           f'{", ".join(fields)}')
    field = fields[name]
    return field.value if isinstance(field, FieldReference) else field

  def __setattr__(self, name: str, value: Any) -> None:
    old = self._fields.get(name)
    if isinstance(old, FieldReference) and not isinstance(value, FieldReference):
      old.value = _cast(name, value, old.field_type)
    elif old is None or isinstance(value, FieldReference):
      self._fields[name] = value
    else:
      self._fields[name] = _cast(name, value, type(old))

  __getitem__ = __getattr__
  __setitem__ = __setattr__

  def __contains__(self, name: str) -> bool:
    return name in self._fields

  def keys(self) -> list[str]:
    return list(self._fields)

  def items(self) -> list[tuple[str, Any]]:
    return [(name, self[name]) for name in self._fields]

  def to_dict(self) -> dict[str, Any]:
    """The fields as a plain dict, nested configs as dicts, references resolved."""
    return {name: value.to_dict() if isinstance(value, ConfigDict) else value
            for name, value in self.items()}


# What `import ml_collections` gives a config file that `load` executes.
_ML_COLLECTIONS = types.SimpleNamespace(ConfigDict=ConfigDict,
                                        FieldReference=FieldReference)


def _execute(path: str, loaded: dict[str, types.ModuleType]) -> types.ModuleType:
  """The config file at `path` as a module, run with the stand-in imports."""
  path = os.path.abspath(path)
  if path in loaded:
    return loaded[path]

  def import_(name, globals_=None, locals_=None, fromlist=(), level=0):
    if level == 0 and name == 'ml_collections':
      return _ML_COLLECTIONS
    if level == 0 and name.split('.')[0] == 'configs':
      package = types.SimpleNamespace()
      folders = name.split('.')[1:]
      if fromlist:  # `from configs[.sweeps] import a`: configs/[sweeps/]a.py
        for module in fromlist:
          setattr(package, module, _execute(
              os.path.join(CONFIGS_DIR, *folders, module + '.py'), loaded))
      elif folders:  # `import configs.a` binds configs, holding configs.a.
        setattr(package, folders[0], _execute(
            os.path.join(CONFIGS_DIR, folders[0] + '.py'), loaded))
      return package
    return builtins.__import__(name, globals_, locals_, fromlist, level)

  module = types.ModuleType(os.path.splitext(os.path.basename(path))[0])
  module.__file__ = path
  module.__builtins__ = {**vars(builtins), '__import__': import_}
  with open(path) as f:
    source = f.read()
  exec(compile(source, path, 'exec'), module.__dict__)  # pylint: disable=exec-used
  loaded[path] = module
  return module


def load(path: str) -> ConfigDict:
  """The `get_config()` of a config file, built without ml_collections.

  Args:
    path: a config file, e.g. configs/inception_v4.py; its `from configs
      import ...` lines read this repository's configs/.

  Returns:
    The stand-in ConfigDict with the file's values.
  """
  return _execute(path, {}).get_config()


def network_config_path(model: str) -> str:
  """configs/<model>.py where the network has one, else configs/imagenet.py."""
  path = os.path.join(CONFIGS_DIR, model + '.py')
  return path if os.path.exists(path) else os.path.join(CONFIGS_DIR,
                                                        'imagenet.py')
