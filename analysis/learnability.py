"""When does a task become learnable? N*_k from a fitted curve, with its interval, and the held-out-size check.

N*_k is the size at which task k's fitted curve crosses a threshold stated in task units. Default: halfway
between the task's chance level and its perfect (Bayes) level when the caller knows it (accuracy 1, the LABEL
loss 0 of a deterministic task, the toy's normalised loss 0), so "learnable" means the same thing at every
frequency; `best="fit"` uses the fitted floor instead (E of the power law, L_lo of the logistic) and an explicit
`threshold` overrides both. Accuracy curves are fitted as error = 1 − accuracy with the same laws.

The crossing is solved in closed form (analysis.targets.crossing_of):
  power law  E + A·N^-α = t        ->  N* = (A / (t − E))^(1/α)          no crossing if t <= E (N* = inf)
  logistic   L_lo + Δ·σ(−k(x − x0)) = t  ->  N* = N0·exp(−logit((t − L_lo)/Δ) / k)
             no crossing if t <= L_lo (N* = inf); below t at every size if t >= L_hi (N* = nan)
Intervals: the profile likelihood of log N* (fits with ci_method 'profile'), or the percentile interval of the
bootstrap draws' crossings. P(cross): the confidence that the curve crosses at all (profile: from the signed
root of Λ at the no-crossing boundary; bootstrap: the share of draws that cross).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from analysis import fitcore, profile, targets
from analysis import powerlaw as pl
from analysis.fitresult import FitResult, percentile_interval
from scaling.core.errors import FitError

ERR_FLOOR = 1e-4  # accuracy 1.0 -> error 1e-4: the fits work on log error, which needs error > 0


def threshold_between(chance, best, frac=0.5):
  """The value a fraction `frac` of the way from chance to best (0.5: halfway)."""
  return chance + frac * (best - chance)


def crossing(method, params, threshold):
  """N where the fitted curve falls to a fixed `threshold` (fit units); see targets.crossing_of."""
  return targets.crossing_of(method, params, targets.Threshold(threshold))


def to_fit_units(y, metric):
  if metric == "loss":
    return np.asarray(y, dtype=float)
  if metric == "accuracy":
    return np.maximum(1.0 - np.asarray(y, dtype=float), ERR_FLOOR)
  raise FitError(f"metric={metric!r}; use 'loss' or 'accuracy'")


def from_fit_units(v, metric):
  return v if metric == "loss" else 1.0 - v


def _level_in_fit_units(v, metric):
  """A level (threshold, chance, perfect) in fit units, exactly: no ERR_FLOOR, which is only for data."""
  to_fit_units(v, metric)  # validates the metric
  return float(v) if metric == "loss" else 1.0 - float(v)


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
  ci: the interval (∞ at the top when the data allow a curve that never crosses); p_cross: see the module doc.
  rule: how the threshold was set, in words.
  """

  n_star: float
  threshold: float
  extrapolated: bool
  reason: str | None
  metric: str
  method: str
  size_range: tuple[float, float]
  rule: str = ""
  ci: tuple[float, float] | None = None
  ci_level: float | None = None
  ci_method: str | None = None
  p_cross: float | None = None
  fit: FitResult | None = dataclasses.field(default=None, repr=False)
  samples: np.ndarray | None = dataclasses.field(default=None, repr=False)

  def to_dict(self):
    return {k: getattr(self, k) for k in ("n_star", "threshold", "rule", "extrapolated", "reason", "metric",
                                          "method", "size_range", "ci", "ci_level", "ci_method", "p_cross")}


def threshold_rule(fit: FitResult, *, threshold=None, chance=None, best="fit", frac=0.5, metric="loss"):
  """(targets.Threshold in fit units, description). chance defaults to the mean at the smallest size."""
  if threshold is not None:
    return targets.Threshold(_level_in_fit_units(threshold, metric)), f"explicit threshold {threshold:g}"
  if not 0 < frac < 1:
    raise FitError(f"frac={frac} must be in (0, 1): the fraction of the way from chance to the best level")
  N = np.exp(fit._logX[:, 0])
  y = np.exp(fit._y)
  c = float(y[N == N.min()].mean()) if chance is None else _level_in_fit_units(chance, metric)
  where = "the smallest size's mean" if chance is None else f"chance {chance:.3g}"
  if isinstance(best, str):
    if best == "fit":
      return targets.Threshold((1 - frac) * c, frac), f"{frac:g} of the way from {where} to the fitted floor"
    if best == "observed":
      return (targets.Threshold(threshold_between(c, float(y.min()), frac)),
              f"{frac:g} of the way from {where} to the best observed value")
    raise FitError(f"best={best!r}; use 'fit', 'observed' or a number (the perfect / Bayes level)")
  b = _level_in_fit_units(best, metric)
  return targets.Threshold(threshold_between(c, b, frac)), f"{frac:g} of the way from {where} to {best:.3g}"


def _no_cross_reason(method, params, thr):
  floor = float(params["L_lo"] if method == "logistic" else params["E"])
  t = float(thr.at(floor))
  if t <= floor:
    what = "E" if method != "logistic" else "L_lo"
    return (f"threshold {t:.4g} is at or below the fitted floor {what}={floor:.4g}: the fitted curve never "
            "gets there at any size")
  return (f"threshold {t:.4g} is at or above the fitted upper plateau L_hi={params['L_hi']:.4g}: the curve "
          "is below it at every size, so there is no switch-on size")


def n_star(fit: FitResult, *, threshold=None, chance=None, best="fit", frac=0.5, metric="loss",
           level=None) -> NStar:
  """N* of a fitted curve, with the fit's kind of interval (profile or bootstrap) when it has one."""
  thr, rule = threshold_rule(fit, threshold=threshold, chance=chance, best=best, frac=frac, metric=metric)
  floor = fit.params["L_lo" if fit.method == "logistic" else "E"]
  n = float(targets.crossing_of(fit.method, fit.params, thr))
  N = np.exp(fit._logX[:, 0])
  size_range = (float(N.min()), float(N.max()))
  out = NStar(n_star=n, threshold=float(from_fit_units(float(thr.at(floor)), metric)), rule=rule, metric=metric,
              method=fit.method, size_range=size_range, fit=fit,
              reason=None if np.isfinite(n) else _no_cross_reason(fit.method, fit.params, thr),
              extrapolated=bool(np.isfinite(n) and not size_range[0] <= n <= size_range[1]))
  level = level or fit.ci_level or 0.95
  if fit.samples is not None:
    draws = targets.crossing_of(fit.method, fit.samples, thr)
    out.samples, out.ci, out.ci_level = draws, _order_ci(draws, level), level
    out.p_cross, out.ci_method = float(np.mean(np.isfinite(draws))), fit.ci_method
  elif fit.ci_method == "profile" and fit.dof > 0:
    _, out.ci, out.p_cross = profile.n_star_interval(fit, thr, level)
    out.ci_level, out.ci_method = level, "profile"
  return out


def fit_curve_model(model, N, y, *, fix_E=None, seeds=None, ci="profile", bootstrap=0, level=0.95, seed=0,
                    progress=False, delta=None):
  """The fitted law `model` ('powerlaw', 'logistic' or 'auto': leave-one-size-out) of y (fit units) vs N."""
  kw = dict(seeds=seeds, bootstrap=bootstrap, level=level, seed=seed, progress=progress, delta=delta,
            ci=None if bootstrap else ci)
  if model == "auto":
    model = pl.choose_model(N, y, fix_E=fix_E, delta=delta).winner
  if model == "powerlaw":
    return pl.fit_powerlaw(N, y, fix_E=fix_E, **kw)
  if model == "logistic":
    return pl.fit_logistic(N, y, **kw)
  raise FitError(f"model={model!r}; use 'powerlaw', 'logistic' or 'auto'")


def fit_n_star(N, y, *, metric="loss", model="powerlaw", threshold=None, chance=None, best="fit", frac=0.5,
               fix_E=None, seeds=None, ci="profile", bootstrap=0, level=0.95, seed=0, progress=False,
               delta=None) -> NStar:
  """Fits y(N) (loss, or accuracy with metric='accuracy') by least squares on log y (delta=None) and returns its
  N*. Interval: profile likelihood (ci='profile', the default), bootstrap (bootstrap=R > 0), none (ci=None).
  fix_E is in fit units (loss or error)."""
  f = fit_curve_model(model, np.asarray(N, float), to_fit_units(y, metric), fix_E=fix_E, seeds=seeds, ci=ci,
                      bootstrap=bootstrap, level=level, seed=seed, progress=progress, delta=delta)
  return n_star(f, threshold=threshold, chance=chance, best=best, frac=frac, metric=metric)


# ---------------------------------------------------------------------------------------------------------
# Leave-largest-size-out validation
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Holdout:
  """The fit without the largest size, predicting it. Values in metric units; error = predicted − observed.
  n_star_inside: the full-data N* lies inside the held-out fit's N* interval."""

  size: float
  observed: float
  predicted: float
  error: float
  rel_error: float
  interval: tuple[float, float] | None
  inside: bool | None
  n_star_full: NStar
  n_star_heldout: NStar
  n_star_inside: bool | None = None

  def to_dict(self):
    out = {k: getattr(self, k) for k in ("size", "observed", "predicted", "error", "rel_error", "interval",
                                         "inside", "n_star_inside")}
    out["n_star_full"], out["n_star_heldout"] = self.n_star_full.to_dict(), self.n_star_heldout.to_dict()
    return out


def _held_out_interval(f_part, top, n_held, level, seed):
  """Interval for the mean of n_held new runs at size top: the curve's band plus their seed noise (log space)."""
  sd_seed = fitcore.noise_std(f_part) / math.sqrt(n_held)
  if f_part.samples is not None:
    rng = np.random.default_rng(seed)
    logp = np.log(f_part.predict_samples([top])[:, 0])
    logp = logp + sd_seed * rng.standard_normal(len(logp))
    return tuple(float(v) for v in np.exp(percentile_interval(logp, level)))
  lo, hi = profile.curve_band(f_part, [top], level, n_knots=1)
  mid = math.log(float(f_part.predict([top])[0]))
  z = profile.calibration(f_part).crit(level) ** 0.5
  h_lo, h_hi = mid - math.log(lo[0]), math.log(hi[0]) - mid
  add = (z * sd_seed) ** 2
  return math.exp(mid - math.sqrt(h_lo ** 2 + add)), math.exp(mid + math.sqrt(h_hi ** 2 + add))


def leave_largest_out(N, y, *, metric="loss", model="powerlaw", threshold=None, chance=None, best="fit",
                      frac=0.5, fix_E=None, seeds=None, ci="profile", bootstrap=0, level=0.95, seed=0,
                      progress=False, delta=None, full: NStar | None = None) -> Holdout:
  """Fits without the largest size, predicts its mean value and N*, and compares with the full-data fit.

  model 'auto' is resolved once on all the data. A free-E power law needs >= 6 sizes here (5 after holding one
  out). With an interval method (profile, or bootstrap=R) it adds the prediction interval and N* intervals.
  full: the full-data N* when the caller has it (saves a fit). The held-out fit gets intervals only for what the
  check uses (its N* and its curve at the held-out size).
  """
  N = np.asarray(N, dtype=float).reshape(-1)
  yf = to_fit_units(y, metric)
  if len(N) != len(yf):
    raise FitError(f"N has {len(N)} values but y has {len(yf)}; pass arrays of equal length")
  seeds = None if seeds is None else np.asarray(seeds).reshape(-1)
  if model == "auto":
    model = pl.choose_model(N, yf, fix_E=fix_E, delta=delta).winner
  top = N.max()
  held = N == top
  kw = dict(fix_E=fix_E, ci=None if ci == "profile" else ci, bootstrap=bootstrap, level=level, seed=seed,
            progress=progress, delta=delta)
  f_part = fit_curve_model(model, N[~held], yf[~held], seeds=None if seeds is None else seeds[~held], **kw)
  if ci == "profile" and not bootstrap:
    f_part = dataclasses.replace(f_part, ci_method="profile", ci_level=level)
  # chance defaults to the smallest size, which both fits share, so the two N* use the same reference.
  nk = dict(threshold=threshold, chance=chance, best=best, frac=frac, metric=metric)
  pred = float(f_part.predict([top])[0])
  obs = float(yf[held].mean())
  interval = inside = None
  if f_part.samples is not None or f_part.ci_method == "profile":
    lo, hi = _held_out_interval(f_part, top, int(held.sum()), level, seed)
    interval = tuple(sorted((float(from_fit_units(lo, metric)), float(from_fit_units(hi, metric)))))
  p, o = from_fit_units(pred, metric), from_fit_units(obs, metric)
  if interval is not None:
    inside = bool(interval[0] <= o <= interval[1])
  if full is None:
    full = n_star(fit_curve_model(model, N, yf, seeds=seeds, **dict(kw, ci=ci)), **nk)
  ns_full, ns_part = full, n_star(f_part, **nk)
  ns_inside = None
  if ns_part.ci is not None:
    v = ns_full.n_star if not math.isnan(ns_full.n_star) else 0.0
    ns_inside = bool(ns_part.ci[0] <= v <= ns_part.ci[1])
  return Holdout(size=float(top), observed=o, predicted=p, error=p - o, rel_error=(p - o) / o if o else math.nan,
                 interval=interval, inside=inside, n_star_full=ns_full, n_star_heldout=ns_part,
                 n_star_inside=ns_inside)
