"""When does a task become learnable? N*_k from a fitted curve, the law N* ∝ f^-γ, and held-out checks.

N*_k is the size at which task k's fitted curve crosses a task-relative threshold, by default halfway between
its chance loss and its best loss (chance: given, e.g. log(n_classes), else the mean loss of the smallest
model; best: the fitted floor — E of the power law, L_lo of the logistic — or the best observed value, or
given). Accuracy curves are fitted as error = 1 − accuracy with the same laws, so one code path serves both.

The crossing is solved in closed form:
  power law  E + A·N^-α = t        ->  N* = (A / (t − E))^(1/α)          no crossing if t <= E
  logistic   L_lo + Δ·σ(−k(x − x0)) = t  ->  N* = N0·exp(−logit((t − L_lo)/Δ) / k)
             no crossing if t <= L_lo (N* = inf); below t at every size if t >= L_hi (N* = nan)
A curve that never crosses gives N* = inf (or nan) with the reason, never a made-up number.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import special, stats

from analysis import powerlaw as pl
from analysis.powerlaw import FitError, FitResult

ERR_FLOOR = 1e-4  # accuracy 1.0 -> error 1e-4: the fits work on log error, which needs error > 0


def threshold_between(chance, best, frac=0.5):
  """The value a fraction `frac` of the way from chance to best (0.5: halfway)."""
  return chance + frac * (best - chance)


def _floor(method, p, D=None):
  """The curve's limit as N -> ∞ (the best it ever gets)."""
  if method == "logistic":
    return p["L_lo"]
  out = p["E"]
  if method == "chinchilla" and D is not None:
    out = out + np.exp(np.log(p["B"]) - p["beta"] * math.log(D))
  return out


def crossing(method, params, threshold, D=None):
  """N where the fitted curve falls to `threshold`; inf if it never gets that low, nan if it is below at every N.

  params: a FitResult.params dict, or a dict of (R,) arrays (bootstrap draws) with threshold scalar or (R,).
  For chinchilla, D=None means infinite data.
  """
  p = {k: np.asarray(v, dtype=float) for k, v in params.items()}
  t = np.asarray(threshold, dtype=float)
  with np.errstate(all="ignore"):
    if method == "logistic":
      lo, hi = p["L_lo"], p["L_hi"]
      q = np.clip((t - lo) / (hi - lo), 1e-300, 1 - 1e-16)
      n = p["N0"] * np.exp(-special.logit(q) / p["k"])
      n = np.where(t <= lo, np.inf, np.where(t >= hi, np.nan, n))
    else:
      gap = t - _floor(method, p, D)
      n = np.where(gap > 0, np.exp((np.log(p["A"]) - np.log(np.where(gap > 0, gap, 1.0))) / p["alpha"]), np.inf)
  return n if n.ndim else float(n)


def _no_cross_reason(method, params, threshold, D=None):
  floor = float(_floor(method, params, D))
  if threshold <= floor:
    what = "E" if method != "logistic" else "L_lo"
    return (f"threshold {threshold:.4g} is at or below the fitted floor {what}={floor:.4g}: the fitted curve never "
            "gets there at any size")
  return (f"threshold {threshold:.4g} is at or above the fitted upper plateau L_hi={params['L_hi']:.4g}: the curve "
          "is below it at every size, so there is no switch-on size")


def _order_ci(x, level):
  """Percentile interval from order statistics (no interpolation, so inf draws are fine); nan draws (below the
  threshold at every size) rank as 0. Ranks k and R+1−k with k = floor(q·(R+1)), as percentile_interval."""
  x = np.sort(np.where(np.isnan(x), 0.0, x))
  k = max(int(math.floor((1 - level) / 2 * (len(x) + 1))), 1)
  return float(x[k - 1]), float(x[len(x) - k])


@dataclasses.dataclass
class NStar:
  """N*: the crossing size. threshold is in the metric's units (loss, or accuracy for metric='accuracy').

  extrapolated: a finite N* outside [smallest, largest] fitted size. reason: why N* is inf/nan (else None).
  ci: bootstrap percentile interval (inf at the top when some draws never cross); p_cross: the fraction of
  draws that cross at a finite size.
  """

  n_star: float
  threshold: float
  extrapolated: bool
  reason: str | None
  metric: str
  method: str
  size_range: tuple[float, float]
  ci: tuple[float, float] | None = None
  ci_level: float | None = None
  p_cross: float | None = None
  fit: FitResult | None = dataclasses.field(default=None, repr=False)
  samples: np.ndarray | None = dataclasses.field(default=None, repr=False)

  def to_dict(self):
    return {k: getattr(self, k) for k in ("n_star", "threshold", "extrapolated", "reason", "metric", "method",
                                          "size_range", "ci", "ci_level", "p_cross")}


def _to_fit_units(y, metric):
  if metric == "loss":
    return np.asarray(y, dtype=float)
  if metric == "accuracy":
    return np.maximum(1.0 - np.asarray(y, dtype=float), ERR_FLOOR)
  raise FitError(f"metric={metric!r}; use 'loss' or 'accuracy'")


def _from_fit_units(v, metric):
  return v if metric == "loss" else 1.0 - v


def n_star(fit: FitResult, *, threshold=None, chance=None, best="fit", frac=0.5, D=None, metric="loss",
           level=None) -> NStar:
  """N* of a fitted curve (bootstrap CI when fit has samples). Values are in `metric` units.

  threshold: explicit crossing value; else threshold_between(chance, best, frac) with chance default = the
  mean at the smallest fitted size, best 'fit' (the fitted floor, per bootstrap draw), 'observed' (best
  observed value) or a number.
  """
  N = np.exp(fit._logX[:, 0])
  y = np.exp(fit._y)  # fit units (loss, or error for accuracy)
  if threshold is not None:
    t_fix = float(_to_fit_units(threshold, metric))
    t_of = lambda p: t_fix
  else:
    c = float(y[N == N.min()].mean()) if chance is None else float(_to_fit_units(chance, metric))
    if isinstance(best, str):
      if best == "fit":
        t_of = lambda p: threshold_between(c, _floor(fit.method, p, D), frac)
      elif best == "observed":
        b = float(y.min())
        t_of = lambda p: threshold_between(c, b, frac)
      else:
        raise FitError(f"best={best!r}; use 'fit', 'observed' or a number")
    else:
      b = float(_to_fit_units(best, metric))
      t_of = lambda p: threshold_between(c, b, frac)
  t = float(t_of(fit.params))
  n = crossing(fit.method, fit.params, t, D)
  size_range = (float(N.min()), float(N.max()))
  reason = None if np.isfinite(n) else _no_cross_reason(fit.method, fit.params, t, D)
  out = NStar(n_star=float(n), threshold=float(_from_fit_units(t, metric)), reason=reason, metric=metric,
              method=fit.method, size_range=size_range, fit=fit,
              extrapolated=bool(np.isfinite(n) and not size_range[0] <= n <= size_range[1]))
  if fit.samples is not None:
    level = level or fit.ci_level or 0.95
    draws = crossing(fit.method, fit.samples, t_of(fit.samples), D)
    out.samples = draws
    out.ci, out.ci_level = _order_ci(draws, level), level
    out.p_cross = float(np.mean(np.isfinite(draws)))
  return out


def _fit(model, N, y, *, fix_E, seeds, bootstrap, level, seed, progress):
  kw = dict(seeds=seeds, bootstrap=bootstrap, level=level, seed=seed, progress=progress)
  if model == "auto":
    model = pl.choose_model(N, y, fix_E=fix_E).winner
  if model == "powerlaw":
    return pl.fit_powerlaw(N, y, fix_E=fix_E, **kw)
  if model == "logistic":
    return pl.fit_logistic(N, y, **kw)
  raise FitError(f"model={model!r}; use 'powerlaw', 'logistic' or 'auto'")


def fit_n_star(N, y, *, metric="loss", model="powerlaw", threshold=None, chance=None, best="fit", frac=0.5,
               fix_E=None, seeds=None, bootstrap=1000, level=0.95, seed=0, progress=False) -> NStar:
  """Fits y(N) (loss, or accuracy with metric='accuracy') and returns its N* with a bootstrap CI.

  model: 'powerlaw', 'logistic', or 'auto' (leave-one-size-out choice). fix_E is in fit units (loss or
  error). bootstrap=0 skips the CI.
  """
  f = _fit(model, np.asarray(N, float), _to_fit_units(y, metric), fix_E=fix_E, seeds=seeds, bootstrap=bootstrap,
           level=level, seed=seed, progress=progress)
  return n_star(f, threshold=threshold, chance=chance, best=best, frac=frac, metric=metric)


# ---------------------------------------------------------------------------------------------------------
# N* across frequencies
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FrequencyLaw:
  """log N* = c − γ·log f (natural logs), i.e. N* = e^c·f^-γ. ci: t-intervals for gamma and c."""

  gamma: float
  c: float
  ci: dict[str, tuple[float, float]] | None
  ci_level: float
  n_points: int
  resid_sd: float
  weighted: bool
  excluded: list[tuple[float, str]]
  _cov: np.ndarray = dataclasses.field(repr=False, default=None)
  _dof: int = dataclasses.field(repr=False, default=0)
  _s2_point: float = dataclasses.field(repr=False, default=0.0)

  def predict(self, freq, level=None):
    """-> (N*, lo, hi): the law's N* at an unseen frequency and a prediction interval (includes the scatter
    of single tasks about the law). lo/hi are nan when the fit had no residual dof."""
    level = level or self.ci_level
    x0 = np.array([1.0, -math.log(freq)])
    mid = self.c - self.gamma * math.log(freq)
    if self._dof <= 0:
      return math.exp(mid), math.nan, math.nan
    se = math.sqrt(float(x0 @ self._cov @ x0) + self._s2_point)
    h = stats.t.ppf(0.5 + level / 2, self._dof) * se
    return math.exp(mid), math.exp(mid - h), math.exp(mid + h)


def fit_frequency_law(freq, n_stars, *, n_star_ci=None, level=0.95) -> FrequencyLaw:
  """Fits N* ∝ f^-γ by (weighted) least squares on log N* vs log f.

  n_stars: floats, or NStar objects (their CIs then set the weights). Non-finite N* (tasks never learned)
  are left out and listed in `excluded`. Weights 1/var(log N*) come from the CIs when all are finite.
  Intervals are t-intervals with the residual scale (n − 2 dof).
  """
  freq = np.asarray(freq, dtype=float).reshape(-1)
  items = list(n_stars)
  if len(items) != len(freq):
    raise FitError(f"{len(freq)} frequencies but {len(items)} N* values; pass one N* per frequency")
  if n_star_ci is None and items and isinstance(items[0], NStar):
    n_star_ci = [it.ci for it in items]
  ns = np.array([it.n_star if isinstance(it, NStar) else it for it in items], dtype=float)
  excluded, keep = [], []
  for i, (f, n) in enumerate(zip(freq, ns)):
    if not (np.isfinite(f) and f > 0):
      excluded.append((float(f), "frequency is not a positive number"))
    elif not (np.isfinite(n) and n > 0):
      excluded.append((float(f), "N* is not finite (task not learned at any size, per its fit)"))
    else:
      keep.append(i)
  keep = np.array(keep, dtype=int)
  if len(keep) < 2:
    raise FitError(f"the N*(f) law needs >= 2 frequencies with a finite N*, got {len(keep)}; add frequencies "
                   "or larger sizes")
  x, y = np.log(freq[keep]), np.log(ns[keep])
  w = np.ones(len(keep))
  weighted = False
  if n_star_ci is not None:
    ci = np.array([(math.nan, math.nan) if c is None else c for c in n_star_ci], dtype=float)[keep]
    with np.errstate(all="ignore"):
      sd = (np.log(ci[:, 1]) - np.log(ci[:, 0])) / (2 * stats.norm.ppf(0.5 + level / 2))
    if np.all(np.isfinite(sd)) and np.all(sd > 0):
      w, weighted = 1.0 / sd ** 2, True
  X = np.stack([np.ones_like(x), -x], axis=1)
  XtW = X.T * w
  cov_unit = np.linalg.inv(XtW @ X)
  c, gamma = cov_unit @ (XtW @ y)
  r = y - X @ np.array([c, gamma])
  dof = len(keep) - 2
  s2 = float((w * r * r).sum() / dof) if dof > 0 else math.nan
  cov = cov_unit * s2
  ci_out = None
  if dof > 0:
    h = stats.t.ppf(0.5 + level / 2, dof)
    ci_out = {"gamma": (gamma - h * math.sqrt(cov[1, 1]), gamma + h * math.sqrt(cov[1, 1])),
              "c": (c - h * math.sqrt(cov[0, 0]), c + h * math.sqrt(cov[0, 0]))}
  return FrequencyLaw(gamma=float(gamma), c=float(c), ci=ci_out, ci_level=level, n_points=len(keep),
                      resid_sd=math.sqrt(s2) if dof > 0 else math.nan, weighted=weighted, excluded=excluded,
                      _cov=cov, _dof=dof, _s2_point=s2 / float(np.mean(w)) if dof > 0 else math.nan)


# ---------------------------------------------------------------------------------------------------------
# Leave-largest-size-out validation
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Holdout:
  """The fit without the largest size, predicting it. Values in metric units; error = predicted − observed."""

  size: float
  observed: float
  predicted: float
  error: float
  rel_error: float
  interval: tuple[float, float] | None
  inside: bool | None
  n_star_full: NStar
  n_star_heldout: NStar

  def to_dict(self):
    out = {k: getattr(self, k) for k in ("size", "observed", "predicted", "error", "rel_error", "interval",
                                         "inside")}
    out["n_star_full"], out["n_star_heldout"] = self.n_star_full.to_dict(), self.n_star_heldout.to_dict()
    return out


def leave_largest_out(N, y, *, metric="loss", model="powerlaw", threshold=None, chance=None, best="fit",
                      frac=0.5, fix_E=None, seeds=None, bootstrap=0, level=0.95, seed=0,
                      progress=False) -> Holdout:
  """Fits without the largest size, predicts its mean value and N*, and compares with the full-data fit.

  model 'auto' is resolved once on all the data. A free-E power law needs >= 6 sizes here (5 after holding one
  out). bootstrap=R adds a prediction interval and N* CIs.
  """
  N = np.asarray(N, dtype=float).reshape(-1)
  yf = _to_fit_units(y, metric)
  if len(N) != len(yf):
    raise FitError(f"N has {len(N)} values but y has {len(yf)}; pass arrays of equal length")
  seeds = None if seeds is None else np.asarray(seeds).reshape(-1)
  if model == "auto":
    model = pl.choose_model(N, yf, fix_E=fix_E).winner
  top = N.max()
  held = N == top
  kw = dict(fix_E=fix_E, bootstrap=bootstrap, level=level, seed=seed, progress=progress)
  f_part = _fit(model, N[~held], yf[~held], seeds=None if seeds is None else seeds[~held], **kw)
  f_full = _fit(model, N, yf, seeds=seeds, **kw)
  # chance defaults to the smallest size, which both fits share, so the two N* use the same reference.
  nk = dict(threshold=threshold, chance=chance, best=best, frac=frac, metric=metric)
  pred = float(f_part.predict([top])[0])
  obs = float(yf[held].mean())
  interval = inside = None
  if f_part.samples is not None:
    # The observed value is a mean over seeds, so the interval adds its seed noise to the curve's spread.
    rng = np.random.default_rng(seed)
    logp = np.log(f_part.predict_samples([top])[:, 0])
    logp = logp + pl.noise_std(f_part) / math.sqrt(held.sum()) * rng.standard_normal(len(logp))
    lo, hi = np.exp(pl.percentile_interval(logp, level))
    lo, hi = sorted((float(_from_fit_units(lo, metric)), float(_from_fit_units(hi, metric))))
    interval = (lo, hi)
  p, o = _from_fit_units(pred, metric), _from_fit_units(obs, metric)
  if interval is not None:
    inside = bool(interval[0] <= o <= interval[1])
  return Holdout(size=float(top), observed=o, predicted=p, error=p - o, rel_error=(p - o) / o if o else math.nan,
                 interval=interval, inside=inside, n_star_full=n_star(f_full, **nk),
                 n_star_heldout=n_star(f_part, **nk))
