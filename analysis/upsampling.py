"""Over-upsampling: how often each train instance of a task repeats at a frequency, and where a sweep stopped
generalising.

repeats(f) = f · total_steps / n_train: instances per batch × batches over the run / distinct train instances
(T_CMP and T_ADD hold 10,000 pairs split 50/50, so n_train = TRAIN_INSTANCES = 5,000; a run summary's
tasks[t]["n_train"] overrides it). The gap at a frequency is train-split minus test-split accuracy at the final
eval (eval/<task>_train/accuracy vs eval/<task>/accuracy), averaged over the runs at that frequency nearest in size
to the planned one. The sweep "still generalised" at a frequency whose gap is <= GAP_TOL; the planner warns when
f* would repeat instances more often than the most repeated frequency that still generalised.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

TRAIN_INSTANCES = 5000
GAP_TOL = 0.1


@dataclasses.dataclass
class FrequencyGap:
  freq: float
  repeats: float
  gap: float  # train − test accuracy, nan when the runs log no train-split eval
  train_acc: float
  test_acc: float
  size: float
  n_runs: int


@dataclasses.dataclass
class Upsampling:
  """Per-frequency repeats and gaps, the largest repeat count that still generalised, and the verdict at f*."""

  task: str
  n_train: int
  total_steps: float
  per_frequency: list[FrequencyGap]
  repeats_ok: float | None  # most repeats at which the gap stayed <= gap_tol (None: none measured / none did)
  gap_tol: float
  repeats_at_f_star: float | None = None
  warning: str | None = None

  def to_dict(self):
    return dataclasses.asdict(self)


def run_length(configs: dict[str, dict], runs: list[str]) -> float:
  """Median total_steps of the runs' summaries (nan when none records it)."""
  steps = [float(configs[r]["summary"]["total_steps"]) for r in runs
           if r in configs and (configs[r].get("summary") or {}).get("total_steps")]
  return float(np.median(steps)) if steps else math.nan


def n_train_of(configs: dict[str, dict], runs: list[str], task: str, default: int = TRAIN_INSTANCES) -> int:
  for r in runs:
    info = ((configs.get(r, {}).get("summary") or {}).get("tasks") or {}).get(task) or {}
    if info.get("n_train"):
      return int(info["n_train"])
  return default


def measure(fin: pd.DataFrame, configs: dict[str, dict], task: str, size: float, *, n_train: int | None = None,
            gap_tol: float = GAP_TOL) -> Upsampling:
  """Repeats and train–test accuracy gaps per frequency of `task` in a `load.final` table (random schedule)."""
  d = fin[(fin["experiment"] == "lm") & (fin["group"] == "eval") & (fin["task"] == task)
          & (fin["metric"] == "accuracy") & (fin["schedule"] == "random")]
  runs = sorted({f"{s}/{r}" for s, r in zip(d["sweep"], d["run"])})
  steps = run_length(configs, runs)
  n_train = n_train or n_train_of(configs, runs, task)
  rows = []
  for f, g in d.groupby("frequency_per_batch", observed=True, sort=True):
    sizes = g["n_params_non_embedding"].dropna().unique()
    if not len(sizes):
      continue
    near = sizes[np.argmin(np.abs(np.log(sizes) - math.log(size)))]
    g = g[g["n_params_non_embedding"] == near]
    test = g[g["split"] == "test"].set_index(["sweep", "run"])["value"]
    train = g[g["split"] == "train"].set_index(["sweep", "run"])["value"]
    both = test.index.intersection(train.index)
    gap = float((train[both] - test[both]).mean()) if len(both) else math.nan
    rows.append(FrequencyGap(freq=float(f), repeats=float(f) * steps / n_train, gap=gap,
                             train_acc=float(train[both].mean()) if len(both) else math.nan,
                             test_acc=float(test.mean()), size=float(near), n_runs=int(len(test))))
  ok = [r.repeats for r in rows if np.isfinite(r.gap) and r.gap <= gap_tol]
  return Upsampling(task=task, n_train=n_train, total_steps=steps, per_frequency=rows,
                    repeats_ok=max(ok) if ok else None, gap_tol=gap_tol)


def verdict(up: Upsampling, f_star: float) -> Upsampling:
  """Fills repeats_at_f_star and the warning (f* beyond the repeat count at which the sweep still generalised)."""
  up = dataclasses.replace(up)
  if not np.isfinite(up.total_steps) or not np.isfinite(f_star):
    up.warning = "run length unknown (no total_steps in the run summaries): repeats not computed"
    return up
  up.repeats_at_f_star = f_star * up.total_steps / up.n_train
  measured = [r for r in up.per_frequency if np.isfinite(r.gap)]
  if not measured:
    up.warning = (f"no train-split evals (eval/{up.task}_train/accuracy) in the sweep: over-upsampling is not "
                  "checked; log them to measure memorisation")
  elif up.repeats_ok is None:
    up.warning = (f"no frequency of the sweep generalised (train−test accuracy gap <= {up.gap_tol:g} at every "
                  f"frequency measured); at f* each train instance repeats {up.repeats_at_f_star:.3g}×: expect "
                  "memorisation, not learning")
  elif up.repeats_at_f_star > up.repeats_ok:
    up.warning = (f"at f* each train instance repeats {up.repeats_at_f_star:.3g}× over the run, beyond the "
                  f"{up.repeats_ok:.3g}× at which the sweep still generalised (gap <= {up.gap_tol:g}): too much "
                  "duplication memorises instead of learning; prefer a 2×–5× upsample plus more size, or more "
                  "distinct instances")
  return up
