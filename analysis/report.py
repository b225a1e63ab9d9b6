"""One report for one or more sweeps: `python -m analysis.report --sweep_dir DIR [--sweep_dir DIR2 ...]`.

Writes into --out (default: the first sweep dir):
  report.md, report.html   summary and what the sweep supports, fitted laws, N* with 95% CIs, the learnability
                           frontier N*(f) and its planner line, held-out checks (largest size, each
                           frequency), predictions (Fig 1, Chinchilla, toy theory), figures, warnings/gaps
                           (the HTML is self-contained apart from figure files, referenced as figures/<name>.png;
                           no network resources)
  figures/                 every figure as PNG (+ PDF unless --no_pdf)
  runs.csv, runs_index.csv the tidy long table and one row per run (analysis/load.py); runs.parquet with pyarrow
  fits.json                every fitted parameter with its CI, N*, predictions, the gaps (for machines)
Exit codes: 0 report written (gaps are listed inside); 2 nothing to analyse or bad flags (one `error:` line).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import time

from analysis import cli, parallel
from analysis import curves as curves_lib
from analysis import frontier as frontier_lib
from analysis import load as load_lib
from analysis import plan as plan_lib
from analysis import plateau as plateau_lib
from analysis import predictions as pr
from analysis import report_sections as sec
from analysis.curves import _jsonable, fmt_n
from analysis.report_doc import Doc
from analysis.report_predictions import predictions_section
from scaling.core import cli as core_cli


def parse_args(argv):
  p = cli.Parser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0])
  cli.add_sweep_dirs(p)
  p.add_argument("--out", default=None, help="output folder (default: the first --sweep_dir)")
  p.add_argument("--ci", choices=curves_lib.CI_METHODS, default=None,
                 help="per-curve intervals: profile likelihood (calibrated; the default) or bootstrap percentiles "
                      "(the default when --bootstrap R is given)")
  p.add_argument("--frac", type=float, default=0.5,
                 help="N* level: this fraction of the way from chance to the perfect level (default halfway)")
  p.add_argument("--bootstrap", type=int, default=None,
                 help="bootstrap resamples per fit with --ci bootstrap, and for the Fig 1 fits (default 1000; 0: none)")
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
  if a.ci is None:
    a.ci = "bootstrap" if a.bootstrap is not None else "profile"
  a.bootstrap = DEFAULT_BOOTSTRAP if a.bootstrap is None else a.bootstrap
  if a.bootstrap < 0 or a.toy_bootstrap < 0:
    p.error("--bootstrap and --toy_bootstrap must be >= 0")
  if a.jobs is not None and a.jobs < 1:
    p.error("--jobs must be >= 1")
  if a.out is not None and os.path.exists(a.out) and not os.path.isdir(a.out):
    p.error(f"--out {a.out} exists and is not a directory — pass a folder for the report")
  if not 0 < a.frac < 1:
    p.error("--frac must be in (0, 1)")
  return a


# ---------------------------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------------------------
DEFAULT_BOOTSTRAP = 1000
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
    "scaling_curves": "Scaling curve: final metric vs size with the fit, its 95% band and N* (dotted, CI shaded).",
    "nstar_vs_frequency": "N* vs frequency with the fitted law N* ∝ f^-γ and its 95% prediction band.",
    "frontier": "Learnability frontier: runs learned (filled) or not (open) over size × frequency, N* per frequency "
                "with its 95% CI, the fitted frontier N*(f) with its 95% band, the planner's f* at the largest size; "
                "toy: Proposition 6's N_crit(π) dashed.",
}


def _caption(name: str) -> str:
  return CAPTIONS.get(name) or (CAPTIONS["scaling_curves"] + f" ({name[len('scaling_curves_'):]})"
                                if name.startswith("scaling_curves") else name)


def _order(name: str) -> tuple:
  return (0 if name.startswith("fig") else 1 if name.startswith("scaling") else 2, name)


def _toy_specs(toy_comps) -> dict:
  """β -> ToySpec of the toy settings (for Proposition 6's frontier)."""
  return {c.condition["beta"]: c.spec for c in toy_comps if c.spec is not None}


def _planner(freq_fits, fin, configs) -> dict:
  """Planner numbers at the largest trained size, per LM frontier with a law."""
  out = {}
  for ff in freq_fits:
    if ff.kind == "task" and ff.law is not None:
      out[ff.id] = plan_lib.summary(ff, fin, configs, max(ff.sizes))
  return out


def _fit_phase(args, loaded, df, fin, fig_dir, formats, progress, figs):
  """Every fit, the predictions' fits and the figures that need no fit, in parallel worker processes."""
  curves, notes = curves_lib.build_curves(fin, loaded.configs)
  bg = next((c for c in curves if c.kind == "background"), None)
  fix_E = bg.fix_E if bg is not None else None
  has_lm = bool((df["experiment"] == "lm").any())
  toy_comps, toy_notes = pr.toy_comparisons(fin, loaded.configs, paths=loaded.paths)
  notes += toy_notes
  retention = pr.toy_retention(loaded)
  D, FIN = parallel.Ref("df"), parallel.Ref("fin")
  jobs = curves_lib.fit_jobs(curves, bootstrap=args.bootstrap, toy_bootstrap=args.toy_bootstrap, model=args.model,
                             seed=args.seed, ci=args.ci, frac=args.frac)
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
  res = parallel.run(jobs, workers=args.jobs, shared={"df": df, "fin": fin}, progress=progress,
                     desc="fits and figures")
  fits = res[:n_fit]
  f1, chin = (res[n_fit], res[n_fit + 1]) if has_lm else (None, None)
  figures = {name: r for (name, _, _), r in zip(static, res[len(res) - len(static):])}
  return curves, notes, fits, f1, chin, toy_comps, figures


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
  t = time.perf_counter()
  curves, notes, fits, f1, chin, toy_comps, figures = _fit_phase(args, loaded, df, fin, fig_dir, formats, progress,
                                                                    figs)
  toy_specs = _toy_specs(toy_comps)
  freq_fits = frontier_lib.frequency_laws(fits, toy_specs)
  planner = _planner(freq_fits, fin, loaded.configs)
  timings["fits_and_figures"] = time.perf_counter() - t

  # ---- figures drawn from the fits (parallel)
  t = time.perf_counter()
  groups = figs.scaling_curve_groups(fits)
  late = [("fig1_compute_vs_infinite", figs.fig1_compute_vs_infinite, (f1,), {})]
  late += [(name, figs.scaling_curve, (name, members), {}) for name, members in groups.items()]
  late += [("nstar_vs_frequency", figs.nstar_vs_frequency, (freq_fits,), {}),
           ("frontier", figs.frontier, (freq_fits, fits), {"toy_specs": toy_specs})]
  res = parallel.run([(figs.make, (name, fn, *fargs, fig_dir, formats), kw) for name, fn, fargs, kw in late],
                     workers=args.jobs, progress=progress, desc="figures")
  figures.update({name: r for (name, *_), r in zip(late, res)})
  if not groups:
    figures["scaling_curves"] = ([], "no curves")
  figures = {name: {"paths": r[0], "skipped": r[1], "caption": _caption(name)}
             for name, r in sorted(figures.items(), key=lambda kv: _order(kv[0]))}
  timings["figures_from_fits"] = time.perf_counter() - t

  # ---- documents
  checks = plateau_lib.check(df)
  notes += [f"not plateaued ({c.status}): {c.run} (test accuracy {c.acc_from:.3g} → {c.acc_to:.3g} over steps "
            f"{c.step_from} → {c.step_to})" for c in checks if c.status != "plateaued"]
  doc = _document(args, loaded, fin, curves, fits, freq_fits, planner, f1, chin, toy_comps, figures, notes, out,
                  checks)
  title = "Scaling report: " + ", ".join(os.path.basename(os.path.normpath(d)) for d in args.sweep_dir)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(doc.markdown())
  with open(os.path.join(out, "report.html"), "w") as f:
    f.write(doc.html(title))
  timings["total"] = time.perf_counter() - t0
  machine = {
      "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
      "sweeps": [os.path.abspath(d) for d in args.sweep_dir], "ci": args.ci, "bootstrap": args.bootstrap,
      "frac": args.frac, "seed": args.seed, "load_report": rep.to_dict(), "notes": notes,
      "supports": sec.capabilities(curves, fits, freq_fits), "curves": [f.to_dict() for f in fits],
      "frequency_laws": [f.to_dict() for f in freq_fits], "planner": planner,
      "plateau": [c.to_dict() for c in checks],
      "fig1": f1.to_dict() if f1 else None, "chinchilla": chin.to_dict() if chin else None,
      "toy_theory": [c.to_dict() for c in toy_comps],
      "figures": {k: {"paths": [os.path.relpath(p, out) for p in v["paths"]], "skipped": v["skipped"]}
                  for k, v in figures.items()},
      "files": [os.path.relpath(p, out) for p in data_paths], "timings_s": timings}
  with open(os.path.join(out, "fits.json"), "w") as f:
    json.dump(_jsonable(machine), f, indent=1, allow_nan=False)
  return {"out": out, "figures": figures, "fits": fits, "timings": timings, "report": rep, "n_gaps": doc.n_gaps}


def _summary(doc, args, loaded, fin, curves, fits, freq_fits) -> None:
  rep, runs = loaded.report, loaded.runs
  doc.h(2, "Summary")
  done = int(runs["usable"].sum())
  items = [f"{len(runs)} run dirs found, {done} finished and usable; {len(rep.failed)} failed, "
           f"{len(rep.unfinished)} unfinished, {len(rep.missing)} missing (in the manifest, no run dir), "
           f"{len(rep.malformed)} malformed, {len(rep.excluded)} excluded (see Warnings and gaps)."]
  for exp, g in runs[runs["usable"]].groupby("experiment"):
    if exp == "lm":
      sizes = sorted(g["n_params_non_embedding"].dropna().unique())
      items.append(f"LM: {len(g)} runs, {len(sizes)} sizes ({', '.join(fmt_n(s) for s in sizes)} "
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
                   + (f", withhold gaps {sorted(float(p) for p in g['inject_period'].dropna().unique() if p > 1)}"
                      if (g['inject_period'] > 1).any() else "") + ".")
    elif exp == "finetune":
      items.append(f"fine-tuning: {len(g)} runs (section Fine-tuning).")
    else:
      items.append(f"{exp}: {len(g)} runs (no analysis defined for this experiment beyond the table).")
  bg = next((c for c in curves if c.kind == "background"), None)
  if bg is not None:
    items.append(f"background floor: {bg.fix_E_source}")
  doc.ul(items)
  can = sec.capabilities(curves, fits, freq_fits)
  if can:
    doc.h(3, "What this sweep supports")
    doc.ul(can)


def _figures_and_gaps(doc, rep, fits, f1, figures, notes, out) -> None:
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
  gaps += [f"N* extrapolated beyond the trained sizes: {f.curve.label()} (N* = {f.nstar.n_star:.3g})"
           for f in fits if f.nstar is not None and f.nstar.extrapolated]
  gaps += [f"floor E not identified (its interval spans every allowed value): {f.curve.label()}"
           for f in fits if f.fit is not None and f.fit.identified.get("E") is False]
  if f1 is not None and f1.key_C != f1.key:
    gaps.append(f"Fig 1: evals too sparse to match compute across sizes; L_C uses {f1.key_C}")
  doc.ul(gaps or ["none"])
  doc.n_gaps = len(gaps)
  doc.p("Files: runs.csv (tidy table: one row per run × step × metric), runs_index.csv (one row per run), "
        "fits.json (every number above, for machines), figures/.")


def _document(args, loaded, fin, curves, fits, freq_fits, planner, f1, chin, toy_comps, figures, notes, out,
              checks=()) -> Doc:
  doc = Doc()
  doc.h(1, "Scaling report: " + ", ".join(os.path.basename(os.path.normpath(d)) for d in args.sweep_dir))
  doc.p(f"Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by `python -m analysis.report "
        + " ".join(f"--sweep_dir {d}" for d in args.sweep_dir) + f"` (intervals: {args.ci}"
        + (f", {args.bootstrap} resamples" if args.ci == "bootstrap" else "") + ").")
  _summary(doc, args, loaded, fin, curves, fits, freq_fits)
  plateau_lib.section(doc, list(checks))
  sec.fits_section(doc, args, fits)
  sec.nstar_section(doc, fits)
  sec.frontier_section(doc, freq_fits, planner)
  sec.holdout_section(doc, fits, freq_fits)
  predictions_section(doc, fits, f1, chin, toy_comps)
  if (loaded.runs["experiment"] == "finetune").any():
    from analysis import finetune as ft_lib  # noqa: PLC0415 - matplotlib: not needed to reject bad flags
    paths = ft_lib.section(doc, args.sweep_dir, os.path.join(out, "figures"), ("png",) if args.no_pdf else
                           ("png", "pdf"))
    for name, _, xlabel, _ in ft_lib.FIGURES:
      stem = ft_lib.figure_stem(name)
      figures[stem] = {"paths": [p for p in paths if os.path.basename(p).startswith(stem + ".")], "skipped": None,
                       "caption": f"Fine-tuning: target accuracy gain vs {xlabel}; size as colour, method as marker."}
  _figures_and_gaps(doc, loaded.report, fits, f1, figures, notes, out)
  return doc


def main(argv=None) -> int:
  return core_cli.guarded(lambda: _main(argv), bad_input=(load_lib.LoadError,), then="build the report")


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
