"""Where runs execute: `local` (subprocesses here), `slurm` (sbatch job arrays), `tpu` (Cloud TPU VMs via gcloud).

Every backend gets the same inputs (the sweep, the runs to start, the SweepState holding the manifest) and keeps
the same promise: it records each attempt in the manifest (start, job id, end, exit code) and never decides a
run's outcome itself when the run dir can tell (see launch/manifest.py).
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any

from launch.configfile import REPO, SweepError

NAMES = ("local", "slurm", "tpu")


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


def make(name: str, settings: dict, sweep_dir: str, max_parallel: int | None = None):
  if name not in NAMES:
    raise SweepError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
  if name == "local":
    from launch.backends import local
    return local.LocalBackend(settings, sweep_dir, max_parallel)
  if name == "slurm":
    from launch.backends import slurm
    return slurm.SlurmBackend(settings, sweep_dir, max_parallel)
  from launch.backends import tpu
  return tpu.TpuBackend(settings, sweep_dir, max_parallel)
