"""Per-curve scaling plots with their fits, bands and N*, and N* against frequency."""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.lines import Line2D

from analysis import profile
from analysis.figures.base import FORMATS, SkipFigure, freq_palette, log_axes, save
from analysis.figures.toy import pick_tasks
from scaling.core.errors import FitError

MAX_TOY_PANELS = 16
BAND_KNOTS = 7  # profile intervals of the curve at this many sizes, interpolated in log N


def _draw_fit(ax, cf, color, label, band=True):
  c = cf.curve
  y = c.y if c.metric != "accuracy" else c.y
  ax.scatter(c.N, y, s=12, color=color, alpha=0.8, label=label)
  if cf.fit is None:
    return
  grid = np.geomspace(c.N.min() / 1.5, c.N.max() * 1.5, 150)
  to_metric = (lambda v: 1 - v) if c.metric == "accuracy" else (lambda v: v)
  ax.plot(grid, to_metric(cf.fit.predict(grid)), color=color, lw=1.2)
  if band and (cf.fit.samples is not None or cf.fit.ci_method == "profile"):
    try:
      lo, hi = profile.curve_band(cf.fit, grid, n_knots=BAND_KNOTS)
    except FitError:  # no residual dof: no band
      lo = hi = None
    if lo is not None:
      lo, hi = to_metric(lo), to_metric(hi)
      ax.fill_between(grid, np.minimum(lo, hi), np.maximum(lo, hi), color=color, alpha=0.15, lw=0)
  ns = cf.nstar
  if ns is not None and np.isfinite(ns.n_star):
    ax.axvline(ns.n_star, color=color, ls=":", lw=1)
    if ns.ci is not None and np.isfinite(ns.ci[0]):
      hi_ci = ns.ci[1] if np.isfinite(ns.ci[1]) else grid.max()
      ax.axvspan(max(ns.ci[0], 1e-300), hi_ci, color=color, alpha=0.06, lw=0)


def scaling_curve_groups(fits: list) -> dict[str, list]:
  """Figure name -> the curve fits it shows: one figure per (kind, task, metric); toy: one per β."""
  groups: dict[str, list] = {}
  for f in fits:
    c = f.curve
    if c.kind == "toy":
      tag = "_injected" if c.condition.get("injected") else ""
      groups.setdefault(f"scaling_curves_toy_beta{c.condition['beta']:g}{tag}", []).append(f)
    else:
      groups.setdefault(f"scaling_curves_{c.kind}_{c.task}_{c.metric}", []).append(f)
  return dict(sorted(groups.items()))


def scaling_curves(fits: list, out_dir: str, formats=FORMATS) -> list[str]:
  """Every scaling-curve figure (see scaling_curve)."""
  groups = scaling_curve_groups(fits)
  if not groups:
    raise SkipFigure("no curves")
  return [p for name, members in groups.items() for p in scaling_curve(name, members, out_dir, formats)]


def scaling_curve(name: str, members: list, out_dir: str, formats=FORMATS) -> list[str]:
  """Points per seed, the fit, its 95% band, N* (dotted) with its CI (shaded). Toy: small multiples."""
  if not members:
    raise SkipFigure("no curves")
  first = members[0].curve
  if first.kind == "toy":
    members = sorted(members, key=lambda m: (m.curve.task, m.curve.condition.get("frequency_per_token", 0)))
    pick = set(pick_tasks(len(members), MAX_TOY_PANELS))
    members = [m for i, m in enumerate(members, start=1) if i in pick]
    ncol = min(4, len(members))
    nrow = math.ceil(len(members) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.2 * nrow), squeeze=False, sharey=True)
    for ax, m in zip(axes.flat, members):
      _draw_fit(ax, m, "tab:blue", None, band=False)  # many panels, exact theory elsewhere: fit and N* only
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      ax.axhline(0.5, color="grey", ls="--", lw=0.6)
      rate = f" π_r={m.curve.condition['frequency_per_token']:.3g}" if m.curve.condition.get("injected") else ""
      ax.set_title(m.curve.task + rate + ("" if m.fit is not None else f"\n(no fit: {m.reason})"), fontsize=7)
    for ax in list(axes.flat)[len(members):]:
      ax.set_axis_off()
    fig.suptitle(f"toy β={first.condition['beta']:g}: normalised loss vs width (fit; N* dotted, its 95% CI shaded)",
                 fontsize=9)
    return save(fig, out_dir, name, formats)
  fig, ax = plt.subplots(figsize=(4.2, 3.9))
  order = lambda m: (m.curve.condition.get("schedule") or "", m.curve.condition.get("frequency_per_batch", 0.0),
                     str(m.curve.id))
  members = sorted(members, key=order)
  by_freq = freq_palette([m.curve.condition.get("frequency_per_batch", math.nan) for m in members])
  spare = iter(sns.color_palette("viridis", len(members)))
  for m in members:
    f = m.curve.condition.get("frequency_per_batch", math.nan)
    color = by_freq.get(float(f)) if f is not None and np.isfinite(f) and m.curve.kind == "task" else next(spare)
    c = m.curve
    lab = c.label().replace(f"{c.task} {c.metric}", "").strip() or c.task
    lab += f" ({m.model})" if m.fit is not None else " (no fit, see report)"
    _draw_fit(ax, m, color, lab)
  ax.set_xscale("log")
  all_N = np.concatenate([m.curve.N for m in members])
  ax.set_xlim(all_N.min() / 2, all_N.max() * 2)  # an N* far outside the sizes is in the report, not the axis
  if first.metric != "accuracy":
    ax.set_yscale("log")
  else:
    ax.set_ylim(-0.02, 1.02)
  if first.chance is not None:
    ax.axhline(first.chance, color="grey", ls="--", lw=0.8, label="chance")
  thr = next((m.nstar.threshold for m in members if m.nstar is not None), None)
  if thr is not None:
    ax.axhline(thr, color="tab:red", ls="-.", lw=0.8, label="N* level")
  if first.fix_E is not None:
    ax.axhline(first.fix_E, color="grey", ls=":", lw=0.8, label="E (entropy rate)")
  log_axes(ax, y=first.metric != "accuracy")
  ax.set_xlabel("non-embedding parameters N")
  ax.set_ylabel(f"final {first.key}")
  ax.set_title(f"{first.task}: {first.metric} vs N" + ("" if first.kind == "background" else " (dotted: N*)"),
               fontsize=8)
  fig.legend(*ax.get_legend_handles_labels(), fontsize=6, loc="outside lower center", ncol=2, frameon=False)
  return save(fig, out_dir, name, formats)


def _nstar_panel(ax, ff):
  pts = np.array([p[:4] for p in ff.points], dtype=float)
  fin = np.isfinite(pts[:, 1])
  lo = np.where(np.isfinite(pts[:, 2]) & (pts[:, 2] > 0), pts[:, 2], pts[:, 1])
  top = np.nanmax(pts[fin, 1]) * 3 if fin.any() else 1.0
  hi = np.where(np.isfinite(pts[:, 3]), pts[:, 3], top)
  yerr = np.clip([pts[fin, 1] - lo[fin], hi[fin] - pts[fin, 1]], 0, None)  # a CI that excludes its N*: no bar
  ax.errorbar(pts[fin, 0], pts[fin, 1], yerr=yerr, fmt="o", ms=4,
              capsize=2, color="tab:blue")
  never, always = np.isinf(pts[:, 1]), np.isnan(pts[:, 1])
  bottom = np.nanmin(pts[fin, 1]) / 3 if fin.any() else 1.0
  ax.scatter(pts[never, 0], np.full(never.sum(), top), marker="^", color="tab:red")
  ax.scatter(pts[always, 0], np.full(always.sum(), bottom), marker="v", color="tab:green")
  if ff.law is not None:
    g = np.geomspace(pts[:, 0].min() / 1.5, pts[:, 0].max() * 1.5, 100)
    pred = np.array([ff.law.predict(x) for x in g])
    ax.plot(g, pred[:, 0], "k-", lw=1)
    if np.isfinite(pred[:, 1]).all():
      ax.fill_between(g, pred[:, 1], pred[:, 2], color="k", alpha=0.1, lw=0)
  else:
    ax.text(0.03, 0.03, textwrap.fill(ff.reason or "no law", 38), transform=ax.transAxes, fontsize=6)
  ax.set_xscale("log")
  ax.set_yscale("log")
  log_axes(ax)
  ax.set_xlabel("instances per batch" if ff.freq_name == "frequency_per_batch" else "task frequency π")
  ax.set_ylabel("N*")
  what = f"{ff.task} {ff.metric}" if ff.kind == "task" else f"toy β={ff.condition['beta']:g}" + (
      f", injected {ff.task}" if ff.condition.get("injected") else "")
  ax.set_title(what + (f": γ = {ff.law.gamma:.2f}" if ff.law is not None else ""), fontsize=8)


def nstar_vs_frequency(freq_fits: list, out_dir: str, formats=FORMATS) -> list[str]:
  """N* against frequency with CI bars, the fitted law N* ∝ f^-γ and its 95% prediction band (one panel per
  frontier group, at most 6)."""
  usable = sorted([f for f in freq_fits if f.points], key=lambda f: (f.kind, f.id))[:6]
  if not usable:
    raise SkipFigure("no task has N* at ≥ 2 frequencies")
  ncol = min(3, len(usable))
  nrow = math.ceil(len(usable) / ncol)
  fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.9 * nrow + 0.6), squeeze=False)
  for ax, ff in zip(axes.flat, usable):
    _nstar_panel(ax, ff)
  for ax in list(axes.flat)[len(usable):]:
    ax.set_axis_off()
  handles = [Line2D([], [], ls="-", marker="o", ms=4, color="tab:blue", label="N* (95% CI)"),
             Line2D([], [], color="k", label="fitted N* ∝ f^-γ"),
             Line2D([], [], color="k", lw=6, alpha=0.1, label="95% prediction band"),
             Line2D([], [], ls="", marker="^", color="tab:red", label="never learned (N* = ∞)"),
             Line2D([], [], ls="", marker="v", color="tab:green", label="learned at every size")]
  fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
  fig.suptitle("Learnable size N* vs frequency", fontsize=10)
  return save(fig, out_dir, "nstar_vs_frequency", formats)
