"""Backends by name: `make("local" | "slurm" | "tpu", settings, sweep_dir)`; the backends never import this module."""

from __future__ import annotations

from launch.backends import local, slurm, tpu
from launch.configfile import SweepError

NAMES = ("local", "slurm", "tpu")
_CLASSES = {"local": local.LocalBackend, "slurm": slurm.SlurmBackend, "tpu": tpu.TpuBackend}


def make(name: str, settings: dict, sweep_dir: str, max_parallel: int | None = None):
  if name not in NAMES:
    raise SweepError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
  return _CLASSES[name](settings, sweep_dir, max_parallel)
