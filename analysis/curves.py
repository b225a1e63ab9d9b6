"""Scaling curves of a sweep, their fits, and N* (learnable size) per curve and across frequencies.

What is a curve (one fit each):
  task        LM: final eval/<task>/{loss,accuracy} (test split; LABEL-token loss in nats) vs non-embedding N,
              one curve per (task, frequency_per_batch, schedule, period); seeds are repeated rows.
  background  LM: final eval/background/loss vs non-embedding N (E fixed to the synthetic language's
              entropy rate when it is known, see `background_floor`). No N* (not a task).
  toy         toy: final toy/<task>/loss_norm vs width, one curve per (task, β, injected task, gap).
Models: LM curves use the leave-one-size-out choice between power law and logistic step when there are >= 6
sizes ('auto'), the power law otherwise; toy curves use the logistic step (TOY_MODEL; the exact theory is their
reference, analysis.predictions). N* is learnability.n_star's halfway crossing between chance and the fitted floor.

Chance (the "not learned" level) per task: summary["tasks"][t]["chance_loss" | "n_classes"] when a run
records it, else CHANCE below, else the mean loss of the smallest model (flagged in the report).
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
MIN_AUTO_SIZES = 6  # choose_model's leave-one-size-out needs 5 sizes left after holding one out
CHOICE_STARTS = 4  # multi-starts per leave-one-out refit: the choice compares errors, 12 starts buy nothing there
# The toy's optimum is a staircase in width: a drop when the task's first feature enters (to ~0.4 of chance at
# α = 2), then a slow tail. The logistic step captures the drop, which is what its halfway N* marks.
TOY_MODEL = "logistic"
# Toy curves are many (K tasks × β) and have an exact theory to compare with, so their N* CIs get fewer resamples.
TOY_BOOTSTRAP = 100


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
    if c.get("inject_period") is not None and np.isfinite(c.get("inject_period", np.nan)):
      parts.append(f"inject t{int(c['inject_task']):02d} G={c['inject_period']:g}")
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
           "chance_source": c.chance_source, "fix_E": c.fix_E, "fix_E_source": c.fix_E_source,
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


def interpolated_crossing(curve: Curve) -> Crossing | None:
  """For task curves with too few sizes to fit: the crossing of halfway between chance and the best size mean.

  Only meaningful when the best size beats chance; otherwise the task was learned at no size (n_star = inf).
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
  thr = lb.threshold_between(chance, best)
  past = sign * (means - thr) >= 0
  i = int(np.argmax(past))
  if i == 0:
    return Crossing(math.nan, thr, "past the threshold already at the smallest size")
  t = (thr - means[i - 1]) / (means[i] - means[i - 1])
  n = math.exp(math.log(sizes[i - 1]) + t * (math.log(sizes[i]) - math.log(sizes[i - 1])))
  return Crossing(n, thr, f"between sizes {fmt_num(sizes[i - 1])} and {fmt_num(sizes[i])}")


def fmt_num(x: float) -> str:
  return f"{x:.3g}"


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
      curves.append(c)
  toy = fin[(fin["experiment"] == "toy") & (fin["group"] == "toy") & (fin["metric"] == "loss_norm")
            & fin["task"].notna()]
  if toy["inject_task"].notna().any():
    notes.append("toy runs with an injected (withheld) task are shown in Fig 4, not fitted per task")
    toy = toy[toy["inject_task"].isna()]
  if not toy.empty:
    toy = toy[toy["width"].notna()]
    gkeys = ["task", "beta", "inject_task", "inject_period"]
    for (task, beta, it, ip), d in toy.groupby(gkeys, observed=True, dropna=False, sort=True):
      cond = {"beta": float(beta), "inject_task": float(it), "inject_period": float(ip),
              "frequency_per_token": float(d["frequency_per_token"].iloc[0])}
      c = _mk("toy", task, "loss_norm", f"toy/{task}/loss_norm", "width", cond, d,
              ("beta", "inject_task", "inject_period"))
      c.chance, c.chance_source = TOY_CHANCE, "toy: normalised loss of the zero predictor"
      curves.append(c)
  return curves, notes


# ---------------------------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------------------------
def fit_curve(curve: Curve, *, bootstrap: int = 1000, model: str = "auto", seed: int = 0,
              holdout: bool = True) -> CurveFit:
  """Fits one curve and its N*; never raises on data problems (status 'skipped' with the reason instead)."""
  t0 = time.perf_counter()
  out = CurveFit(curve=curve, status="skipped")
  need = 2 if curve.fix_E is not None else (4 if curve.kind == "toy" else pl.MIN_SIZES_FREE_E)
  if curve.n_sizes < need:
    out.reason = f"needs ≥ {need} sizes (got {curve.n_sizes})"
    out.interpolated = interpolated_crossing(curve)
    return out
  y = curve.y
  bad = ~np.isfinite(y)
  if bad.all():
    out.reason = "every value is NaN"
    return out
  N, seeds, y = curve.N[~bad], curve.seeds[~bad], y[~bad]
  yf = lb._to_fit_units(y, curve.fit_metric)  # accuracy -> error, as learnability fits it
  if (yf <= 0).any():
    out.reason = f"{int((yf <= 0).sum())} values <= 0 cannot be fitted in log space"
    return out
  chosen = TOY_MODEL if curve.kind == "toy" else "powerlaw" if curve.kind == "background" else model
  try:
    if chosen == "auto":
      if len(np.unique(N)) >= MIN_AUTO_SIZES:
        mc = pl.choose_model(N, yf, fix_E=curve.fix_E, n_starts=CHOICE_STARTS)
        chosen, out.choice_errors = mc.winner, mc.errors
      else:
        chosen = "powerlaw"
    fix_E = curve.fix_E if chosen == "powerlaw" else None
    seeds_arg = seeds if np.isfinite(seeds).all() else None
    ns = lb.fit_n_star(N, y, metric=curve.fit_metric, model=chosen, chance=curve.chance, fix_E=fix_E,
                       seeds=seeds_arg, bootstrap=bootstrap, seed=seed, progress=False)
    out.model, out.fit, out.nstar, out.status = chosen, ns.fit, ns, "ok"
    need_ho = (2 if fix_E is not None else (4 if chosen == "logistic" else pl.MIN_SIZES_FREE_E)) + 1
    if holdout and curve.kind != "toy" and len(np.unique(N)) >= need_ho:
      try:
        out.holdout = lb.leave_largest_out(N, y, metric=curve.fit_metric, model=chosen, chance=curve.chance,
                                           fix_E=fix_E, seeds=seeds_arg, bootstrap=0)
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
               holdout: bool = True) -> list[CurveFit]:
  """Fits every curve, in parallel worker processes (bootstraps are CPU-bound and independent)."""
  return parallel.run(fit_jobs(curves, bootstrap=bootstrap, toy_bootstrap=toy_bootstrap, model=model, seed=seed,
                               holdout=holdout), workers=jobs, progress=progress, desc=f"fits (bootstrap {bootstrap})")


def fit_jobs(curves, *, bootstrap, toy_bootstrap=TOY_BOOTSTRAP, model="auto", seed=0, holdout=True):
  """(fn, args, kwargs) jobs for analysis.parallel.run, one per curve."""
  return [(fit_curve, (c,), dict(bootstrap=min(bootstrap, toy_bootstrap) if c.kind == "toy" else bootstrap,
                                 model=model, seed=seed, holdout=holdout)) for c in curves]


# ---------------------------------------------------------------------------------------------------------------
# N* across frequencies
# ---------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FrequencyFit:
  """N*(f) over curves that differ only in frequency. points: (f, N*, ci lo, ci hi, curve id)."""

  id: str
  kind: str
  task: str
  metric: str
  freq_name: str
  condition: dict
  points: list[tuple]
  law: lb.FrequencyLaw | None
  reason: str | None

  def to_dict(self):
    out = {"id": self.id, "kind": self.kind, "task": self.task, "metric": self.metric, "frequency": self.freq_name,
           "condition": self.condition, "points": [list(p) for p in self.points], "reason": self.reason}
    if self.law is not None:
      L = self.law
      out["law"] = {"gamma": L.gamma, "c": L.c, "ci": L.ci, "ci_level": L.ci_level, "n_points": L.n_points,
                    "resid_sd": L.resid_sd, "weighted": L.weighted, "excluded": L.excluded}
    return _jsonable(out)


def frequency_laws(fits: list[CurveFit]) -> list[FrequencyFit]:
  """LM: per (task, metric, schedule, period) across frequency_per_batch. Toy: per (β, injection) across tasks,
  frequency = π_k (the injected task left out: its frequency is not π_k's kind)."""
  groups: dict[tuple, list[CurveFit]] = {}
  for f in fits:
    c = f.curve
    if f.nstar is None:
      continue
    if c.kind == "task":
      key = ("task", c.task, c.metric, c.condition.get("schedule"), c.condition.get("period"))
    elif c.kind == "toy":
      it = c.condition.get("inject_task", np.nan)
      if np.isfinite(it) and c.task[1:].isdigit() and int(c.task[1:]) == int(it):
        continue
      key = ("toy", "all tasks", c.metric, c.condition.get("beta"), c.condition.get("inject_period"))
    else:
      continue
    groups.setdefault(key, []).append(f)
  out = []
  for key, members in groups.items():
    kind, task, metric = key[:3]
    fname = "frequency_per_batch" if kind == "task" else "frequency_per_token"
    freqs = [m.curve.condition.get(fname, np.nan) for m in members]
    stars = [m.nstar for m in members]
    pts = [(float(fr), float(s.n_star), *(s.ci if s.ci else (math.nan, math.nan)), m.curve.id)
           for fr, s, m in zip(freqs, stars, members)]
    cond = ({"schedule": key[3], "period": key[4]} if kind == "task" else {"beta": key[3], "inject_period": key[4]})
    fid = f"{kind}:{task}:{metric}[{_cond_id(cond)}]"
    if len(set(freqs)) < 2:
      continue  # a single frequency: nothing to relate
    law, reason = None, None
    try:
      law = lb.fit_frequency_law(freqs, stars)
    except pl.FitError as e:
      reason = str(e)
    out.append(FrequencyFit(id=fid, kind=kind, task=task, metric=metric, freq_name=fname, condition=cond,
                            points=pts, law=law, reason=reason))
  return out
