"""Where main.py points JAX's persistent compilation cache."""

import os

import jax

from inception import compilation_cache


def _updates(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.config, 'update',
                      lambda name, value: calls.append((name, value)))
  return calls


def test_the_config_field_names_the_directory(monkeypatch):
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  calls = _updates(monkeypatch)
  path = compilation_cache.setup('~/cache-of-tests')
  assert path == os.path.join(os.path.expanduser('~'), 'cache-of-tests')
  assert calls == [('jax_compilation_cache_dir', path)]


def test_an_empty_field_keeps_no_cache(monkeypatch):
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  calls = _updates(monkeypatch)
  assert compilation_cache.setup('') is None
  assert not calls


def test_the_environment_variable_wins(monkeypatch, tmp_path):
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path))
  calls = _updates(monkeypatch)
  assert compilation_cache.setup('~/elsewhere') == str(tmp_path)
  assert not calls
