"""Multi-process start-up through `jax.distributed` (must run before anything touches a JAX device).

Modes (config `distributed.mode`):
  auto  initialise when the environment says this is one of several processes: an explicit
        `distributed.coordinator_address`, a SLURM job step with more than one task, or a multi-host Cloud TPU
        slice; otherwise run as a single process
  on    always call jax.distributed.initialize (auto-detection by JAX, or the explicit address)
  off   never
On CPU, cross-process collectives use gloo; `distributed.local_device_count` > 0 sets the number of (fake) CPU
devices per process, which is how tests run a 2-process × 2-device job on one machine.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import jax

from scaling.core.errors import ConfigError

log = logging.getLogger(__name__)
MODES = ("auto", "on", "off")


def _slurm_multi_task() -> bool:
  return "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1


def _tpu_multi_host() -> bool:
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h]) > 1


def _int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def validate(dist_cfg: Any) -> None:
  """Raises ConfigError (one line naming the keys to set) before anything touches a device."""
  mode, addr = dist_cfg.mode, dist_cfg.coordinator_address
  if mode not in MODES:
    raise ConfigError(f"distributed.mode={mode!r} is not one of {MODES}")
  ldc = dist_cfg.local_device_count
  if not _int(ldc) or ldc < 0:
    raise ConfigError(f"distributed.local_device_count={ldc!r} must be an integer >= 0 (0: the platform's devices)")
  if not addr:
    return
  if not isinstance(addr, str) or not re.fullmatch(r"[^\s:]+:\d{1,5}", addr):
    raise ConfigError(f"distributed.coordinator_address={addr!r} must be host:port, e.g. 10.0.0.1:1234")
  n, i = dist_cfg.num_processes, dist_cfg.process_id
  if not (_int(n) and n >= 1 and _int(i) and i >= 0):
    raise ConfigError(f"distributed.coordinator_address is set, so distributed.num_processes (got {n!r}) and "
                      f"distributed.process_id (got {i!r}) must be set too — e.g. "
                      "--config.distributed.num_processes=2 --config.distributed.process_id=0")
  if i >= n:
    raise ConfigError(f"distributed.process_id={i} must be below distributed.num_processes={n}")
  if mode == "off":
    raise ConfigError("distributed.mode='off' contradicts distributed.coordinator_address — drop one of them")


def initialize(dist_cfg: Any) -> None:
  """Idempotent: a second call (e.g. tests running several trainings in one process) does nothing."""
  validate(dist_cfg)
  if dist_cfg.local_device_count and dist_cfg.local_device_count > 0:
    jax.config.update("jax_num_cpu_devices", int(dist_cfg.local_device_count))
  mode = dist_cfg.mode
  explicit = bool(dist_cfg.coordinator_address)
  if mode == "off" or (mode == "auto" and not (explicit or _slurm_multi_task() or _tpu_multi_host())):
    return
  if jax.distributed.is_initialized():
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = {}
  if explicit:
    kwargs = dict(coordinator_address=dist_cfg.coordinator_address, num_processes=int(dist_cfg.num_processes),
                  process_id=int(dist_cfg.process_id))
  jax.distributed.initialize(**kwargs)
  log.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
