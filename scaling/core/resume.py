"""What rerunning a trainer's command in an existing workdir does: refuse another experiment's config, exit at
once when the run is finished, restore the newest good checkpoint, and rewrite the run dirs from that step.

Metrics after the restored step are recomputed bit-identically, so they are truncated rather than duplicated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from scaling.core import checkpoint as ckpt_lib
from scaling.core import configtools, rundir
from scaling.core.errors import ConfigError

log = logging.getLogger(__name__)


def check_config(run: rundir.RunDir, new: dict, resumable: Sequence[str]) -> list[str]:
  """Raises ConfigError when `run` holds a run of another config; returns the changed keys that are allowed
  (their prefixes in `resumable`: settings that do not change the numbers)."""
  if not os.path.exists(run.file(rundir.CONFIG_FILE)):
    return []
  old = run.read_config()["config"]
  changed = configtools.config_changes(old, new)
  blocking = [k for k in changed if not k.startswith(tuple(resumable))]
  if blocking:
    raise ConfigError(f"--workdir {run.path} holds a run with a different config "
                      f"({configtools.describe_changes(old, new, blocking)}); use a new --workdir or the original "
                      "config")
  return changed


def finished(status_run: rundir.RunDir, total_steps: int) -> dict | None:
  """The stored status when the run is already done with `total_steps` (the trainer then has nothing to do)."""
  status = status_run.read_status()
  if status and status["state"] == "done" and status["step"] >= total_steps:
    return status
  return None


def restore(ckpt: ckpt_lib.Checkpointer, abstract_state: Any) -> tuple[int, Any, dict] | None:
  """(step, state, saved JSON item) of the newest good checkpoint, or None for a fresh start."""
  restored = ckpt.restore_latest(abstract_state)
  if restored:
    log.info("resumed from step %d", restored[0])
  return restored


def prepare_dirs(runs: Sequence[rundir.RunDir], experiment: str, configs: Sequence[dict],
                 summaries: Sequence[dict], start: int | None, files: Sequence[str] = ()) -> None:
  """Writes each run's config.json and drops its records after `start` (None: a fresh run, drop everything) from
  metrics.jsonl, perf.jsonl and the extra `files`."""
  for run, config, summary in zip(runs, configs, summaries, strict=True):
    run.write_config(experiment, config, summary)
    for name in (rundir.METRICS_FILE, rundir.PERF_FILE, *files):
      run.truncate_metrics(-1 if start is None else start, name=name)
