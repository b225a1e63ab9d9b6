"""What rerunning a trainer's command in an existing workdir does: refuse another run's config (and a silent change
of train.steps), exit at once when the run is finished, restore the newest good checkpoint, check that the run
dir's records reach that checkpoint, and rewrite the run dirs from its step.

Metrics after the restored step are recomputed bit-identically, so they are truncated rather than duplicated.

`check_config_change(old, new, resumable=..., step=..., extend=...)` compares the config stored in config.json
with the one resuming it:
  - a key outside `resumable` (prefixes of settings that only measure or only place the computation) differs:
    ConfigError, the run must use a new --workdir or its original config;
  - `train.steps` differs: the steps already trained (0 .. step-1) used the learning-rate schedule of the old
    length. The change is allowed when that schedule is identical on those steps under the new length (a
    `constant` schedule; a `wsd` schedule whose decay had not started), and otherwise refused unless `--extend`
    is given. Either way the change is returned as a `history_entry` for `RunDir.write_config`, so config.json
    keeps both lengths and the step where one became the other;
  - shortening a run below the step it already reached is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import numpy as np

from scaling.core import checkpoint as ckpt_lib
from scaling.core import configtools, optim, rundir
from scaling.core.errors import ConfigError

log = logging.getLogger(__name__)

STEPS_KEY = "train.steps"


@dataclasses.dataclass(frozen=True)
class ConfigChange:
  """The keys that differ (all allowed), and the config.json history entry to record (None: nothing to record)."""

  changed: list[str]
  history_entry: dict | None = None

  def describe(self) -> str:
    return ", ".join(self.changed)


class _Train:
  """The attributes optim.lr_schedule reads, from a plain dict."""

  def __init__(self, d: dict):
    self.__dict__.update(d)


def schedule_agrees(old_train: dict, new_train: dict, steps_done: int) -> bool:
  """Is the learning rate of steps 0 .. steps_done-1 the same under both train settings?"""
  if steps_done <= 0:
    return True
  t = np.arange(steps_done)
  a = np.asarray(optim.lr_schedule(_Train(old_train))(t))
  b = np.asarray(optim.lr_schedule(_Train(new_train))(t))
  return bool(np.array_equal(a, b))


def check_config_change(old: dict, new: dict, *, resumable: Sequence[str], step: int | None,
                        extend: bool = False) -> ConfigChange:
  """Raises ConfigError (one line) for a change that would alter what the run computed; see the module docstring.

  step: the restored checkpoint's step (None: unknown, every step of the old run counts as trained)."""
  a, b = configtools.flatten(old), configtools.flatten(new)
  changed = sorted(k for k in set(a) | set(b) if a.get(k, "<missing>") != b.get(k, "<missing>"))
  blocking = [k for k in changed if k != STEPS_KEY and not k.startswith(tuple(resumable))]
  if blocking:
    diff = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in blocking[:4])
    more = f" (+{len(blocking) - 4} more)" if len(blocking) > 4 else ""
    raise ConfigError(f"the run dir holds a run with a different config ({diff}{more}) — use a new --workdir or "
                      "the original config")
  if STEPS_KEY not in changed:
    return ConfigChange(changed)
  old_steps, new_steps = a[STEPS_KEY], b[STEPS_KEY]
  done = old_steps if step is None else step
  if new_steps < done:
    raise ConfigError(f"train.steps {old_steps} -> {new_steps}: the run already reached step {done} — use a new "
                      "--workdir for a shorter run")
  agrees = schedule_agrees(old["train"], new["train"], done)
  schedule = b.get("train.schedule")
  if not agrees and not extend:
    raise ConfigError(f"train.steps {old_steps} -> {new_steps}: the {schedule} learning-rate schedule depends on "
                      f"train.steps, so steps 1..{done} were trained on the {old_steps}-step schedule (a constant "
                      "schedule would not be) — use a new --workdir, or pass --extend to continue on the "
                      f"{new_steps}-step schedule (recorded in config.json history)")
  how = "--extend" if extend else f"{schedule} schedule unchanged on steps 1..{done}"
  return ConfigChange(changed, {"step": done, "changes": {STEPS_KEY: [old_steps, new_steps]}, "how": how,
                                "schedule_unchanged_on_trained_steps": agrees})


def check_config(run: rundir.RunDir, new: dict, resumable: Sequence[str], *, extend: bool = False
                 ) -> ConfigChange | None:
  """check_config_change against the config stored in `run` (None when there is none: a fresh run dir)."""
  if not os.path.exists(run.file(rundir.CONFIG_FILE)):
    return None
  steps = ckpt_lib.saved_steps(run.checkpoint_dir)
  try:
    return check_config_change(run.read_config()["config"], new, resumable=resumable,
                               step=steps[-1] if steps else None, extend=extend)
  except ConfigError as e:
    raise ConfigError(f"--workdir {run.path}: {e}") from None


def finished(status_run: rundir.RunDir, total_steps: int) -> dict | None:
  """The stored status when the run is already done with `total_steps` (the trainer then has nothing to do)."""
  status = status_run.read_status()
  if status and status["state"] == "done" and status["step"] >= total_steps:
    return status
  return None


def check_records(runs: Sequence[rundir.RunDir], start: int | None, total_steps: int,
                  expected: dict[str, list[int]]) -> None:
  """Before anything is written: every run's record files must reach the restored step `start` (see
  RunDir.resume_metrics; raises MetricsError with the repair command). `expected`: file -> the steps <= start at
  which the loop certainly wrote a record. Also drops what lies after `start` (and a torn last line)."""
  for run in runs:
    for name, steps in expected.items():
      run.resume_metrics(start, name=name, expected_steps=steps, total_steps=total_steps)
    run.resume_metrics(start, name=rundir.PERF_FILE)


def prepare_dirs(runs: Sequence[rundir.RunDir], experiment: str, configs: Sequence[dict],
                 summaries: Sequence[dict], change: ConfigChange | None = None) -> None:
  """Writes each run's config.json (with the change's history entry, if any)."""
  entry = change.history_entry if change is not None else None
  for run, config, summary in zip(runs, configs, summaries, strict=True):
    run.write_config(experiment, config, summary, history_entry=entry)


def log_resumed(start: int | None) -> None:
  if start is not None:
    log.info("resumed from step %d", start)
