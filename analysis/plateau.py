"""Has each run's task metric stopped moving? The plateau check of the report.

A run of an LM sweep with an injected task is **plateaued** on that task when its test accuracy moved by at most
TOLERANCE of the task's chance-to-perfect range (curves.CHANCE / PERFECT: 0.05 accuracy for T_CMP, whose range is
0.5 → 1) over the last WINDOW of its steps: between the last evaluation at or before step (1 − WINDOW)·T and the
final one. Accuracy is the metric N* is read from, and the one whose "not learned" level (chance) is a level at
all; the LABEL loss of a model that has not learned the task still falls as it learns the task's format and symbol
frequencies, so its change is reported beside the flag, not used for it. The background loss over the same window
shows whether the background, too, has stopped improving (the capacity argument: a small model whose background
loss has flattened above a larger model's has no spare capacity that more steps would free).

A run with no evaluation between (1 − 2·WINDOW)·T and the window's start (too few evals to measure the window)
is `unknown`, not plateaued.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from analysis.curves import CHANCE, PERFECT, fmt_n
from analysis.report_doc import Doc, fmt

WINDOW = 0.25  # the last quarter of the steps
TOLERANCE = 0.1  # of the chance → perfect accuracy range
HEADERS = ["run", "N", "task", "f/batch", "seed", "steps", "accuracy", "Δ/range", "plateaued", "task loss",
           "background loss"]


@dataclasses.dataclass
class Check:
  run: str
  n: float
  task: str
  frequency: float
  seed: int
  step_from: int
  step_to: int
  acc_from: float
  acc_to: float
  delta_norm: float  # |Δ accuracy| / |perfect − chance|
  status: str  # plateaued | not plateaued | unknown
  loss_from: float = math.nan
  loss_to: float = math.nan
  bg_from: float = math.nan
  bg_to: float = math.nan

  def to_dict(self) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in dataclasses.asdict(self).items()}


def _series(g: pd.DataFrame, task: str, metric: str, split: str | None = "test") -> pd.Series:
  sel = (g["group"] == "eval") & (g["task"] == task) & (g["metric"] == metric)
  if split is not None:
    sel &= g["split"] == split
  return g[sel].groupby("step")["value"].mean().sort_index()


def _window(s: pd.Series, t_from: float, t_earliest: float) -> tuple[int, float, int, float] | None:
  before = s[(s.index <= t_from) & (s.index >= t_earliest)]
  if s.empty or before.empty or before.index[-1] == s.index[-1]:
    return None
  return int(before.index[-1]), float(before.iloc[-1]), int(s.index[-1]), float(s.iloc[-1])


def _at(s: pd.Series, step: int) -> float:
  return float(s.loc[step]) if step in s.index else math.nan


def check(df: pd.DataFrame, window: float = WINDOW, tolerance: float = TOLERANCE) -> list[Check]:
  """One Check per (LM run, injected task with a known chance level)."""
  d = df[(df["experiment"] == "lm") & (df["group"] == "eval")]
  out = []
  for run, g in d.groupby("run", sort=True):
    bg = _series(g, "background", "loss", split=None)
    for task in sorted(t for t in g["task"].dropna().unique() if t in CHANCE):
      acc = _series(g, task, "accuracy")
      if acc.empty:
        continue
      last = int(g["step"].max())
      w = _window(acc, (1 - window) * last, (1 - 2 * window) * last)
      first = g[g["task"] == task].iloc[0]
      meta = dict(run=run, n=float(first["n_params_non_embedding"]), task=task,
                  frequency=float(first["frequency_per_batch"]), seed=int(first["seed"]))
      if w is None:
        out.append(Check(**meta, step_from=-1, step_to=int(acc.index[-1]), acc_from=math.nan,
                         acc_to=float(acc.iloc[-1]), delta_norm=math.nan, status="unknown"))
        continue
      s0, a0, s1, a1 = w
      span = abs(PERFECT["accuracy"] - CHANCE[task]["accuracy"])
      delta = abs(a1 - a0) / span
      loss = _series(g, task, "loss")
      out.append(Check(**meta, step_from=s0, step_to=s1, acc_from=a0, acc_to=a1, delta_norm=delta,
                       status="plateaued" if delta <= tolerance else "not plateaued", loss_from=_at(loss, s0),
                       loss_to=_at(loss, s1), bg_from=_at(bg, s0), bg_to=_at(bg, s1)))
  return out


def _arrow(a: float, b: float) -> str:
  return f"{fmt(a, 3)} → {fmt(b, 3)}" if np.isfinite(a) else f"→ {fmt(b, 3)}"


def section(doc: Doc, checks: list[Check]) -> None:
  doc.h(2, "Plateau check")
  if not checks:
    doc.p("No LM run with an injected task: nothing to check.")
    return
  doc.p(f"Criterion: a run is plateaued on its task when its test accuracy moved by at most {TOLERANCE:g} of the "
        f"chance → perfect range over the last {WINDOW:.0%} of its steps (T_CMP: ≤ "
        f"{TOLERANCE * abs(PERFECT['accuracy'] - CHANCE['cmp']['accuracy']):.3g} accuracy), from the last "
        "evaluation at or before that point to the final one. The task loss and background loss over the same "
        "window are shown beside it (a LABEL loss above chance can still fall while the model learns the task's "
        "format; it is not the criterion).")
  order = sorted(checks, key=lambda c: (c.task, c.frequency, c.n, c.seed))
  bad = [c for c in order if c.status != "plateaued"]
  n_ok = len(checks) - len(bad)
  flagged = ", ".join(f"{fmt_n(c.n)} f={c.frequency:g} seed {c.seed} ({c.status})" for c in bad)
  doc.p(f"{n_ok} of {len(checks)} runs plateaued" + (f"; NOT plateaued or unknown: {flagged}." if bad else "."))
  rising = [c for c in bad if c.status == "not plateaued" and c.acc_to > c.acc_from]
  if rising:
    doc.p(f"{len(rising)} of the flagged runs were still improving at their last step, so the N* read from this "
          "sweep is the size that learns the task within its step budget, an upper bound on the N* of a longer "
          "budget; train longer (or at fewer, cheaper sizes) before reading it as a capacity limit.")
  rows = [[c.run, fmt_n(c.n), c.task, f"{c.frequency:g}", c.seed, f"{c.step_from} → {c.step_to}",
           _arrow(c.acc_from, c.acc_to), fmt(c.delta_norm, 3), c.status, _arrow(c.loss_from, c.loss_to),
           _arrow(c.bg_from, c.bg_to)]
          for c in order]
  doc.table(HEADERS, rows)
