"""The report's sections about fits: what the sweep supports, fitted laws, N*, the frontier, the planner, the
held-out checks. Each function appends blocks to a report_doc.Doc."""

from __future__ import annotations

import math

import numpy as np

from analysis import fitcore
from analysis.curves import fmt_n
from analysis.fitcore import PARAM_NAMES
from analysis.fitresult import CI_METHODS
from analysis.report_doc import Doc, fmt, fmt_ci, fmt_nstar

LOFO_MIN = 3  # frequencies needed for leave-one-frequency-out
HOLDOUT_MIN = fitcore.MIN_SIZES_FREE_E + 1


def capabilities(curves, fits, freq_fits) -> list[str]:
  """Plain statements of what this sweep's shape allows, and why the rest is missing."""
  tasks = [c for c in curves if c.kind == "task"]
  out = []
  if tasks:
    n_sizes = max(c.n_sizes for c in tasks)
    freqs = sorted({c.condition.get("frequency_per_batch") for c in tasks})
    seeds = max(len(np.unique(c.seeds[c.N == n])) for c in tasks for n in np.unique(c.N))
    if n_sizes < fitcore.MIN_SIZES_FREE_E:
      out.append(f"task curves have {n_sizes} sizes: a fit with a free floor needs ≥ {fitcore.MIN_SIZES_FREE_E} "
                 "(floor E, amplitude A and exponent α must be told apart, with residual degrees of freedom left for "
                 "an interval), so nothing is fitted and N* is only interpolated between sizes, without a CI; the "
                 "frontier N*(f) and the planner need fitted N* at ≥ 2 frequencies. Add sizes (≥ 5, ideally ≥ 6 for "
                 "the held-out-size check).")
    elif n_sizes < HOLDOUT_MIN:
      out.append(f"task curves have {n_sizes} sizes: fitted, but the leave-largest-size-out check needs ≥ "
                 f"{HOLDOUT_MIN}.")
    if len(freqs) < 2:
      out.append(f"one task frequency ({freqs[0]:g}/batch): no frontier N*(f) and no planner; add frequencies.")
    elif len(freqs) < LOFO_MIN:
      out.append(f"{len(freqs)} task frequencies: the frontier is fitted through them, but the leave-one-"
                 f"frequency-out check needs ≥ {LOFO_MIN}.")
    if seeds < 2:
      out.append("one seed per (size, frequency): intervals rest on the scatter about the fitted curve only; "
                 "≥ 2 seeds also measure seed noise directly.")
  n_fit = sum(f.status == "ok" and f.curve.kind == "task" for f in fits)
  if tasks and n_fit:
    out.append(f"{n_fit} task curves fitted; {sum(ff.law is not None for ff in freq_fits)} frontier(s) fitted.")
  return out


def _param_cells(fit):
  if fit is None:
    return ["–"] * 4
  cells = []
  for n in PARAM_NAMES.get(fit.method, tuple(fit.params)):
    ci = fit.ci.get(n) if fit.ci else None
    tag = " (fixed)" if n in fit.fixed else (" (not identified)" if fit.identified.get(n) is False else "")
    cells.append(f"{n}={fmt_ci(fit.params[n], ci)}{tag}")
  return cells + [""] * (4 - len(cells))


def fits_section(doc: Doc, args, fits) -> None:
  doc.h(2, "Fitted scaling laws")
  methods = sorted({f.fit.ci_method for f in fits if f.fit is not None and f.fit.ci_method})
  doc.p("Each curve: final value per run vs size (non-embedding parameters; toy: width), one point per seed, "
        "fitted by least squares on log values. Power law L = E + A·N^-α (E free within what the data allow, or "
        "fixed to a known floor), or logistic step L_lo + (L_hi − L_lo)·σ(−k·log(N/N0)) when the leave-one-size-out "
        "error (LOSO) prefers it. Accuracy is fitted as error = 1 − accuracy. Brackets: 95% intervals — "
        + "; ".join(f"{m}: {CI_METHODS[m]}" for m in methods) + ". 'not identified': the interval spans every "
        "value the bounds allow (a flat profile). at bound: parameters that ended on a fit bound.")
  rows = []
  for f in fits:
    c = f.curve
    if c.kind == "toy" and len(fits) > 40 and f.status == "ok":
      continue  # toy curves are summarised in their own table below
    loso = ", ".join(f"{k}={v:.3g}" for k, v in (f.choice_errors or {}).items()) or "–"
    rows.append([c.label(), f.model or "–", c.n_sizes, len(c.y), *_param_cells(f.fit),
                 ", ".join(f.fit.at_bound) if f.fit is not None and f.fit.at_bound else "–", loso,
                 f.reason or ""])
  doc.table(["curve", "model", "sizes", "points", "fitted parameters [95% CI]", "", "", "", "at bound",
             "LOSO RMS log err", "note"], rows)
  if not rows:
    doc.p("No curves to fit.")


def nstar_section(doc: Doc, fits) -> None:
  doc.h(2, "Learnable size N*")
  doc.p("N*: the size where the fitted curve crosses the task's threshold — by default halfway between its chance "
        "level and its perfect level (accuracy 1, LABEL loss 0, toy normalised loss 0; the fitted floor when the "
        "perfect level is unknown). CI: 95% profile-likelihood (or bootstrap) interval of N*, ∞ at the top when the "
        "data allow a curve that never crosses. P(cross): the confidence that the curve crosses at all. "
        "extrapolated: N* outside the trained sizes.")
  rows = []
  for f in fits:
    ns = f.nstar
    if ns is None:
      continue
    c = f.curve
    rows.append([c.label(), f"{fmt(c.chance)} ({c.chance_source})" if c.chance is not None else
                 "smallest model's mean", fmt(ns.threshold), ns.rule, fmt_nstar(ns), fmt(ns.p_cross),
                 fmt(ns.extrapolated), ns.reason or ""])
  doc.table(["curve", "chance", "threshold", "threshold rule", "N* [95% CI]", "P(cross)", "extrapolated", "reason"],
            rows)
  if not rows:
    has_tasks = any(f.curve.kind in ("task", "toy") for f in fits)
    doc.p("No N*: no task curve could be fitted (see the fits table and 'What this sweep supports')." if has_tasks
          else "No task curves in this sweep: N* applies to injected tasks (data.tasks.<t>.frequency > 0) and toy "
               "tasks.")
  interp = [f for f in fits if f.interpolated is not None]
  if interp:
    doc.h(3, "Interpolated crossings (too few sizes for a fit)")
    doc.p("Model-free: where the per-size mean crosses the same threshold, interpolated in log N between the two "
          "bracketing sizes. No confidence interval; add sizes (≥ 5) for a fitted N* with one.")
    doc.table(["curve", "chance", "threshold", "N* (interpolated)", "note"],
              [[f.curve.label(), f"{fmt(f.curve.chance)} ({f.curve.chance_source})" if f.curve.chance is not None
                else "smallest model's mean", fmt(f.interpolated.threshold), fmt(f.interpolated.n_star),
                f.interpolated.note] for f in interp])


def frontier_section(doc: Doc, freq_fits, planner: dict) -> None:
  doc.h(2, "Learnability frontier N*(f)")
  if not freq_fits:
    doc.p("No frontier: it needs a task with a fitted N* at ≥ 2 frequencies (see 'What this sweep supports').")
    return
  doc.p("log N* = c − γ·log f, weighted by the N* intervals (the covariance scaled up by the Birge ratio χ²/dof when "
        "the frequencies scatter more than their intervals explain). f*(N) inverts it: the frequency at which the task "
        "becomes learnable at size N, its interval from inverting the law's band. See the frontier figure.")
  rows = []
  for ff in freq_fits:
    law = ff.law
    pts = "; ".join(f"{p[0]:g}: {fmt_ci(p[1], p[2:4] if np.isfinite(p[2]) else None)}" for p in ff.points)
    rows.append([ff.id, len(ff.points), fmt_ci(law.gamma, law.ci["gamma"]) if law and law.ci else
                 (fmt(law.gamma) if law else "–"), fmt(math.exp(law.c)) if law else "–",
                 fmt(law.birge) if law and law.weighted else "–", pts,
                 "; ".join(f"{f:g}: {why}" for f, why in law.excluded) if law else (ff.reason or "")])
  doc.table(["group", "frequencies", "γ [95% CI]", "N* at f=1", "Birge ratio", "N* per frequency [95% CI]",
             "left out / reason"], rows)
  toy = [ff for ff in freq_fits if ff.toy and ff.toy.get("agree") is not None]
  if toy:
    doc.h(3, "Toy: fitted frontier vs Proposition 6")
    doc.p("N_crit(π) = 1 + #{i : μ_i^F > π·λ_1}: the width at which a rank-one rare feature of frequency π survives "
          "against the frequent set alone. The fitted frontier agrees when it lies within one step of the width grid "
          "of N_crit. A rare task also competes with the other rare tasks' features, so its entry width can exceed "
          "N_crit; an injected task above every other rare task's share meets Prop. 6's setting exactly.")
    doc.table(["group", "task", "π", "N_crit (Prop. 6)", "fitted frontier", "within one width step"],
              [[ff.id, t, fmt(p), fmt(n), fmt(v), fmt(a)] for ff in toy for t, p, n, v, a in
               zip(ff.toy["tasks"], ff.toy["frequency"], ff.toy["n_crit"], ff.toy["fitted"], ff.toy["agree"])])
  if planner:
    doc.h(3, "Planner: upsample instead of scaling")
    doc.p("At the largest trained size of each task: the frequency f* at which the task becomes learnable there, "
          "as a factor over the sweep's lowest frequency, and the size the lowest frequency would need instead. "
          "`python -m analysis.plan --sweep_dir DIR --task T --size S` asks the same at any size and writes a sweep "
          "config that verifies the prediction (--emit_config).")
    doc.ul([planner_line(r) for r in planner.values()])


def planner_line(r: dict) -> str:
  lo, hi = r["f_star_ci"]
  up = r["upsampling"]
  where = ""
  if r["extrapolated"]:
    where = (" — below the sweep's frequencies: already learnable at the lowest" if r["f_star"] < r["frequencies"][0]
             else " — beyond the sweep's frequencies: extrapolated")
  s = (f"{r['task']} {r.get('metric', '')} at N = {fmt_n(r['N'])}: f* = {fmt(r['f_star'])}/batch "
       f"[{fmt(lo)}, {fmt(hi)}]{where}, "
       f"{fmt(r['factor'])}× the lowest frequency {r['current_frequency']:g}/batch "
       f"[{fmt(r['factor_ci'][0])}×, {fmt(r['factor_ci'][1])}×]; at {r['current_frequency']:g}/batch it needs "
       f"N* = {fmt(r['n_star_at_current'])} [{fmt(r['n_star_at_current_ci'][0])}, "
       f"{fmt(r['n_star_at_current_ci'][1])}]")
  if up.get("repeats_at_f_star") is not None:
    s += f"; at f* each of the {up['n_train']} train instances repeats {up['repeats_at_f_star']:.3g}×"
    if up.get("repeats_ok") is not None:
      s += f" (the sweep still generalised up to {up['repeats_ok']:.3g}×)"
  if up.get("warning"):
    s += f". Warning: {up['warning']}"
  return s


def holdout_section(doc: Doc, fits, freq_fits) -> None:
  doc.h(2, "Held-out checks")
  doc.p("Leave-largest-size-out: each curve refitted without its largest size predicts that size's mean (95% "
        "interval: the curve's band plus the seed noise of the mean) and its N* interval is checked against the "
        "full-data N*. Leave-one-frequency-out: each frontier refitted without one frequency predicts that "
        "frequency's N* (interval: the law's band plus that N*'s own uncertainty) and, inversely, the frequency at "
        "which the observed N* is reached.")
  rows = []
  for f in fits:
    h = f.holdout
    if h is None:
      continue
    rows.append([f.curve.label(), fmt_n(h.size), fmt(h.observed), fmt(h.predicted), f"{h.rel_error:+.1%}",
                 fmt_ci(h.predicted, h.interval) if h.interval else "–", fmt(h.inside),
                 fmt_nstar(h.n_star_heldout), fmt(h.n_star_full.n_star), fmt(h.n_star_inside)])
  doc.table(["curve", "held-out size", "observed", "predicted", "error", "prediction [95%]", "inside",
             "N* without it [95% CI]", "N* with it", "inside"], rows)
  if not rows:
    doc.p(f"No leave-largest-size-out check: it needs ≥ {HOLDOUT_MIN} sizes per fitted curve.")
  rows = [[ff.id, f"{h.freq:g}", fmt(h.n_star_observed), fmt_ci(h.n_star_predicted, h.n_star_interval),
           f"{h.log_error:+.2f}", fmt(h.n_star_inside), fmt_ci(h.f_star_predicted, h.f_star_interval), fmt(h.f_inside)]
          for ff in freq_fits for h in ff.holdouts]
  doc.table(["frontier", "held-out frequency", "N* fitted", "N* predicted [95%]", "log error", "inside",
             "f* at that N* [95%]", "inside"], rows)
  if not rows:
    doc.p(f"No leave-one-frequency-out check: it needs a frontier through ≥ {LOFO_MIN} frequencies.")
