"""One report for one or more sweeps: `python -m analysis.report --sweep_dir DIR [--sweep_dir DIR2 ...]`.

Writes into --out (default: the first sweep dir):
  report.md, report.html   summary, fitted-parameter tables, N* with CIs, predictions, figures, warnings/gaps
                           (the HTML is self-contained apart from figure files, referenced as figures/<name>.png;
                           no network resources)
  figures/                 every figure as PNG (+ PDF unless --no_pdf)
  runs.csv, runs_index.csv the tidy long table and one row per run (analysis/load.py); runs.parquet with pyarrow
  fits.json                every fitted parameter with its CI, N*, predictions, the gaps (for machines)
Exit codes: 0 report written (gaps are listed inside); 2 nothing to analyse or bad flags (one `error:` line).
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import logging
import math
import os
import sys
import time

import numpy as np

from analysis import curves as curves_lib
from analysis import load as load_lib
from analysis import parallel
from analysis import predictions as pr
from analysis.curves import _jsonable
from scaling.core import cli


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, no usage dump
    self.exit(2, f"error: {message} (see --help)\n")


def parse_args(argv):
  p = _Parser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0])
  p.add_argument("--sweep_dir", action="append", required=True, help="a sweep dir (repeat for several)")
  p.add_argument("--out", default=None, help="output folder (default: the first --sweep_dir)")
  p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per fit (0: no CIs)")
  p.add_argument("--toy_bootstrap", type=int, default=curves_lib.TOY_BOOTSTRAP,
                 help="at most this many resamples per toy curve (many curves, exact theory to compare with)")
  p.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
  p.add_argument("--model", choices=("auto", "powerlaw", "logistic"), default="auto",
                 help="LM task-curve model (auto: leave-one-size-out choice when >= 6 sizes)")
  p.add_argument("--budget", type=float, default=None, help="Fig 1 compute budget C in FLOPs (default: auto)")
  p.add_argument("--seed", type=int, default=0, help="bootstrap RNG seed")
  p.add_argument("--no_pdf", action="store_true", help="PNG figures only")
  p.add_argument("--no_progress", action="store_true")
  a = p.parse_args(argv)
  if a.bootstrap < 0 or a.toy_bootstrap < 0:
    p.error("--bootstrap and --toy_bootstrap must be >= 0")
  if a.jobs is not None and a.jobs < 1:
    p.error("--jobs must be >= 1")
  if a.out is not None and os.path.exists(a.out) and not os.path.isdir(a.out):
    p.error(f"--out {a.out} exists and is not a directory — pass a folder for the report")
  return a


# ---------------------------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------------------------
def fmt(v, digits=4) -> str:
  if v is None:
    return "–"
  if isinstance(v, (bool, np.bool_)):
    return "yes" if v else "no"
  if isinstance(v, str):
    return v
  try:
    v = float(v)
  except (TypeError, ValueError):
    return str(v)
  if math.isnan(v):
    return "nan"
  if math.isinf(v):
    return "∞" if v > 0 else "-∞"
  if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
    return f"{v:.{digits - 1}e}"
  return f"{v:.{digits}g}"


def fmt_nstar(ns) -> str:
  """N* with its CI; nan (the curve is below the threshold at every size) reads as what it means."""
  if ns is None:
    return "–"
  if math.isnan(ns.n_star):
    return "learned at every size"
  return fmt_ci(ns.n_star, ns.ci)


def fmt_ci(v, ci=None) -> str:
  s = fmt(v)
  if ci is not None and len(ci) == 2:
    s += f" [{fmt(ci[0], 3)}, {fmt(ci[1], 3)}]"
  return s


class Doc:
  """Blocks rendered to both Markdown and HTML."""

  def __init__(self):
    self.blocks = []
    self.n_gaps = 0

  def h(self, level, text):
    self.blocks.append(("h", level, text))

  def p(self, text):
    self.blocks.append(("p", text))

  def ul(self, items):
    if items:
      self.blocks.append(("ul", list(items)))

  def table(self, headers, rows):
    if rows:
      self.blocks.append(("table", headers, rows))

  def img(self, rel_png, caption, rel_pdf=None):
    self.blocks.append(("img", rel_png, caption, rel_pdf))

  def markdown(self) -> str:
    out = []
    for b in self.blocks:
      if b[0] == "h":
        out.append("#" * b[1] + " " + b[2])
      elif b[0] == "p":
        out.append(b[1])
      elif b[0] == "ul":
        out.append("\n".join(f"- {x}" for x in b[1]))
      elif b[0] == "table":
        cell = lambda x: str(x).replace("|", "\\|").replace("\n", " ")
        lines = ["| " + " | ".join(cell(h) for h in b[1]) + " |", "|" + "---|" * len(b[1])]
        lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in b[2]]
        out.append("\n".join(lines))
      elif b[0] == "img":
        out.append(f"![{b[2]}]({b[1]})" + (f"  \n*{b[2]}* ([PDF]({b[3]}))" if b[3] else f"  \n*{b[2]}*"))
    return "\n\n".join(out) + "\n"

  def html(self, title) -> str:
    e = html.escape
    body = []
    for b in self.blocks:
      if b[0] == "h":
        body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
      elif b[0] == "p":
        body.append(f"<p>{e(b[1])}</p>")
      elif b[0] == "ul":
        body.append("<ul>" + "".join(f"<li>{e(str(x))}</li>" for x in b[1]) + "</ul>")
      elif b[0] == "table":
        head = "".join(f"<th>{e(str(h))}</th>" for h in b[1])
        rows = "".join("<tr>" + "".join(f"<td>{e(str(x))}</td>" for x in r) + "</tr>" for r in b[2])
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
      elif b[0] == "img":
        pdf = f' (<a href="{e(b[3])}">PDF</a>)' if b[3] else ""
        body.append(f'<figure><img src="{e(b[1])}" alt="{e(b[2])}"><figcaption>{e(b[2])}{pdf}</figcaption>'
                    "</figure>")
    css = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;"
           "padding:2px 6px;text-align:left}th{background:#f3f3f3}img{max-width:100%}"
           "figure{margin:1em 0}figcaption{font-size:12px;color:#555}h1,h2,h3{color:#234}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title><style>{css}</style>"
            f"</head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ---------------------------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------------------------
CHINCHILLA_BOOTSTRAP = 100  # each refit has every eval point of the sweep: 10x a per-curve refit
CAPTIONS = {
    "fig1_compute_vs_infinite": "Fig 1: loss at matched compute L_C(N) and final loss L_∞(N) with power-law fits; "
                                "green: learnable via data scaling, purple: learned via model scaling.",
    "fig2a_toy_phase": "Fig 2a: feature retained vs width × task (toy), with Theorem 3's boundary.",
    "fig2b_toy_loss_vs_width": "Fig 2b: per-task normalised loss vs width; dashed: Theorem 3's optimum.",
    "fig3_signal": "Fig 3: rare and frequent signal vs width, and a rare task's signal vs δ_F with δ_F*(N_crit).",
    "fig4_withhold": "Fig 4: matched-frequency (withhold) injections in the toy.",
    "fig5_heatmaps": "Fig 5: size × frequency heat maps of task train loss and test accuracy.",
    "fig6_task_loss_over_steps": "Fig 6: task loss over training per frequency (and per burst period).",
    "fig7_probes": "Fig 7: probe scores vs test accuracy.",
    "fig8_injections": "Fig 8: task eval loss around injections (burst schedule).",
    "fig9_interference": "Fig 9: gradient-interference cosines over training per size.",
    "scaling_curves": "Scaling curve: final metric vs size with the fit, its 95% bootstrap band and N* (dotted, "
                      "CI shaded).",
    "nstar_vs_frequency": "N* vs frequency with the fitted law N* ∝ f^-γ and its 95% prediction band.",
}


def _caption(name: str) -> str:
  return CAPTIONS.get(name) or (CAPTIONS["scaling_curves"] + f" ({name[len('scaling_curves_'):]})"
                                if name.startswith("scaling_curves") else name)


def _order(name: str) -> tuple:
  return (0 if name.startswith("fig") else 1 if name.startswith("scaling") else 2, name)


PARAMS = {"powerlaw": ("E", "A", "alpha"), "logistic": ("L_lo", "L_hi", "k", "N0")}


def _param_cells(fit):
  if fit is None:
    return ["–"] * 4
  names = PARAMS.get(fit.method, tuple(fit.params))
  cells = []
  for n in names:
    v = fit.params[n]
    ci = fit.ci.get(n) if fit.ci else None
    fixed = " (fixed)" if n in fit.fixed else ""
    cells.append(f"{n}={fmt_ci(v, ci)}{fixed}")
  return cells + [""] * (4 - len(cells))


def build(args) -> dict:
  from analysis import figures as figs  # noqa: PLC0415 - matplotlib/seaborn: not needed to reject bad flags
  t0 = time.perf_counter()
  out = os.path.abspath(args.out or args.sweep_dir[0])
  fig_dir = os.path.join(out, "figures")
  formats = ("png",) if args.no_pdf else ("png", "pdf")
  progress = not args.no_progress
  loaded = load_lib.load(args.sweep_dir, progress=progress)
  data_paths = loaded.write(out)
  df, rep = loaded.df, loaded.report
  fin = load_lib.final(df)
  timings = {"load": time.perf_counter() - t0}

  # ---- phase 1 (parallel): every fit, the predictions' fits, and the figures that need no fit
  t = time.perf_counter()
  curves, notes = curves_lib.build_curves(fin, loaded.configs)
  bg = next((c for c in curves if c.kind == "background"), None)
  fix_E = bg.fix_E if bg is not None else None
  has_lm = bool((df["experiment"] == "lm").any())
  toy_comps, toy_notes = pr.toy_comparisons(fin, loaded.configs, paths=loaded.paths)
  notes += toy_notes
  retention = pr.toy_retention(loaded)
  D, FIN = parallel.Ref("df"), parallel.Ref("fin")
  jobs = curves_lib.fit_jobs(curves, bootstrap=args.bootstrap, toy_bootstrap=args.toy_bootstrap, model=args.model,
                             seed=args.seed)
  n_fit = len(jobs)
  if has_lm:
    jobs.append((pr.fig1, (D,), dict(fix_E=fix_E, budget=args.budget, bootstrap=args.bootstrap, seed=args.seed)))
    jobs.append((pr.chinchilla, (D,), dict(fix_E=fix_E, bootstrap=min(args.bootstrap, CHINCHILLA_BOOTSTRAP),
                                           seed=args.seed)))
  static = [
      ("fig2a_toy_phase", figs.fig2a_toy_phase, (toy_comps, retention)),
      ("fig2b_toy_loss_vs_width", figs.fig2b_toy_loss_vs_width, (toy_comps,)),
      ("fig3_signal", figs.fig3_signal, (D, toy_comps)),
      ("fig4_withhold", figs.fig4_withhold, (D,)),
      ("fig5_heatmaps", figs.fig5_heatmaps, (FIN,)),
      ("fig6_task_loss_over_steps", figs.fig6_task_loss_over_steps, (D,)),
      ("fig7_probes", figs.fig7_probes, (D,)),
      ("fig8_injections", figs.fig8_injections, (D,)),
      ("fig9_interference", figs.fig9_interference, (D,)),
  ]
  jobs += [(figs.make, (name, fn, *fargs, fig_dir, formats), {}) for name, fn, fargs in static]
  shared = {"df": df, "fin": fin}
  res = parallel.run(jobs, workers=args.jobs, shared=shared, progress=progress,
                     desc=f"fits and figures (bootstrap {args.bootstrap})")
  fits = res[:n_fit]
  f1, chin = (res[n_fit], res[n_fit + 1]) if has_lm else (None, None)
  figures = {name: r for (name, _, _), r in zip(static, res[len(res) - len(static):])}
  freq_fits = curves_lib.frequency_laws(fits)
  timings["fits_and_figures"] = time.perf_counter() - t

  # ---- phase 2 (parallel): figures drawn from the fits
  t = time.perf_counter()
  groups = figs.scaling_curve_groups(fits)
  late = [("fig1_compute_vs_infinite", figs.fig1_compute_vs_infinite, (f1,))]
  late += [(name, figs.scaling_curve, (name, members)) for name, members in groups.items()]
  late += [("nstar_vs_frequency", figs.nstar_vs_frequency, (freq_fits,))]
  res = parallel.run([(figs.make, (name, fn, *fargs, fig_dir, formats), {}) for name, fn, fargs in late],
                     workers=args.jobs, progress=progress, desc="figures")
  figures.update({name: r for (name, _, _), r in zip(late, res)})
  if not groups:
    figures["scaling_curves"] = ([], "no curves")
  figures = {name: {"paths": r[0], "skipped": r[1], "caption": _caption(name)}
             for name, r in sorted(figures.items(), key=lambda kv: _order(kv[0]))}
  timings["figures_from_fits"] = time.perf_counter() - t

  # ---- documents
  doc = _document(args, loaded, fin, curves, fits, freq_fits, f1, chin, toy_comps, figures, notes, out)
  title = "Scaling report: " + ", ".join(os.path.basename(os.path.normpath(d)) for d in args.sweep_dir)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(doc.markdown())
  with open(os.path.join(out, "report.html"), "w") as f:
    f.write(doc.html(title))
  timings["total"] = time.perf_counter() - t0
  machine = {
      "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
      "sweeps": [os.path.abspath(d) for d in args.sweep_dir], "bootstrap": args.bootstrap, "seed": args.seed,
      "load_report": rep.to_dict(), "notes": notes, "curves": [f.to_dict() for f in fits],
      "frequency_laws": [f.to_dict() for f in freq_fits], "fig1": f1.to_dict() if f1 else None,
      "chinchilla": chin.to_dict() if chin else None, "toy_theory": [c.to_dict() for c in toy_comps],
      "figures": {k: {"paths": [os.path.relpath(p, out) for p in v["paths"]], "skipped": v["skipped"]}
                  for k, v in figures.items()},
      "files": [os.path.relpath(p, out) for p in data_paths], "timings_s": timings}
  with open(os.path.join(out, "fits.json"), "w") as f:
    json.dump(_jsonable(machine), f, indent=1, allow_nan=False)
  return {"out": out, "figures": figures, "fits": fits, "timings": timings, "report": rep, "n_gaps": doc.n_gaps}


def _document(args, loaded, fin, curves, fits, freq_fits, f1, chin, toy_comps, figures, notes, out) -> Doc:
  from analysis.figures import _fmt_n  # noqa: PLC0415
  rep, runs = loaded.report, loaded.runs
  doc = Doc()
  doc.h(1, "Scaling report: " + ", ".join(os.path.basename(os.path.normpath(d)) for d in args.sweep_dir))
  doc.p(f"Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by `python -m analysis.report "
        + " ".join(f"--sweep_dir {d}" for d in args.sweep_dir) + f"` (bootstrap {args.bootstrap}).")

  # ---- summary
  doc.h(2, "Summary")
  done = int(runs["usable"].sum())
  items = [f"{len(runs)} run dirs found, {done} finished and usable; {len(rep.failed)} failed, "
           f"{len(rep.unfinished)} unfinished, {len(rep.missing)} missing (in the manifest, no run dir), "
           f"{len(rep.malformed)} malformed, {len(rep.excluded)} excluded (see Warnings and gaps)."]
  for exp, g in runs[runs["usable"]].groupby("experiment"):
    if exp == "lm":
      sizes = sorted(g["n_params_non_embedding"].dropna().unique())
      items.append(f"LM: {len(g)} runs, {len(sizes)} sizes ({', '.join(_fmt_n(s) for s in sizes)} "
                   f"non-embedding params), seeds {sorted(int(s) for s in g['seed'].dropna().unique())}.")
      tasks = fin[(fin["experiment"] == "lm") & (fin["group"] == "eval") & fin["task"].notna()
                  & (fin["task"] != "background")]
      for task, h in tasks.groupby("task", observed=True):
        fr = sorted(h["frequency_per_batch"].dropna().unique())
        items.append(f"task {task}: frequencies {', '.join(f'{v:g}' for v in fr)} instances/batch; schedules "
                     f"{', '.join(sorted(h['schedule'].dropna().astype(str).unique()))}.")
    elif exp == "toy":
      items.append(f"toy: {len(g)} member runs, widths {sorted(int(w) for w in g['width'].dropna().unique())}, "
                   f"β {sorted(float(b) for b in g['beta'].dropna().unique())}"
                   + (f", withhold gaps {sorted(float(p) for p in g['inject_period'].dropna().unique())}"
                      if g['inject_period'].notna().any() else "") + ".")
    else:
      items.append(f"{exp}: {len(g)} runs (no analysis defined for this experiment beyond the table).")
  bg = next((c for c in curves if c.kind == "background"), None)
  if bg is not None:
    items.append(f"background floor: {bg.fix_E_source}")
  doc.ul(items)

  # ---- fits
  doc.h(2, "Fitted scaling laws")
  doc.p("Each curve: final value per run vs size (non-embedding parameters; toy: width), one point per seed. "
        "Power law L = E + A·N^-α, or logistic step L_lo + (L_hi − L_lo)·σ(−k·log(N/N0)) when the "
        "leave-one-size-out error (LOSO) prefers it. Accuracy is fitted as error = 1 − accuracy. "
        f"Brackets: 95% bootstrap percentile intervals ({args.bootstrap} resamples of seeds within sizes; toy "
        f"curves {min(args.bootstrap, args.toy_bootstrap)}). at bound: parameters that ended on a fit bound. holdout: the fit without the largest size, "
        "predicting it (relative error).")
  rows = []
  for f in fits:
    c = f.curve
    if c.kind == "toy" and len(fits) > 40 and f.status == "ok":
      continue  # toy curves are summarised in their own table below
    ho = f"{f.holdout.rel_error:+.1%}" if f.holdout is not None else "–"
    loso = ", ".join(f"{k}={v:.3g}" for k, v in (f.choice_errors or {}).items()) or "–"
    rows.append([c.label(), f.model or "–", c.n_sizes, len(c.y), *_param_cells(f.fit),
                 ", ".join(f.fit.at_bound) if f.fit is not None and f.fit.at_bound else "–", loso, ho,
                 f.reason or ""])
  doc.table(["curve", "model", "sizes", "points", "fitted parameters [95% CI]", "", "", "", "at bound",
             "LOSO RMS log err", "holdout", "note"], rows)
  if not rows:
    doc.p("No curves to fit.")

  # ---- N*
  doc.h(2, "Learnable size N*")
  doc.p("N*: the size where the fitted curve crosses halfway between the task's chance level and its fitted "
        "floor. CI: bootstrap percentile interval (∞ at the top when some resamples never cross); P(cross): share "
        "of resamples that cross at a finite size. extrapolated: N* outside the trained sizes.")
  rows = []
  for f in fits:
    ns = f.nstar
    if ns is None:
      continue
    c = f.curve
    rows.append([c.label(), f"{fmt(c.chance)} ({c.chance_source})" if c.chance is not None else
                 "smallest model's mean", fmt(ns.threshold), fmt_nstar(ns), fmt(ns.p_cross),
                 fmt(ns.extrapolated), ns.reason or ""])
  doc.table(["curve", "chance", "threshold", "N* [CI]", "P(cross)", "extrapolated", "reason"], rows)
  if not rows:
    has_tasks = any(f.curve.kind in ("task", "toy") for f in fits)
    doc.p("No N*: no task curve could be fitted (see the fits table and the gaps)." if has_tasks else
          "No task curves in this sweep: N* applies to injected tasks (data.tasks.<t>.frequency > 0) and toy tasks.")
  interp = [f for f in fits if f.interpolated is not None]
  if interp:
    doc.h(3, "Interpolated crossings (too few sizes for a fit)")
    doc.p("Model-free: where the per-size mean crosses halfway between chance and the best size's mean, "
          "interpolated in log N between the two bracketing sizes. No confidence interval; add sizes (≥ 5) for a "
          "fitted N* with one.")
    doc.table(["curve", "chance", "threshold", "N* (interpolated)", "note"],
              [[f.curve.label(), f"{fmt(f.curve.chance)} ({f.curve.chance_source})" if f.curve.chance is not None
                else "smallest model's mean", fmt(f.interpolated.threshold), fmt(f.interpolated.n_star),
                f.interpolated.note] for f in interp])
  if freq_fits:
    doc.h(3, "N* vs frequency")
    rows = []
    for ff in freq_fits:
      law = ff.law
      rows.append([ff.id, len(ff.points), fmt_ci(law.gamma, law.ci["gamma"] if law and law.ci else None)
                   if law else "–", fmt(math.exp(law.c)) if law else "–",
                   "; ".join(f"{f:g}: {why}" for f, why in law.excluded) if law else (ff.reason or "")])
    doc.table(["group", "frequencies", "γ [CI]", "e^c (N* at f=1)", "left out / reason"], rows)

  # ---- predictions
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

  # ---- figures
  doc.h(2, "Figures")
  for v in figures.values():
    pngs = [p for p in v["paths"] if p.endswith(".png")]
    for png in pngs:
      pdf = png[:-4] + ".pdf"
      stem = os.path.basename(png)[:-4]
      doc.img(os.path.relpath(png, out), f"{v['caption']}" + (f" [{stem}]" if len(pngs) > 1 else ""),
              os.path.relpath(pdf, out) if os.path.exists(pdf) else None)
  skipped = [f"{k}: {v['skipped']}" for k, v in figures.items() if v["skipped"]]
  if skipped:
    doc.h(3, "Figures not drawn")
    doc.ul(skipped)

  # ---- gaps
  doc.h(2, "Warnings and gaps")
  gaps = rep.problems() + [f"note: {n}" for n in notes]
  gaps += [f"figure failed: {k}: {v['skipped']}" for k, v in figures.items()
           if (v["skipped"] or "").startswith("error")]
  by_reason: dict[str, list[str]] = {}
  for f in fits:
    if f.status != "ok":
      by_reason.setdefault(f.reason, []).append(f.curve.label())
  for why, labels in by_reason.items():
    more = f" … ({len(labels)} curves)" if len(labels) > 6 else ""
    gaps.append(f"curve not fitted ({why}): {', '.join(labels[:6])}{more}")
  gaps += [f"chance level unknown for {f.curve.label()}: the smallest model's mean loss is used"
           for f in fits if f.curve.kind == "task" and f.curve.chance is None]
  gaps += [f"N* extrapolated beyond the trained sizes: {f.curve.label()} (N* = {fmt(f.nstar.n_star)})"
           for f in fits if f.nstar is not None and f.nstar.extrapolated]
  if f1 is not None and f1.key_C != f1.key:
    gaps.append(f"Fig 1: evals too sparse to match compute across sizes; L_C uses {f1.key_C}")
  doc.ul(gaps or ["none"])
  doc.n_gaps = len(gaps)
  doc.p("Files: runs.csv (tidy table: one row per run × step × metric), runs_index.csv (one row per run), "
        "fits.json (every number above, for machines), figures/.")
  return doc


def main(argv=None) -> int:
  return cli.guarded(lambda: _main(argv), bad_input=(load_lib.LoadError,), then="build the report")


def _main(argv) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
  res = build(args)
  n_fig = sum(1 for v in res["figures"].values() if v["paths"])
  n_ok = sum(1 for f in res["fits"] if f.status == "ok")
  print(f"{n_ok}/{len(res['fits'])} curves fitted, {n_fig} figures, {res['n_gaps']} warnings/gaps listed "
        f"({res['timings']['total']:.1f} s)")
  print(f"report: {os.path.join(res['out'], 'report.html')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
