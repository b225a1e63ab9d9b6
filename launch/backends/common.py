"""What every backend shares: settings merged over defaults, the run command, the child environment.

Imported by the backends; imports none of them (launch/backends/registry.py picks a backend by name).
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any

from launch.configfile import REPO, SweepError


def merge_settings(name: str, defaults: dict, given: dict) -> dict:
  """defaults <- sweep config's backend.<name>; unknown keys are an error (typos must not pass silently)."""
  out = dict(defaults)
  for k, v in (given or {}).items():
    if k not in defaults:
      close = difflib.get_close_matches(k, list(defaults), n=2)
      hint = f" (did you mean: {', '.join(close)}?)" if close else ""
      raise SweepError(f"unknown backend.{name} setting {k!r}{hint}; known: {', '.join(sorted(defaults))}")
    out[k] = v
  return out


def run_argv(sweep, run, workdir: str, python: str | None = None) -> list[str]:
  """The command of one run (one process): python -m <entrypoint> --config=<base> --workdir=W <overrides>."""
  return [python or sys.executable, "-m", sweep.entrypoint, f"--config={sweep.base}", f"--workdir={workdir}",
          *run.flags(), "--noprogress"]


def child_env(extra: dict[str, Any] | None = None) -> dict[str, str]:
  env = dict(os.environ)
  env["PYTHONUNBUFFERED"] = "1"
  env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
  env.update({k: str(v) for k, v in (extra or {}).items()})
  return env
