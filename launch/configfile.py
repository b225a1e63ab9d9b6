"""Loading ml_collections config files the way `config_flags` does: `path/to/file.py[:arg]` → get_config(arg).

Paths are tried relative to the current directory first, then to the repository root (so
`configs/sweeps/demo.py` works from anywhere).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from scaling.core.errors import SweepError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




def split_spec(spec: str) -> tuple[str, str | None]:
  """'configs/lm.py:size=1M' -> ('configs/lm.py', 'size=1M'); 'configs/lm.py' -> ('configs/lm.py', None)."""
  path, sep, arg = spec.partition(".py:")
  if sep:
    return path + ".py", arg
  return spec, None


def find_file(path: str) -> str:
  for candidate in (os.path.abspath(path), os.path.join(REPO, path)):
    if os.path.isfile(candidate):
      return candidate
  raise SweepError(f"config file {path!r} not found (looked in {os.getcwd()} and {REPO})")


def repo_relative(path: str) -> str:
  """The path as runs see it (they start in the repository root); absolute when outside the repo."""
  rel = os.path.relpath(path, REPO)
  return path if rel.startswith("..") else rel


def load(spec: str) -> Any:
  """Imports the file and calls get_config(arg) (get_config() when no ':arg' is given)."""
  path, arg = split_spec(spec)
  abspath = find_file(path)
  if REPO not in sys.path:
    sys.path.insert(0, REPO)  # config files import `configs.models` etc.
  name = "_launch_cfg_" + os.path.splitext(os.path.basename(abspath))[0]
  module_spec = importlib.util.spec_from_file_location(name, abspath)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - any import error is a config error for the user
    raise SweepError(f"{path}: cannot import ({type(e).__name__}: {_first_line(e)})") from None
  if not hasattr(module, "get_config"):
    raise SweepError(f"{path}: has no get_config() function")
  try:
    return module.get_config(arg) if arg is not None else module.get_config()
  except Exception as e:  # noqa: BLE001
    msg = _first_line(e)
    if "does not accept dots in field names" in msg:
      msg += ("; write dotted overrides as a nested dict ({'train': {'steps': 100}}) or wrap them in "
              "ml_collections.ConfigDict({...}, allow_dotted_keys=True)")
    raise SweepError(f"{spec}: get_config failed ({type(e).__name__}: {msg})") from None


def _first_line(e: BaseException) -> str:
  return (str(e).splitlines() or [type(e).__name__])[0]
