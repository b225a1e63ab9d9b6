"""Upsample or scale? `python -m analysis.plan --sweep_dir DIR --task cmp --size 1M`.

From a sweep over size × task frequency: fits each frequency's curve of the task (least squares, profile
intervals), the frontier N*(f) across frequencies (analysis.frontier), and inverts it at the given size:
  f*        the frequency (instances per batch) at which the task becomes learnable at that size, its 95% CI,
            and the factor over the sweep's lowest frequency (the task's current rate unless --current_frequency);
  instead   the size needed at the current frequency (N* of the law there, with its band);
  repeats   how often each train instance repeats at f* over the run, the train–test accuracy gap at the sweep's
            frequencies, and a warning when f* lies beyond the repeat count at which the sweep still generalised
            (analysis.upsampling).
--emit_config PATH writes a sweep config (configs/sweeps style) that checks the prediction: the task at f*/2,
f* and 2·f* at that size, with the sweep's other settings (from its sweep_config.json when present).
Exit codes: 0 printed; 2 bad input (one `error:` line: unknown task, a size > 100× outside the fitted sizes, a sweep
with one frequency, a frontier that cannot be fitted).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import sys

import numpy as np

from analysis import cli, frontier, upsampling
from analysis import curves as curves_lib
from analysis import load as load_lib
from analysis.curves import _jsonable, fmt_n
from scaling.core import cli as core_cli
from scaling.core import rundir
from scaling.core.errors import FitError
from scaling.lm import ladder

MAX_EXTRAPOLATION = 100.0


def parse_args(argv):
  p = cli.Parser(prog="python -m analysis.plan", description=__doc__.split("\n\n")[0])
  cli.add_sweep_dirs(p)
  p.add_argument("--task", required=True, help="the task, e.g. cmp")
  p.add_argument("--size", required=True, help="model size: a ladder name (1M) or a non-embedding parameter count")
  p.add_argument("--metric", choices=("accuracy", "loss"), default="accuracy", help="the curve that defines N*")
  p.add_argument("--frac", type=float, default=0.5, help="N*'s level: this fraction of the way from chance to "
                 "perfect (default halfway)")
  p.add_argument("--current_frequency", type=float, default=None,
                 help="the task's current rate in instances per batch (default: the sweep's lowest frequency)")
  p.add_argument("--level", type=float, default=0.95, help="interval level")
  p.add_argument("--train_instances", type=int, default=None,
                 help=f"distinct train instances of the task (default: run summary, else {upsampling.TRAIN_INSTANCES})")
  p.add_argument("--gap_tol", type=float, default=upsampling.GAP_TOL,
                 help="train−test accuracy gap up to which a frequency counts as generalising")
  p.add_argument("--emit_config", metavar="PATH", help="write a sweep config that verifies the prediction")
  p.add_argument("--force", action="store_true", help="overwrite --emit_config PATH if it exists")
  p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
  p.add_argument("--jobs", type=int, default=1, help="worker processes for the fits")
  a = p.parse_args(argv)
  if not 0 < a.frac < 1 or not 0 < a.level < 1:
    p.error("--frac and --level must be in (0, 1)")
  return a


def resolve_size(label: str, runs) -> tuple[float, str]:
  """(non-embedding N, how it was read): the sweep's runs of that size label, a number, or the ladder name."""
  lm = runs[(runs["experiment"] == "lm") & runs["n_params_non_embedding"].notna()]
  same = lm[lm["size"].astype(str) == label]
  if len(same):
    return float(same["n_params_non_embedding"].median()), f"size {label} of the sweep's runs"
  try:
    n = float(label)
    if n > 0:
      return n, "non-embedding parameters as given"
  except ValueError:
    pass
  try:
    return ladder.parse_count(label), f"ladder name {label} read as its rounded non-embedding count"
  except ValueError:
    raise FitError(f"--size {label!r} is neither a size of the sweep, a number, nor a ladder name like 1M; pass "
                   "one of those") from None


@dataclasses.dataclass
class TaskFrontier:
  """A task's fitted curves across frequencies and its frontier (see fit_task)."""

  task: str
  metric: str
  fin: object
  configs: dict
  fits: list
  freqs: list[float]
  sizes: list[float]
  frontier: object  # frontier.FrequencyFit with a law

  def at(self, N: float, **kw) -> dict:
    """The planner's numbers at size N (summary(...) plus the threshold and the per-frequency N*)."""
    out = summary(self.frontier, self.fin, self.configs, N, **kw)
    ns0 = next((f.nstar for f in self.fits if f.nstar is not None), None)
    out.update(metric=self.metric, threshold=ns0.threshold if ns0 else None, threshold_rule=ns0.rule if ns0 else None,
               per_frequency=[{"frequency": f.curve.condition["frequency_per_batch"], "status": f.status,
                               "reason": f.reason, "n_star": f.nstar.to_dict() if f.nstar else None}
                              for f in self.fits])
    return out


def _task_curves(loaded, task, metric):
  fin = load_lib.final(loaded.df)
  curves, _ = curves_lib.build_curves(fin, loaded.configs, metrics=(metric,))
  tasks = sorted({c.task for c in curves if c.kind == "task"})
  if task not in tasks:
    raise FitError(f"task {task!r} is not in the sweep (LM task curves: {', '.join(tasks) or 'none'}); pass "
                   "one of those to --task")
  mine = [c for c in curves if c.kind == "task" and c.task == task and c.condition.get("schedule") in ("random", None)]
  freqs = sorted({c.condition["frequency_per_batch"] for c in mine})
  if len(freqs) < 2:
    raise FitError(f"the sweep has {len(freqs)} frequency of {task} ({', '.join(f'{f:g}' for f in freqs)}/batch); "
                   f"f*(N) needs >= 2: add values to the sweep's data.tasks.{task}.frequency axis")
  return fin, mine, freqs


def fit_task(loaded, task: str, metric: str = "accuracy", *, frac: float = 0.5, jobs: int = 1,
             size: float | None = None) -> TaskFrontier:
  """Fits the task's curve at each frequency and the frontier through their N*. size (optional) is checked
  against the fitted sizes first (no fit for a size the sweep cannot speak to)."""
  fin, mine, freqs = _task_curves(loaded, task, metric)
  sizes = sorted({float(n) for c in mine for n in np.unique(c.N)})
  if size is not None and (size > sizes[-1] * MAX_EXTRAPOLATION or size < sizes[0] / MAX_EXTRAPOLATION):
    raise FitError(f"--size N = {size:.3g} is more than {MAX_EXTRAPOLATION:g}× outside the fitted sizes "
                   f"{sizes[0]:.3g}..{sizes[-1]:.3g}; plan for a size within that range or add sizes to the sweep")
  fits = curves_lib.fit_curves(mine, holdout=False, jobs=jobs, progress=False, frac=frac)
  ff = [g for g in frontier.frequency_laws(fits) if g.kind == "task"]
  if not ff or ff[0].law is None:
    why = ff[0].reason if ff else "no frequency has a fitted N*"
    skipped = "; ".join(f"f={f.curve.condition['frequency_per_batch']:g}: {f.reason}" for f in fits if f.reason)
    raise FitError(f"cannot fit the frontier N*(f) of {task}: {why}" + (f" ({skipped})" if skipped else ""))
  return TaskFrontier(task, metric, fin, loaded.configs, fits, freqs, sizes, ff[0])


def plan(args) -> dict:
  """The planner's numbers as a dict (see the module docstring); raises FitError / LoadError on bad input."""
  if args.emit_config:
    _check_emit(args)  # before any fitting: a refused path costs nothing
  loaded = load_lib.load(args.sweep_dir)
  N, how = resolve_size(args.size, loaded.runs)
  tf = fit_task(loaded, args.task, args.metric, frac=args.frac, jobs=args.jobs, size=N)
  out = tf.at(N, level=args.level, current=args.current_frequency, n_train=args.train_instances,
              gap_tol=args.gap_tol)
  out.update(size=args.size, size_from=how)
  if args.emit_config:
    out["emitted"] = emit_config(args, loaded, out)
  return out


def summary(ff, fin, configs, N: float, *, level: float = 0.95, current: float | None = None,
            n_train: int | None = None, gap_tol: float = upsampling.GAP_TOL) -> dict:
  """The planner's numbers for one frontier group (frontier.FrequencyFit with a law) at size N."""
  law = ff.law
  freqs = sorted({p[0] for p in ff.points} | {float(e[0]) for e in law.excluded})
  f_star, f_lo, f_hi = law.f_star(N, level)
  f_cur = current or freqs[0]
  n_cur, n_lo, n_hi = (float(v) for v in law.n_star_at(f_cur, level))
  up = upsampling.measure(fin, configs, ff.task, N, n_train=n_train, gap_tol=gap_tol)
  up = upsampling.verdict(up, f_star)
  return {"task": ff.task, "metric": ff.metric, "N": N, "frequencies": freqs, "sizes": ff.sizes, "level": level, "law": law.to_dict(),
          "f_star": f_star, "f_star_ci": [f_lo, f_hi], "current_frequency": f_cur,
          "current_from": "the current frequency (--current_frequency)" if current else "the sweep's lowest frequency",
          "factor": f_star / f_cur, "factor_ci": [f_lo / f_cur, f_hi / f_cur],
          "n_star_at_current": n_cur, "n_star_at_current_ci": [n_lo, n_hi],
          "extrapolated": bool(not freqs[0] <= f_star <= freqs[-1]), "upsampling": up.to_dict(),
          "holdouts": [h.to_dict() for h in ff.holdouts]}


def lines(r: dict) -> list[str]:
  """The plan as text lines (what the CLI prints)."""
  fmt = lambda v: "∞" if v == math.inf else f"{v:.3g}"
  law = r["law"]
  g_ci = law["ci"]["gamma"] if law["ci"] else (math.nan, math.nan)
  out = [f"task {r['task']} ({r['metric']}; N* = {r['threshold_rule']}, threshold {fmt(r['threshold'])}); "
         f"frequencies {', '.join(f'{f:g}' for f in r['frequencies'])}/batch; sizes {fmt_n(r['sizes'][0])}.."
         f"{fmt_n(r['sizes'][-1])}",
         f"frontier: N* = {fmt(math.exp(law['c']))}·f^-{law['gamma']:.3g} (γ {r['level']:.0%} CI {fmt(g_ci[0])}.."
         f"{fmt(g_ci[1])}) from {law['n_points']} frequencies" + (f"; left out: {law['excluded']}" if law["excluded"]
                                                                  else ""),
         f"at N = {fmt_n(r['N'])} ({r['size_from']}):",
         f"  f* = {fmt(r['f_star'])} instances/batch [{r['level']:.0%} CI {fmt(r['f_star_ci'][0])}, "
         f"{fmt(r['f_star_ci'][1])}] = {fmt(r['factor'])}× {r['current_from']} {r['current_frequency']:g}/batch "
         f"[{fmt(r['factor_ci'][0])}×, {fmt(r['factor_ci'][1])}×]"
         + (" (extrapolated beyond the sweep's frequencies)" if r["extrapolated"] else ""),
         f"  instead, at {r['current_frequency']:g}/batch: N* = {fmt(r['n_star_at_current'])} "
         f"[{fmt(r['n_star_at_current_ci'][0])}, {fmt(r['n_star_at_current_ci'][1])}] "
         f"({fmt(r['n_star_at_current'] / r['N'])}× the planned size)"]
  up = r["upsampling"]
  if up["repeats_at_f_star"] is not None:
    gaps = ", ".join(f"{g['freq']:g}/batch: {g['repeats']:.3g}× gap {g['gap']:+.2f}" for g in up["per_frequency"]
                     if np.isfinite(g["gap"]))
    out.append(f"  repeats: at f* each of the {up['n_train']} train instances repeats {up['repeats_at_f_star']:.3g}× "
               f"over {up['total_steps']:g} steps" + (f"; sweep (train−test accuracy): {gaps}" if gaps else ""))
  if up["warning"]:
    out.append(f"warning: {up['warning']}")
  for h in r["holdouts"]:
    out.append(f"  check, leave {h['freq']:g}/batch out: predicted N* {fmt(h['n_star_predicted'])} vs fitted "
               f"{fmt(h['n_star_observed'])} ({'inside' if h['n_star_inside'] else 'OUTSIDE'} the interval); f* at "
               f"that N* {fmt(h['f_star_predicted'])} ({'inside' if h['f_inside'] else 'OUTSIDE'})")
  if r.get("emitted"):
    out.append(f"wrote {r['emitted']}: python launch/sweep.py --config={r['emitted']}")
  return out


# ---------------------------------------------------------------------------------------------------------------
# The verification sweep
# ---------------------------------------------------------------------------------------------------------------
def _sweep_config(sweep_dir: str) -> dict | None:
  path = os.path.join(sweep_dir, "sweep_config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _drop_key(d: dict, dotted: str) -> dict:
  d = json.loads(json.dumps(d))
  d.pop(dotted, None)
  parts = dotted.split(".")
  node = d
  for p in parts[:-1]:
    node = node.get(p) if isinstance(node, dict) else None
    if node is None:
      return d
  if isinstance(node, dict):
    node.pop(parts[-1], None)
  return d


def _check_emit(args):
  if os.path.exists(args.emit_config) and not args.force:
    raise FitError(f"--emit_config {args.emit_config} exists; pass --force to overwrite it or choose another path")
  if args.size not in ladder.LADDER:
    raise FitError(f"--emit_config needs --size as a ladder name (one of {', '.join(ladder.LADDER)}), got "
                   f"{args.size!r}")


def emit_config(args, loaded, r: dict) -> str:
  """Writes the verification sweep config; returns its path. Refuses to overwrite unless --force."""
  _check_emit(args)
  path = args.emit_config
  sc = _sweep_config(args.sweep_dir[0]) or {}
  key = f"data.tasks.{args.task}.frequency"
  overrides = _drop_key(sc.get("overrides") or {}, key)
  if not sc:
    summ = next((c.get("summary", {}) for c in loaded.configs.values() if c.get("experiment") == "lm"), {})
    overrides = {"train": {"steps": int(summ.get("total_steps", 0)), "batch_size": int(summ.get("batch_size", 0))},
                 "data": {"seq_len": int(summ.get("seq_len", 0))}}
  fs = [float(f"{v:.3g}") for v in (r["f_star"] / 2, r["f_star"], 2 * r["f_star"])]
  name = f"{sc.get('name', 'plan')}_verify_{args.task}_{args.size}"
  seeds = sc.get("seeds") or sorted({int(s) for s in loaded.runs["seed"].dropna()}) or [0]
  doc = (f'"""Checks analysis.plan\'s prediction for T_{args.task.upper()} at size {args.size} (written '
         f'{datetime.date.today().isoformat()} from {", ".join(args.sweep_dir)}).\n\n'
         f"  python launch/sweep.py --config={path}\n\n"
         f"Prediction: at N = {r['N']:.3g} non-embedding parameters the task becomes learnable ({r['metric']} "
         f"threshold {r['threshold']:.3g}) at f* = {r['f_star']:.3g} instances per batch, {r['level']:.0%} CI "
         f"[{r['f_star_ci'][0]:.3g}, {r['f_star_ci'][1]:.3g}].\nExpected: learned at 2·f* = {fs[2]:g}, not at "
         f"f*/2 = {fs[0]:g}; at f* = {fs[1]:g} the {r['metric']} sits near the threshold.\n"
         '"""\n\nfrom __future__ import annotations\n\nimport ml_collections\n\n\n'
         'def get_config(arg: str = "") -> ml_collections.ConfigDict:\n  del arg\n'
         "  c = ml_collections.ConfigDict()\n"
         f"  c.name = {name!r}\n  c.entrypoint = {sc.get('entrypoint', 'scaling.train')!r}\n"
         f"  c.base = {sc.get('base', 'configs/lm.py')!r}\n  c.overrides = {overrides!r}\n"
         f"  c.axes = [{{'model.size': [{args.size!r}]}}, {{{key!r}: {fs!r}}}]\n  c.seeds = {list(seeds)!r}\n"
         f"  c.backend = {sc.get('backend') or {'local': {'max_parallel': 0}}!r}\n  return c\n")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  rundir.atomic_write_text(path, doc)
  return path


def _main(argv) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  r = plan(args)
  print(json.dumps(_jsonable(r), sort_keys=True) if args.json else "\n".join(lines(r)))
  return 0


def main(argv=None) -> int:
  return core_cli.guarded(lambda: _main(argv), bad_input=(FitError, load_lib.LoadError), then="plan again")


if __name__ == "__main__":
  sys.exit(main())
