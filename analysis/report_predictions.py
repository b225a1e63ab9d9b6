"""The report's predictions section: Fig 1's compute-matched vs converged fits, Chinchilla's L(N, D), and the toy
simulation against its exact theory."""

from __future__ import annotations

import numpy as np

from analysis import predictions as pr
from analysis.report_doc import Doc, fmt, fmt_ci, fmt_nstar


def predictions_section(doc: Doc, fits, f1, chin, toy_comps) -> None:
  doc.h(2, "Predictions")
  if f1 is not None:
    doc.h(3, "Fig 1: compute-matched vs converged loss")
    items = []
    budget = fmt(f1.budget) if f1.budget else "–"
    items.append(f"L_C: {f1.key_C} at C = {budget} FLOPs, interpolated in log FLOPs; {len(f1.points_C)} runs "
                 f"({len(f1.left_out)} left out: no evals bracket C)")
    items.append(f"L_∞: final {f1.key} of the longest-trained runs per size ({len(f1.points_inf)} runs; 'converged' "
                 "only as far as the sweep trained them)")
    for name, fit, why in (("L_C", f1.fit_C, f1.reason_C), ("L_∞", f1.fit_inf, f1.reason_inf)):
      if fit is None:
        items.append(f"{name}: no fit ({why})")
      else:
        items.append(f"{name}: α = {fmt_ci(fit.params['alpha'], (fit.ci or {}).get('alpha'))}, "
                     f"A = {fmt(fit.params['A'])}, E = {fmt(fit.params['E'])}"
                     + (" (fixed)" if "E" in fit.fixed else "")
                     + (f"; at bound: {', '.join(fit.at_bound)}" if fit.at_bound else ""))
    if f1.steeper is not None:
      items.append(f"L_∞ steeper than L_C (α_∞ > α_C, the paper's claim: 0.46 vs 0.34): {fmt(f1.steeper)}")
    doc.ul(items)
  if chin is not None:
    doc.h(3, "Chinchilla L(N, D)")
    if chin.fit is None:
      doc.p(f"No fit: {chin.reason}.")
    else:
      p, ci = chin.fit.params, chin.fit.ci or {}
      doc.p(f"Fitted on {chin.fit.n_points} evals (every eval after the first "
            f"{int(pr.CHINCHILLA_MIN_FRACTION * 100)}% of each run; intermediate evals under a decaying LR overstate "
            "the loss at that D, so B and β are indicative).")
      doc.table(["E", "A", "α", "B", "β", "at bound"],
                [[fmt_ci(p["E"], ci.get("E")) + (" (fixed)" if "E" in chin.fit.fixed else ""),
                  fmt_ci(p["A"], ci.get("A")), fmt_ci(p["alpha"], ci.get("alpha")), fmt_ci(p["B"], ci.get("B")),
                  fmt_ci(p["beta"], ci.get("beta")), ", ".join(chin.fit.at_bound) or "–"]])
  if toy_comps:
    doc.h(3, "Toy: simulation vs exact theory")
    doc.p("Normalised loss per (task, width) against Theorem 3's optimal encoder; learnable width = smallest "
          f"width with normalised loss ≤ {pr.LEARNED_TOL} (simulated vs the theory on the same grid); crossing: "
          "where the simulated curve reaches it, interpolated in log width; N_crit: Proposition 6's critical width "
          "of each rare task's first feature (F: in the frequent set). The fitted N* (logistic step, bootstrap CI) "
          "is a smooth-law summary of what is exactly a staircase in width: read it next to the crossing.")
    doc.table(["setting", "points", "RMSE", "max |err|", "corr", "learnable width agrees (all / rare tasks)"],
              [[", ".join(f"{k}={v:g}" for k, v in c.condition.items() if np.isfinite(v)), c.stats["n_points"],
                fmt(c.stats["rmse"]), fmt(c.stats["max_abs_err"]), fmt(c.stats["corr"]),
                f"{c.stats['learn_width_agreement']:.0%} / " + (f"{c.stats['learn_width_agreement_rare']:.0%}" if
                np.isfinite(c.stats['learn_width_agreement_rare']) else "–")]
               for c in toy_comps])
    nst = {(f.curve.task, f.curve.condition.get("beta")): f.nstar for f in fits
           if f.curve.kind == "toy" and not np.isfinite(f.curve.condition.get("inject_task", np.nan))}
    for c in toy_comps:
      if np.isfinite(c.condition.get("inject_task", np.nan)):
        continue
      doc.p(f"β = {c.condition['beta']:g}: per task")
      rows = []
      for _, r in c.tasks.iterrows():
        ns = nst.get((r["task"], c.condition["beta"]))
        rows.append([r["task"], fmt(r["pi"]), "F" if r["frequent"] else fmt(r["N_crit"]),
                     fmt(r["theory_learn_width"]), fmt(r["sim_learn_width"]), fmt(r["agree"]),
                     fmt(r["sim_crossing"]), fmt_nstar(ns)])
      doc.table(["task", "π", "N_crit", "theory learnable width", "simulated learnable width", "agree",
                 "simulated crossing", "fitted N* [CI]"], rows)
