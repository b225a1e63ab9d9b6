"""Scaling curves of a sweep, their fits, and N* (learnable size) per curve.

What is a curve (one fit each):
  task        LM: final eval/<task>/{loss,accuracy} (test split; LABEL-token loss in nats) vs non-embedding N,
              one curve per (task, frequency_per_batch, schedule, period); seeds are repeated rows.
  background  LM: final eval/background/loss vs non-embedding N (E fixed to the synthetic language's
              entropy rate when it is known, see `background_floor`). No N* (not a task).
  toy         toy: final toy/<task>/loss_norm vs width, one curve per (task, β); and for runs whose injected task
              arrives evenly (inject schedule interleave, or withhold with period 1) the injected task's curve per
              injected frequency (a sweep over π_r). Withhold runs with gaps are Fig 4's, not fitted.
Models: LM curves use the leave-one-size-out choice between power law and logistic step when there are >= 6
sizes ('auto'), the power law otherwise; toy curves use the logistic step (TOY_MODEL; the exact theory is their
reference, analysis.predictions). Fits are least squares on log values with profile-likelihood intervals
(ci='profile', the default) or bootstrap percentile intervals (ci='bootstrap').

N*: learnability.n_star's crossing of the halfway level between chance and the task's perfect level (PERFECT;
unknown tasks: the fitted floor). Chance (the "not learned" level) per task: summary["tasks"][t]["chance_loss" |
"n_classes"] when a run records it, else CHANCE below, else the mean loss of the smallest model (flagged).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import learnability as lb
from analysis import parallel
from analysis import powerlaw as pl

# T_CMP's LABEL is the larger of TOK1/TOK2 (scaling/lm/data/tasks/cmp.py): a model that knows the format but not
# the hidden order picks one of the two inputs, loss log 2 and accuracy 1/2. This, not log 100, is the level
# that separates "learned the order" from "learned the format". T_ADD: 100 equally likely sums.
CHANCE = {"cmp": {"loss": math.log(2), "accuracy": 0.5, "why": "cmp: LABEL is one of the 2 input tokens"},
          "add": {"loss": math.log(100), "accuracy": 0.01, "why": "add: 100 classes (sums mod 100)"}}
TOY_CHANCE = 1.0  # normalised loss of the zero predictor
# Perfect (Bayes) levels: T_CMP's and T_ADD's LABEL is a function of the two inputs, so a model that learned the
# task has loss 0 and accuracy 1; the toy's optimal decoder at full width has normalised loss 0.
PERFECT = {"loss": 0.0, "accuracy": 1.0}
PERFECT_TASKS = ("cmp", "add")
TOY_PERFECT = 0.0
MIN_AUTO_SIZES = 6  # choose_model's leave-one-size-out needs 5 sizes left after holding one out
CHOICE_STARTS = 4  # multi-starts per leave-one-out refit: the choice compares errors, 12 starts buy nothing there
# The toy's optimum is a staircase in width: a drop when the task's first feature enters (to ~0.4 of chance at
# α = 2), then a slow tail. The logistic step captures the drop, which is what its halfway N* marks.
TOY_MODEL = "logistic"
# Toy curves are many (K tasks × β) and have an exact theory to compare with, so their N* CIs get fewer resamples.
TOY_BOOTSTRAP = 100
CI_METHODS = ("profile", "bootstrap")


@dataclasses.dataclass
class Curve:
  """One scaling curve. N: sizes (non-embedding params, or toy width); y: final metric values; seeds: per row."""

  id: str
  kind: str  # task | background | toy
  task: str
  metric: str  # loss | accuracy (loss_norm is fitted as a loss)
  key: str
  x_name: str
  condition: dict
  N: np.ndarray
  y: np.ndarray
  seeds: np.ndarray
  runs: list[str]
  chance: float | None = None
  chance_source: str = ""
  perfect: float | None = None
  fix_E: float | None = None
  fix_E_source: str = ""

  @property
  def n_sizes(self) -> int:
    return len(np.unique(self.N))

  @property
  def fit_metric(self) -> str:
    return "accuracy" if self.metric == "accuracy" else "loss"

  def label(self) -> str:
    c = self.condition
    parts = [self.task, self.metric]
    if c.get("frequency_per_batch") is not None and np.isfinite(c.get("frequency_per_batch", np.nan)):
      parts.append(f"f={c['frequency_per_batch']:g}/batch")
    if c.get("schedule") not in (None, "random") and isinstance(c.get("schedule"), str):
      parts.append(f"{c['schedule']} P={c.get('period'):g}")
    if c.get("beta") is not None and np.isfinite(c.get("beta", np.nan)):
      parts.append(f"β={c['beta']:g}")
    if c.get("injected"):
      parts.append(f"injected π_r={c['frequency_per_token']:.3g}")
    return " ".join(parts)


@dataclasses.dataclass
class CurveFit:
  """The outcome for one curve: a fit + N* (status 'ok'), or a one-line reason (status 'skipped')."""

  curve: Curve
  status: str
  reason: str | None = None
  model: str | None = None
  choice_errors: dict | None = None
  fit: pl.FitResult | None = None
  nstar: lb.NStar | None = None
  holdout: lb.Holdout | None = None
  interpolated: Crossing | None = None  # model-free N* when there are too few sizes for a fit
  seconds: float = 0.0

  def to_dict(self) -> dict:
    c = self.curve
    out = {"id": c.id, "kind": c.kind, "task": c.task, "metric": c.metric, "key": c.key, "x": c.x_name,
           "condition": _jsonable(c.condition), "n_points": int(len(c.y)), "n_sizes": c.n_sizes,
           "sizes": sorted(float(v) for v in np.unique(c.N)), "runs": c.runs, "chance": c.chance,
           "chance_source": c.chance_source, "perfect": c.perfect, "fix_E": c.fix_E, "fix_E_source": c.fix_E_source,
           "status": self.status, "reason": self.reason, "model": self.model, "choice_errors": self.choice_errors,
           "seconds": self.seconds}
    if self.fit is not None:
      out["fit"] = self.fit.to_dict()
    if self.nstar is not None:
      out["n_star"] = self.nstar.to_dict()
    if self.holdout is not None:
      out["holdout"] = self.holdout.to_dict()
    if self.interpolated is not None:
      out["interpolated_n_star"] = dataclasses.asdict(self.interpolated)
    return _jsonable(out)


@dataclasses.dataclass
class Crossing:
  """Model-free N*: where the per-size mean crosses the halfway threshold, interpolated in log N. No CI."""

  n_star: float  # inf: never crosses; nan: already past the threshold at the smallest size
  threshold: float
  note: str


def interpolated_crossing(curve: Curve, frac: float = 0.5) -> Crossing | None:
  """For task curves with too few sizes to fit: where the per-size mean crosses `frac` of the way from chance to
  the perfect level (the fitted N*'s threshold), or, when the task's perfect level is unknown, to the best size's
  mean. Only meaningful when some size beats chance; otherwise the task was learned at no size (n_star = inf).
  """
  if curve.kind not in ("task", "toy") or curve.n_sizes < 2:
    return None
  sizes = np.unique(curve.N)
  ok = np.isfinite(curve.y)
  means = np.array([np.mean(curve.y[(curve.N == n) & ok]) if ((curve.N == n) & ok).any() else np.nan
                    for n in sizes])
  if np.isnan(means).any():
    return None
  sign = 1.0 if curve.fit_metric == "accuracy" else -1.0  # +1: higher is better
  chance = curve.chance if curve.chance is not None else float(means[0])
  best = float(np.max(sign * means) * sign)
  if sign * (best - chance) <= 0:
    return Crossing(math.inf, math.nan, f"no size beats chance ({fmt_num(chance)})")
  thr = lb.threshold_between(chance, curve.perfect if curve.perfect is not None else best, frac)
  past = sign * (means - thr) >= 0
  if not past.any():
    return Crossing(math.inf, thr, f"no size reaches the threshold {fmt_num(thr)} (best {fmt_num(best)})")
  i = int(np.argmax(past))
  if i == 0:
    return Crossing(math.nan, thr, "past the threshold already at the smallest size")
  t = (thr - means[i - 1]) / (means[i] - means[i - 1])
  n = math.exp(math.log(sizes[i - 1]) + t * (math.log(sizes[i]) - math.log(sizes[i - 1])))
  return Crossing(n, thr, f"between sizes {fmt_num(sizes[i - 1])} and {fmt_num(sizes[i])}")


def fmt_num(x: float) -> str:
  return f"{x:.3g}"


def fmt_n(n: float) -> str:
  """A parameter count as 1.5M / 200K."""
  for unit, s in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
    if n >= unit:
      return f"{n / unit:.3g}{s}"
  return f"{n:.3g}"


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.floating, float)):
    v = float(x)
    return v if math.isfinite(v) else (None if math.isnan(v) else ("inf" if v > 0 else "-inf"))
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  return x


# ---------------------------------------------------------------------------------------------------------------
# Floors and chance levels
# ---------------------------------------------------------------------------------------------------------------
def background_floor(configs: dict[str, dict]) -> tuple[float | None, str]:
  """(E, how): the synthetic language's entropy rate (lower bound of the Bayes loss), averaged over the seeds
  of the LM runs; (None, why not) for other corpora. Each seed is its own language, hence the average."""
  vals, bounds = [], []
  seen = {}
  for cfg in configs.values():
    c = cfg.get("config", {})
    d = c.get("data", {})
    if cfg.get("experiment") != "lm":
      continue
    if d.get("source") != "synthetic":
      return None, f"background source {d.get('source')!r} has no known Bayes loss; E is fitted"
    key = (repr(sorted(d.get("synthetic", {}).items())), d.get("vocab_size"), d.get("seq_len"), c.get("seed"))
    if key not in seen:
      try:
        from scaling.lm.data import synthetic  # noqa: PLC0415 - numpy only
        s = d["synthetic"]
        lang = synthetic.SyntheticLanguage(
            int(d["vocab_size"]), int(d["seq_len"]), int(c.get("seed", 0)), successors=s["successors"],
            zipf_exponent=s["zipf_exponent"], noise=s["noise"], regimes=dict(s["regimes"]),
            copy_min_period=s["copy_min_period"], copy_max_period=s["copy_max_period"], copy_noise=s["copy_noise"])
        seen[key] = lang.entropy_bounds()
      except Exception as e:  # noqa: BLE001 - any failure just means "E unknown"
        return None, f"could not compute the synthetic language's entropy rate ({type(e).__name__}: {e}); E is fitted"
    lo, hi, se = seen[key]
    vals.append(lo)
    bounds.append(hi)
  if not vals:
    return None, "no LM runs"
  E = float(np.mean(vals))
  return E, (f"synthetic language entropy rate {E:.4f} nats/token (lower bound of the Bayes loss; the Bayes "
             f"predictor that infers the row's regime is at most {float(np.mean(bounds)):.4f}; "
             f"{len(seen)} language(s), spread {max(vals) - min(vals):.2g})")


def chance_for(task: str, metric: str, configs: Sequence[dict]) -> tuple[float | None, str]:
  """Chance level of a task in metric units: recorded in a run summary, else CHANCE, else None (the caller then
  uses the smallest model's mean, learnability's default)."""
  for cfg in configs:
    info = (cfg.get("summary", {}).get("tasks") or {}).get(task) or {}
    if metric == "loss" and info.get("chance_loss") is not None:
      return float(info["chance_loss"]), "run summary chance_loss"
    if info.get("n_classes"):
      n = float(info["n_classes"])
      return (math.log(n), f"log(n_classes={n:g}) from the run summary") if metric == "loss" else \
          (1.0 / n, f"1/n_classes={n:g} from the run summary")
  if task in CHANCE:
    return CHANCE[task][metric], CHANCE[task]["why"]
  return None, "not known: the smallest model's mean is used as chance"


# ---------------------------------------------------------------------------------------------------------------
# Building curves
# ---------------------------------------------------------------------------------------------------------------
_SHORT = {"frequency_per_batch": "f", "frequency_per_token": "f_tok", "schedule": "", "period": "P", "beta": "beta",
          "inject_task": "inject", "inject_period": "G"}


def _cond_id(parts: dict) -> str:
  out = []
  for k, v in parts.items():
    k = _SHORT.get(k, k)
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
      continue
    out.append(f"{k}={v:g}" if isinstance(v, (int, float, np.floating)) else (f"{k}={v}" if k else str(v)))
  return ",".join(out)


def _mk(kind, task, metric, key, x_name, cond, d, id_keys=(), ycol="value"):
  tag = _cond_id({k: cond[k] for k in id_keys if k in cond})
  cid = f"{kind}:{task}:{metric}" + (f"[{tag}]" if tag else "")
  return Curve(id=cid, kind=kind, task=str(task), metric=metric, key=key, x_name=x_name, condition=cond,
               N=d[x_name].to_numpy(float), y=d[ycol].to_numpy(float), seeds=d["seed"].to_numpy(float),
               runs=[f"{s}/{r}" for s, r in zip(d["sweep"], d["run"])])


def build_curves(fin: pd.DataFrame, configs: dict[str, dict],
                 metrics=("loss", "accuracy")) -> tuple[list[Curve], list[str]]:
  """All curves of a `load.final` table. Returns (curves, notes) — notes say what was not a curve and why."""
  curves, notes = [], []
  lm = fin[fin["experiment"] == "lm"]
  if not lm.empty:
    if lm["n_params_non_embedding"].isna().any():
      notes.append("some LM runs have no summary n_params_non_embedding; they are left out of the fits")
    lm = lm[lm["n_params_non_embedding"].notna()]
    bg = lm[(lm["group"] == "eval") & (lm["task"] == "background") & (lm["metric"] == "loss")]
    if not bg.empty:
      E, how = background_floor({k: v for k, v in configs.items() if v.get("experiment") == "lm"})
      c = _mk("background", "background", "loss", "eval/background/loss", "n_params_non_embedding", {}, bg)
      c.fix_E, c.fix_E_source = (E, how) if E is not None and E < bg["value"].min() else (None, how)
      curves.append(c)
    tasks = lm[(lm["group"] == "eval") & (lm["split"] == "test") & (lm["task"] != "background")
               & lm["metric"].isin(metrics)]
    gkeys = ["task", "metric", "frequency_per_batch", "schedule", "period"]
    for (task, metric, f, sched, period), d in tasks.groupby(gkeys, observed=True, dropna=False, sort=True):
      cond = {"frequency_per_batch": float(f), "frequency_per_token": float(d["frequency_per_token"].iloc[0]),
              "schedule": sched if isinstance(sched, str) else None, "period": float(period)}
      c = _mk("task", task, metric, f"eval/{task}/{metric}", "n_params_non_embedding", cond, d,
              ("frequency_per_batch", "schedule", "period") if cond["schedule"] != "random" else
              ("frequency_per_batch",))
      c.chance, c.chance_source = chance_for(str(task), metric, [configs[r] for r in c.runs if r in configs])
      c.perfect = PERFECT[metric] if str(task) in PERFECT_TASKS else None
      curves.append(c)
  toy = fin[(fin["experiment"] == "toy") & (fin["group"] == "toy") & (fin["metric"] == "loss_norm")
            & fin["task"].notna() & fin["width"].notna()]
  curves += _toy_curves(toy, notes)
  return curves, notes


def _toy_curves(toy: pd.DataFrame, notes: list[str]) -> list[Curve]:
  out = []
  if toy.empty:
    return out
  inj = toy["inject_task"].notna()
  names = pd.Series([f"t{int(k):02d}" if np.isfinite(k) else "" for k in toy["inject_task"]], index=toy.index)
  injected_task = toy["task"].astype(str) == names
  even = injected_task & ((toy["schedule"] == "interleave") | (toy["period"].fillna(1) <= 1))
  if (inj & injected_task & ~even).any():
    notes.append("toy runs with a withheld (gapped) injected task are shown in Fig 4, not fitted per task")
  if (inj & ~injected_task).any():
    notes.append("in toy runs with an injected task only the injected task's curve is fitted (the other tasks' "
                 "frequencies differ from the plain runs')")
  groups = [(toy[~inj], ["task", "beta"], False), (toy[inj & even], ["task", "beta", "frequency_per_token"], True)]
  for d_all, gkeys, injected in groups:
    for key, d in d_all.groupby(gkeys, observed=True, dropna=False, sort=True):
      task, beta = key[0], key[1]
      cond = {"beta": float(beta), "frequency_per_token": float(d["frequency_per_token"].iloc[0])}
      if injected:
        cond.update(inject_task=float(d["inject_task"].iloc[0]), injected=True)
      c = _mk("toy", task, "loss_norm", f"toy/{task}/loss_norm", "width", cond, d,
              ("beta", "inject_task", "frequency_per_token") if injected else ("beta",))
      c.chance, c.chance_source = TOY_CHANCE, "toy: normalised loss of the zero predictor"
      c.perfect = TOY_PERFECT
      out.append(c)
  return out


# ---------------------------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------------------------
def fit_curve(curve: Curve, *, bootstrap: int = 1000, model: str = "auto", seed: int = 0, holdout: bool = True,
              ci: str = "profile", frac: float = 0.5, threshold: float | None = None) -> CurveFit:
  """Fits one curve and its N*; never raises on data problems (status 'skipped' with the reason instead).

  ci: 'profile' (profile-likelihood intervals) or 'bootstrap' (bootstrap resamples per fit; 0: none).
  frac / threshold: N*'s level, a fraction of the way from chance to the perfect level, or explicit.
  """
  t0 = time.perf_counter()
  out = CurveFit(curve=curve, status="skipped")
  need = 2 if curve.fix_E is not None else (4 if curve.kind == "toy" else pl.MIN_SIZES_FREE_E)
  if curve.n_sizes < need:
    out.reason = (f"needs ≥ {need} sizes (got {curve.n_sizes}): a free floor E, the amplitude A and the "
                  "exponent α need ≥ 5 sizes to be told apart" if need == pl.MIN_SIZES_FREE_E else
                  f"needs ≥ {need} sizes (got {curve.n_sizes})")
    out.interpolated = interpolated_crossing(curve)
    return out
  y = curve.y
  bad = ~np.isfinite(y)
  if bad.all():
    out.reason = "every value is NaN"
    return out
  N, seeds, y = curve.N[~bad], curve.seeds[~bad], y[~bad]
  yf = lb.to_fit_units(y, curve.fit_metric)  # accuracy -> error, as learnability fits it
  if (yf <= 0).any():
    out.reason = f"{int((yf <= 0).sum())} values <= 0 cannot be fitted in log space"
    return out
  chosen = TOY_MODEL if curve.kind == "toy" else "powerlaw" if curve.kind == "background" else model
  boot = bootstrap if ci == "bootstrap" else 0
  try:
    if chosen == "auto":
      if len(np.unique(N)) >= MIN_AUTO_SIZES:
        mc = pl.choose_model(N, yf, fix_E=curve.fix_E, n_starts=CHOICE_STARTS, delta=None)
        chosen, out.choice_errors = mc.winner, mc.errors
      else:
        chosen = "powerlaw"
    fix_E = curve.fix_E if chosen == "powerlaw" else None
    seeds_arg = seeds if np.isfinite(seeds).all() else None
    best = curve.perfect if curve.perfect is not None else "fit"
    nk = dict(metric=curve.fit_metric, chance=curve.chance, best=best, frac=frac, threshold=threshold)
    kw = dict(fix_E=fix_E, seeds=seeds_arg, ci=None if ci == "bootstrap" and not boot else ci, bootstrap=boot,
              seed=seed)
    ns = lb.fit_n_star(N, y, model=chosen, **nk, **kw)
    out.model, out.fit, out.nstar, out.status = chosen, ns.fit, ns, "ok"
    need_ho = (2 if fix_E is not None else (4 if chosen == "logistic" else pl.MIN_SIZES_FREE_E)) + 1
    if holdout and curve.kind != "toy" and len(np.unique(N)) >= need_ho:
      try:
        out.holdout = lb.leave_largest_out(N, y, model=chosen, full=ns, **nk, **kw)
      except pl.FitError:
        pass  # the main fit stands; the check is optional
  except pl.FitError as e:
    out.status, out.reason = "skipped", str(e)
  out.seconds = time.perf_counter() - t0
  if curve.kind == "background" and out.nstar is not None:
    out.nstar = None  # not a task: no learnable size
  return out


def fit_curves(curves: list[Curve], *, bootstrap: int = 1000, toy_bootstrap: int = TOY_BOOTSTRAP,
               model: str = "auto", seed: int = 0, jobs: int | None = None, progress: bool = True,
               holdout: bool = True, ci: str = "profile", frac: float = 0.5) -> list[CurveFit]:
  """Fits every curve, in parallel worker processes (fits are CPU-bound and independent)."""
  return parallel.run(fit_jobs(curves, bootstrap=bootstrap, toy_bootstrap=toy_bootstrap, model=model, seed=seed,
                               holdout=holdout, ci=ci, frac=frac), workers=jobs, progress=progress,
                      desc="fits" + (f" (bootstrap {bootstrap})" if ci == "bootstrap" else " (profile CIs)"))


def fit_jobs(curves, *, bootstrap, toy_bootstrap=TOY_BOOTSTRAP, model="auto", seed=0, holdout=True, ci="profile",
             frac=0.5):
  """(fn, args, kwargs) jobs for analysis.parallel.run, one per curve."""
  if ci not in CI_METHODS:
    raise pl.FitError(f"ci={ci!r}; use one of {', '.join(CI_METHODS)}")
  return [(fit_curve, (c,), dict(bootstrap=min(bootstrap, toy_bootstrap) if c.kind == "toy" else bootstrap,
                                 model=model, seed=seed, holdout=holdout, ci=ci, frac=frac)) for c in curves]
