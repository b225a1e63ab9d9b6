"""Sweep config files load through the project's one loader (scaling/core/configfile.py); errors are SweepErrors.

`path/to/file.py[:arg]` -> get_config(arg); paths are tried relative to the current directory, then to the
repository root (so `configs/sweeps/demo.py` works from anywhere).
"""

from __future__ import annotations

from typing import Any

from scaling.core import configfile as _loader
from scaling.core.errors import SweepError

__all__ = ["REPO", "SweepError", "find_file", "load", "split_spec"]

REPO = _loader.REPO
split_spec = _loader.split_spec


def find_file(path: str) -> str:
  return _loader.find_file(path, SweepError)


def load(spec: str) -> Any:
  """Imports the file and calls get_config(arg) (get_config() when no ':arg' is given)."""
  return _loader.load(spec, SweepError)
