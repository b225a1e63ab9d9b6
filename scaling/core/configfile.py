"""Loading ml_collections config files, `path/to/file.py[:arg]` -> get_config(arg), with one-line errors.

The one loader of the project: the trainers' `--config` (scaling/core/cli.py, which then applies
`--config.<key>=<value>` overrides through ml_collections' config_flags) and the sweep launcher
(launch/configfile.py) both call `load`. Paths are tried as given (relative to the current directory), then
relative to the repository root, so `configs/lm.py` works from anywhere. Every failure -- no such file, a syntax
error, an import error, no get_config, get_config raising -- is one line in the given error class.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from scaling.core.errors import ConfigError, UsageError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def split_spec(spec: str) -> tuple[str, str | None]:
  """'configs/lm.py:size=1M' -> ('configs/lm.py', 'size=1M'); 'configs/lm.py' -> ('configs/lm.py', None)."""
  path, sep, arg = spec.partition(".py:")
  if sep:
    return path + ".py", arg
  return spec, None


def find_file(path: str, error: type[ConfigError] = UsageError) -> str:
  for candidate in (os.path.abspath(path), os.path.join(REPO, path)):
    if os.path.isfile(candidate):
      return candidate
  where = os.getcwd() if os.path.samefile(os.getcwd(), REPO) else f"{os.getcwd()} and {REPO}"
  raise error(f"config file {path!r} not found (looked in {where}) — pass an existing file, e.g. configs/lm.py")


def _first_line(e: BaseException) -> str:
  return (str(e).splitlines() or [type(e).__name__])[0]


def load(spec: str, error: type[ConfigError] = UsageError) -> Any:
  """Imports the file and calls get_config(arg) (get_config() when no ':arg' is given)."""
  path, arg = split_spec(spec)
  abspath = find_file(path, error)
  if REPO not in sys.path:
    sys.path.insert(0, REPO)  # config files import `configs.*` and `scaling.*`
  name = "_scaling_cfg_" + os.path.splitext(os.path.basename(abspath))[0]
  module_spec = importlib.util.spec_from_file_location(name, abspath)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise error(f"{path}: line {e.lineno}: {e.msg} — fix the syntax of the config file") from None
  except Exception as e:  # noqa: BLE001 - any import error is a config error for the user
    raise error(f"{path}: cannot import ({type(e).__name__}: {_first_line(e)}) — fix the config file") from None
  if not callable(getattr(module, "get_config", None)):
    raise error(f"{path}: has no get_config() function — define get_config(arg='') returning an "
                "ml_collections.ConfigDict")
  try:
    return module.get_config(arg) if arg is not None else module.get_config()
  except ConfigError as e:
    raise error(f"{spec}: {e}") from None
  except Exception as e:  # noqa: BLE001
    msg = _first_line(e)
    if "does not accept dots in field names" in msg:
      msg += ("; write dotted overrides as a nested dict ({'train': {'steps': 100}}) or wrap them in "
              "ml_collections.ConfigDict({...}, allow_dotted_keys=True)")
    raise error(f"{spec}: get_config failed ({type(e).__name__}: {msg})") from None
