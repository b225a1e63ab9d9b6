"""Where injected task instances go: per-batch counts and row placement, a pure function of (seed, step).

A task's `frequency` is its mean number of instances per batch (0.1 = one every ten batches); `schedule` says how
they are spread over batches:

  random      every row independently holds the task with probability frequency / batch_size
  interleave  evenly spaced: batch i holds floor((i+1)·f) − floor(i·f) instances (exact long-run rate)
  burst       period·f instances in every `period`-th batch (batches 0, P, 2P, ...); paper Fig 6b / Fig 8
  withhold    withheld for `period` batches, then period·f instances at once (batches P−1, 2P−1, ...);
              paper Fig 4's matched-frequency injection with gap G = period

All four have the same long-run frequency. `random` tasks compete for rows with the background only; the
deterministic schedules are placed first, so every task's mean count is exactly its frequency as long as the
batch has room (`validate` checks). Row placement within a batch is a seeded permutation.

`allocate(...)` returns, for one batch, an int array over rows: −1 for background, t for task t.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from scaling.core.errors import ScheduleError

SCHEDULES = ("random", "interleave", "burst", "withhold")
PURPOSE_SCHEDULE = 21
BACKGROUND = -1




@dataclasses.dataclass(frozen=True)
class TaskSchedule:
  name: str
  frequency: float  # mean instances per batch
  schedule: str = "random"
  period: int = 1  # burst / withhold: batches per injection

  def per_injection(self) -> float:
    return self.frequency * self.period


def validate(tasks: Sequence[TaskSchedule], batch_size: int, fill: bool = False) -> None:
  """Checks frequencies and capacity. fill=True: tasks must cover the whole batch (no background; the toy)."""
  names = [t.name for t in tasks]
  if len(set(names)) != len(names):
    raise ScheduleError(f"task names repeat: {names}")
  for t in tasks:
    if t.schedule not in SCHEDULES:
      raise ScheduleError(f"task {t.name!r}: schedule {t.schedule!r} is not one of {SCHEDULES}")
    if not (isinstance(t.frequency, (int, float)) and math.isfinite(t.frequency)) or t.frequency < 0:
      raise ScheduleError(f"task {t.name!r}: frequency {t.frequency!r} must be a finite number >= 0 "
                          "(instances per batch)")
    if t.period < 1:
      raise ScheduleError(f"task {t.name!r}: period {t.period} must be >= 1")
    if t.schedule in ("burst", "withhold"):
      m = t.per_injection()
      if abs(m - round(m)) > 1e-9:
        raise ScheduleError(f"task {t.name!r}: {t.schedule} injects frequency*period = {m:g} instances, which "
                            "must be a whole number; adjust frequency or period")
    elif t.period != 1:
      raise ScheduleError(f"task {t.name!r}: period={t.period} only applies to burst/withhold schedules")
  det_peak = sum(_peak(t) for t in tasks if t.schedule != "random")
  rand_mean = sum(t.frequency for t in tasks if t.schedule == "random")
  if det_peak + rand_mean > batch_size + 1e-9:
    raise ScheduleError(f"tasks need up to {det_peak + rand_mean:g} rows in one batch but the batch has "
                        f"{batch_size}; lower the frequencies/periods or raise the batch size")
  if fill and abs(sum(t.frequency for t in tasks) - batch_size) > 1e-6 * batch_size:
    raise ScheduleError(f"task frequencies sum to {sum(t.frequency for t in tasks):g} but must fill the batch "
                        f"of {batch_size}")


def _peak(t: TaskSchedule) -> int:
  if t.schedule == "interleave":
    return math.ceil(t.frequency)
  if t.schedule in ("burst", "withhold"):
    return int(round(t.per_injection()))
  return 0


def deterministic_count(t: TaskSchedule, step: int) -> int:
  """Instances of a non-random task in batch `step`."""
  if t.schedule == "interleave":
    return math.floor((step + 1) * t.frequency + 1e-9) - math.floor(step * t.frequency + 1e-9)
  if t.schedule == "burst":
    return int(round(t.per_injection())) if step % t.period == 0 else 0
  if t.schedule == "withhold":
    return int(round(t.per_injection())) if (step + 1) % t.period == 0 else 0
  raise ValueError(f"{t.schedule!r} is not deterministic")


def allocate(tasks: Sequence[TaskSchedule], batch_size: int, seed: int, step: int,
             fill: bool = False) -> np.ndarray:
  """Row -> task index (−1 background) for batch `step`. Pure function of its arguments."""
  rng = np.random.default_rng([seed, PURPOSE_SCHEDULE, step])
  rows = np.full(batch_size, BACKGROUND, np.int64)
  order = rng.permutation(batch_size)
  used = 0
  for ti, t in enumerate(tasks):
    if t.schedule != "random":
      c = deterministic_count(t, step)
      rows[order[used:used + c]] = ti
      used += c
  rand = [ti for ti, t in enumerate(tasks) if t.schedule == "random" and t.frequency > 0]
  free = order[used:]
  if rand and len(free):
    # Renormalising over the free rows keeps each random task's mean count exactly at its frequency.
    p = np.array([tasks[ti].frequency for ti in rand]) / len(free)
    if fill:
      p = p / p.sum()
      choice = rng.choice(len(rand), size=len(free), p=p)
    else:
      choice = rng.choice(len(rand) + 1, size=len(free), p=np.append(p, max(0.0, 1.0 - p.sum())))
    rows[free] = np.where(choice < len(rand), np.asarray(rand)[np.minimum(choice, len(rand) - 1)], BACKGROUND)
  return rows


def counts(tasks: Sequence[TaskSchedule], batch_size: int, seed: int, step: int, fill: bool = False) -> np.ndarray:
  """Instances per task in batch `step` (length len(tasks))."""
  rows = allocate(tasks, batch_size, seed, step, fill)
  return np.bincount(rows[rows >= 0], minlength=len(tasks))
