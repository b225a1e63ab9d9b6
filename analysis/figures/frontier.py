"""The learnability frontier: the size × frequency plane with learned / not-learned runs, each frequency's N* with
its interval, the fitted N*(f) law with its 95% band, the planner's f* at the largest trained size, and for toy
sweeps Proposition 6's analytic N_crit(π)."""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from analysis import frontier as fr
from analysis.figures.base import FORMATS, SkipFigure, log_axes, save

LEARNED, NOT_LEARNED, LAW, PROP6, PLAN = "tab:green", "0.55", "k", "tab:red", "tab:orange"


def _learned_points(members):
  """(f, N, learned) per (frequency, size): the seed mean past N*'s threshold in the curve's metric."""
  out = []
  for m in members:
    c, ns = m.curve, m.nstar
    f = c.condition.get("frequency_per_batch" if c.kind == "task" else "frequency_per_token")
    for n in np.unique(c.N):
      v = float(np.nanmean(c.y[c.N == n]))
      better = v >= ns.threshold if c.metric == "accuracy" else v <= ns.threshold
      out.append((f, float(n), bool(better)))
  return np.array(out, dtype=float).reshape(-1, 3)


def _panel(ax, ff, members, spec):
  pts = _learned_points(members)
  ax.scatter(pts[pts[:, 2] == 1, 0], pts[pts[:, 2] == 1, 1], s=22, color=LEARNED, zorder=3)
  ax.scatter(pts[pts[:, 2] == 0, 0], pts[pts[:, 2] == 0, 1], s=22, facecolors="white", edgecolors=NOT_LEARNED,
             zorder=3)
  star = np.array([p[:4] for p in ff.points], dtype=float)
  fin = np.isfinite(star[:, 1]) & (star[:, 1] > 0)
  lo = np.where(np.isfinite(star[:, 2]) & (star[:, 2] > 0), star[:, 2], star[:, 1])
  # N* far above the sizes (a curve that barely rises) would squash the plane: the axis stops at 30x the sizes.
  top = min(max(pts[:, 1].max(), np.nanmax(np.where(fin, star[:, 1], np.nan), initial=1.0)) * 3, pts[:, 1].max() * 30)
  hi = np.where(np.isfinite(star[:, 3]), star[:, 3], top)
  yerr = np.clip([star[fin, 1] - lo[fin], hi[fin] - star[fin, 1]], 0, None)  # a CI that excludes its N*: no bar
  ax.errorbar(star[fin, 0], star[fin, 1], yerr=yerr, fmt="D", ms=4,
              color=LAW, capsize=2, zorder=4)
  f_all = np.concatenate([pts[:, 0], star[:, 0]])
  grid = np.geomspace(f_all.min() / 1.5, f_all.max() * 1.5, 200)
  if ff.law is not None:
    mid, blo, bhi = ff.law.n_star_at(grid)
    ax.plot(grid, mid, color=LAW, lw=1.2, zorder=2)
    if np.isfinite(blo).all():
      ax.fill_between(grid, blo, bhi, color=LAW, alpha=0.12, lw=0, zorder=1)
    N_top = pts[:, 1].max()
    fs, flo, fhi = ff.law.f_star(N_top)
    if np.isfinite(fs) and f_all.min() / 3 <= fs <= f_all.max() * 3:  # far outside: the report says it
      xerr = [[fs - flo if flo > 0 else 0.0], [fhi - fs if np.isfinite(fhi) else 0.0]]
      ax.errorbar([fs], [N_top], xerr=xerr, fmt="*", ms=10, color=PLAN, capsize=3, zorder=5)
  if spec is not None and ff.toy is not None:
    base = fr.base_share(spec, members[0].curve.task) if ff.condition.get("injected") else None
    rare_f = np.asarray(ff.toy["frequency"])
    g = np.geomspace(rare_f.min() / 1.3, rare_f.max() * 1.3, 300)
    ax.step(g, fr.toy_n_crit(spec, g, base_share=base), where="post", color=PROP6, ls="--", lw=1.2, zorder=2)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_ylim(pts[:, 1].min() / 2.5, top)
  log_axes(ax)
  ax.set_xlabel("task frequency (instances per batch)" if ff.kind == "task" else "task frequency π")
  ax.set_ylabel("non-embedding parameters N" if ff.kind == "task" else "width N")
  what = f"{ff.task} {ff.metric}" if ff.kind == "task" else (
      f"toy β={ff.condition['beta']:g}" + (f", injected {ff.task}" if ff.condition.get("injected") else ""))
  thr = members[0].nstar
  gam = f", γ = {ff.law.gamma:.2f}" if ff.law is not None else ""
  ax.set_title(f"{what}{gam}\nlearnable above the line: {ff.metric} {'≥' if ff.metric == 'accuracy' else '≤'} "
               f"{thr.threshold:.3g}", fontsize=8)
  if ff.law is None:
    ax.text(0.03, 0.03, textwrap.fill(f"no frontier: {ff.reason}", 40), transform=ax.transAxes, fontsize=6,
            va="bottom")


def _handles(any_toy, any_law):
  h = [Line2D([], [], ls="", marker="o", color=LEARNED, label="learned (seed mean past the threshold)"),
       Line2D([], [], ls="", marker="o", mfc="white", mec=NOT_LEARNED, label="not learned"),
       Line2D([], [], ls="-", marker="D", ms=4, color=LAW, label="N* per frequency (95% CI)")]
  if any_law:
    h += [Line2D([], [], color=LAW, lw=6, alpha=0.12, label="fitted frontier N*(f), 95% band"),
          Line2D([], [], ls="", marker="*", ms=9, color=PLAN, label="f* at the largest size (95% CI)")]
  if any_toy:
    h.append(Line2D([], [], ls="--", color=PROP6, label="Prop. 6: N_crit(π)"))
  return h


def frontier(freq_fits: list, fits: list, out_dir: str, formats=FORMATS, toy_specs: dict | None = None) -> list[str]:
  """One panel per frontier group (a task's metric across frequencies; a toy β across tasks or injected rates)."""
  by_id = {f.curve.id: f for f in fits}
  groups = [(ff, [by_id[p[4]] for p in ff.points if p[4] in by_id]) for ff in freq_fits if ff.points]
  groups = [(ff, m) for ff, m in groups if m]
  if not groups:
    raise SkipFigure("no task has a fitted N* at ≥ 2 frequencies")
  groups = sorted(groups, key=lambda g: (g[0].kind, g[0].id))[:6]
  n = len(groups)
  ncol = min(n, 3)
  nrow = math.ceil(n / ncol)
  width = max(3.6 * ncol, 6.4)  # the legend below needs room even under one panel
  fig, axes = plt.subplots(nrow, ncol, figsize=(width, 3.3 * nrow + 1.1), squeeze=False)
  specs = toy_specs or {}
  for ax, (ff, members) in zip(axes.flat, groups):
    _panel(ax, ff, members, specs.get(ff.condition.get("beta")) if ff.kind == "toy" else None)
  for ax in list(axes.flat)[n:]:
    ax.set_axis_off()
  handles = _handles(any(ff.toy for ff, _ in groups), any(ff.law is not None for ff, _ in groups))
  fig.legend(handles=handles, loc="outside lower center", ncol=3 if ncol > 1 else 2, fontsize=7, frameon=False)
  fig.suptitle("Learnability frontier: size × frequency", fontsize=10)
  return save(fig, out_dir, "frontier", formats)
