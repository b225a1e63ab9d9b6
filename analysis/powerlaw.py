"""Scaling-law fits in log space with a Huber loss, the way Epoch's Chinchilla replication fits them.

Models (L is a loss, or any positive quantity that falls with size N and data D):
  powerlaw    L(N)    = E + A·N^-α          log L̂ = LSE(a − α·log N, e)
  chinchilla  L(N, D) = E + A/N^α + B/D^β    log L̂ = LSE(a − α·log N, b − β·log D, e)
  logistic    L(N)    = L_lo + (L_hi − L_lo)·σ(−k·(log N − log N0))   for tasks that switch on abruptly
with a = log A, b = log B, e = log E. Objective: Σ_i Huber_δ(log L̂_i − log L_i), δ = 1e-3 (Besiroglu et al.
2024), minimised by L-BFGS-B with analytic gradients, started from the best points of a grid that is scored
in one vectorised pass. Bounds: α, β ∈ [0.01, 2]; E ∈ [0, min L] (or fixed by the caller). A fit that ends on
a bound lists the parameter in `at_bound`.

Reproducing Epoch's numbers (E≈1.82, A≈482, B≈2085, α≈0.348, β≈0.366 on their SVG-extracted data without
the 5 highest losses): the plain δ=1e-3 Huber minimum is E=1.817, A=478, B=2143, α=0.3473, β=0.3672, the
value their notebook's grid search prints; the published row comes from their Huber-likelihood refit (a scale
σ fitted too, BFGS stopped on precision loss), which moves A/B by ~1–3% and α/β by ~1e-3. Both agree within
the ±0.01 the tests ask for. See tests/analysis/test_powerlaw.py::test_chinchilla_cli_reproduces_epoch_refit.

CLI: python -m analysis.powerlaw --csv FILE --n COL [--d COL | --d_from_flops COL] --loss COL ...
prints one JSON object (E, A, alpha[, B, beta], n_points, loss, at_bound[, ci]) on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import sys
from collections.abc import Sequence

import numpy as np
from scipy import optimize, special

from scaling.core import cli

try:
  from threadpoolctl import threadpool_limits
except ImportError:  # optional; without it fits can run 5-15x slower on a busy 2-core machine
  threadpool_limits = None

DEFAULT_DELTA = 1e-3
EXPONENT_BOUNDS = (0.01, 2.0)
# log E may not reach −inf; E = min(L)·e^-20 ≈ 2e-9·min(L) is zero for every practical purpose.
LOG_E_RANGE = 20.0
LOGISTIC_K_BOUNDS = (0.05, 50.0)  # per unit of log N; 50 is a step for any ladder spacing
MIN_SIZES_FREE_E = 5
N_STARTS = 12  # L-BFGS-B runs from the best grid points; more buys nothing on the data we tried
_BOUND_TOL = 1e-6
_LBFGS_OPTIONS = dict(maxiter=20_000, maxfun=40_000, ftol=1e-14, gtol=1e-10, maxls=50)
# Bootstrap refits only feed percentiles, where 1e-6 relative precision is plenty: ~20% fewer evaluations.
_BOOT_OPTIONS = dict(_LBFGS_OPTIONS, ftol=1e-10, gtol=1e-7)


class FitError(ValueError):
  """Input that cannot be fitted. The message names the problem and the fix in one line."""


def huber(r, delta):
  a = np.abs(r)
  return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


# ---------------------------------------------------------------------------------------------------------
# Models. Each works in internal coordinates where log N (log D) is centred on the data, so that the
# intercept and the exponent are nearly uncorrelated: this is what lets L-BFGS-B converge to ~1e-10.
# ---------------------------------------------------------------------------------------------------------
class _LSEModel:
  """powerlaw / chinchilla. θ = [c_1..c_m, s_1..s_m, (e)], c_j = a_j − s_j·centre_j."""

  def __init__(self, logX_NxM, y_N, *, centre_M, fix_E, delta):
    self.Xc = logX_NxM - centre_M
    self.centre = centre_M
    self.y = y_N
    self.m = logX_NxM.shape[1]
    self.method = "powerlaw" if self.m == 1 else "chinchilla"
    self.fix_E = fix_E
    self.free_E = fix_E is None
    self.delta = delta
    self.p = 2 * self.m + int(self.free_E)
    self._buf = np.empty((len(y_N), self.m + int(self.free_E or fix_E > 0)))
    if not self.free_E and fix_E > 0:
      self._buf[:, self.m] = math.log(fix_E)
    e_hi = float(np.min(y_N))
    self.bounds = [(None, None)] * self.m + [EXPONENT_BOUNDS] * self.m
    if self.free_E:
      self.bounds.append((e_hi - LOG_E_RANGE, e_hi))

  def _terms(self, theta):
    """theta (..., p) -> terms (..., n, m[+1]) whose LSE is log L̂."""
    c, s = theta[..., None, :self.m], theta[..., None, self.m:2 * self.m]
    t = c - s * self.Xc
    if self.free_E:
      e = np.broadcast_to(theta[..., None, 2 * self.m:], t.shape[:-1] + (1,))
      t = np.concatenate([t, e], axis=-1)
    elif self.fix_E > 0:
      t = np.concatenate([t, np.full(t.shape[:-1] + (1,), math.log(self.fix_E))], axis=-1)
    return t

  def batch_value(self, theta_GxP):
    out = []
    with np.errstate(all="ignore"):
      for chunk in np.array_split(theta_GxP, max(1, len(theta_GxP) * len(self.y) // 200_000)):
        r = special.logsumexp(self._terms(chunk), axis=-1) - self.y  # chunked: bounded memory
        out.append(huber(r, self.delta).sum(-1) / self.delta ** 2)
    return np.concatenate(out)

  def value_grad(self, theta):
    # Hand-rolled LSE (scipy's logsumexp costs ~10x more on small arrays; this runs ~10^5 times per bootstrap).
    m, d = self.m, self.delta
    T = self._buf
    T[:, :m] = theta[:m] - self.Xc * theta[m:2 * m]
    if self.free_E:
      T[:, m] = theta[-1]
    mx = T.max(1, keepdims=True)
    ex = np.exp(T - mx)
    tot = ex.sum(1)
    r = mx[:, 0] + np.log(tot) - self.y
    gr = np.clip(r, -d, d) / (tot * d * d)
    gw = ex * gr[:, None]  # (n, terms): d objective / d term
    g = np.empty(self.p)
    g[:m] = gw[:, :m].sum(0)
    g[m:2 * m] = -(gw[:, :m] * self.Xc).sum(0)
    if self.free_E:
      g[-1] = gw[:, m].sum()
    a = np.abs(r)
    f = np.where(a <= d, 0.5 * r * r, d * (a - 0.5 * d)).sum() / (d * d)
    return float(f), g

  def params(self, theta):
    names = (("A", "alpha"), ("B", "beta"))
    out = {"E": self.fix_E if not self.free_E else math.exp(theta[-1])}
    for j in range(self.m):
      a_name, s_name = names[j]
      out[a_name] = math.exp(theta[j] + theta[self.m + j] * self.centre[j])
      out[s_name] = float(theta[self.m + j])
    return out

  def theta_from_params(self, params):
    names = (("A", "alpha"), ("B", "beta"))
    c = [math.log(params[names[j][0]]) - params[names[j][1]] * self.centre[j] for j in range(self.m)]
    s = [params[names[j][1]] for j in range(self.m)]
    e = [math.log(max(params["E"], 1e-300))] if self.free_E else []
    return np.array(c + s + e, dtype=float)

  def bound_names(self):
    return [None] * self.m + ["alpha", "beta"][:self.m] + (["E"] if self.free_E else [])

  def grid(self):
    ymed = float(np.median(self.y))
    # Centred intercepts are log-losses near the data, so a few values span every sensible start.
    c_vals = ymed + (np.array([-7.0, -4.5, -3.0, -2.0, -1.0, -0.3]) if self.m == 1 else
                     np.array([-6.0, -3.5, -2.0, -1.0, -0.3]))
    s_vals = (np.array([0.01, 0.1, 0.25, 0.4, 0.7, 1.0, 1.5, 2.0]) if self.m == 1 else
              np.array([0.05, 0.2, 0.35, 0.6, 1.0, 1.7]))
    axes = [c_vals] * self.m + [s_vals] * self.m
    if self.free_E:
      e_hi = self.bounds[-1][1]
      axes.append(e_hi + np.log([1e-8, 0.3, 0.6, 0.85, 0.95, 1.0]))
    return np.array(list(itertools.product(*axes)), dtype=float)


class _LogisticModel:
  """θ = [L_lo, span = L_hi − L_lo, k, mc = log N0 − centre]."""

  method = "logistic"

  def __init__(self, logX_NxM, y_N, *, centre_M, delta, x_range=None, **_):
    self.x = logX_NxM[:, 0] - centre_M[0]
    self.centre = centre_M
    self.y = y_N
    self.delta = delta
    self.p = 4
    self.free_E = True
    lmin, lmax = float(np.exp(y_N.min())), float(np.exp(y_N.max()))
    # The step's location may sit somewhat beyond the sizes (x_range is kept fixed across bootstrap refits).
    x_lo, x_hi = x_range if x_range is not None else (self.x.min(), self.x.max())
    pad = max(x_hi - x_lo, 1.0)
    self.x_range = (x_lo, x_hi)
    self.bounds = [(1e-6 * lmin, lmax), (0.0, 10.0 * lmax), LOGISTIC_K_BOUNDS, (x_lo - pad, x_hi + pad)]

  def _lhat(self, theta):
    lo, span, k, mc = (theta[..., i, None] for i in range(4))
    s = special.expit(-k * (self.x - mc))
    return lo + span * s, s

  def batch_value(self, theta_GxP):
    with np.errstate(all="ignore"):
      r = np.log(self._lhat(theta_GxP)[0]) - self.y
      v = huber(r, self.delta).sum(-1) / self.delta ** 2
    return np.where(np.isfinite(v), v, np.inf)

  def value_grad(self, theta):
    lhat, s = self._lhat(theta)
    lo, span, k, mc = theta
    r = np.log(lhat) - self.y
    d = self.delta
    gr = np.clip(r, -d, d) / lhat / d ** 2
    ds = s * (1 - s)
    g = np.array([gr.sum(), (gr * s).sum(), -(gr * span * ds * (self.x - mc)).sum(), (gr * span * ds * k).sum()])
    return float(huber(r, d).sum() / d ** 2), g

  def params(self, theta):
    lo, span, k, mc = (float(v) for v in theta)
    return {"L_lo": lo, "L_hi": lo + span, "k": k, "N0": math.exp(mc + self.centre[0])}

  def theta_from_params(self, params):
    return np.array([params["L_lo"], params["L_hi"] - params["L_lo"], params["k"],
                     math.log(params["N0"]) - self.centre[0]], dtype=float)

  def bound_names(self):
    return ["L_lo", None, "k", "N0"]

  def grid(self):
    lmin, lmax = float(np.exp(self.y.min())), float(np.exp(self.y.max()))
    los = lmin * np.array([0.3, 0.8, 0.97])
    spans = max(lmax - lmin, 1e-3 * lmax) * np.array([0.5, 1.0, 1.5, 3.0])
    ks = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 40.0])
    mcs = np.linspace(self.x.min(), self.x.max(), 9)
    return np.array(list(itertools.product(los, spans, ks, mcs)), dtype=float)


def _one_blas_thread():
  # L-BFGS-B makes many tiny BLAS calls; OpenBLAS waking its threads for each made refits 15x slower on a
  # loaded 2-core machine (measured), so fits hold BLAS to one thread.
  return threadpool_limits(1, user_api="blas") if threadpool_limits else contextlib.nullcontext()


def _box(model):
  lo = np.array([-np.inf if b[0] is None else b[0] for b in model.bounds])
  hi = np.array([np.inf if b[1] is None else b[1] for b in model.bounds])
  return lo, hi


def _lbfgsb(model, x0, options=None):
  x0 = np.clip(x0, *_box(model))  # a warm start may sit outside a resample's E <= min(L) bound
  with np.errstate(all="ignore"):
    return optimize.minimize(model.value_grad, x0, jac=True, method="L-BFGS-B", bounds=model.bounds,
                             options=options or _LBFGS_OPTIONS)


def _solve(model, n_starts=N_STARTS):
  """Scores the whole grid at once, runs L-BFGS-B from the n_starts best points, polishes the winner."""
  grid = np.clip(model.grid(), *_box(model))
  vals = model.batch_value(grid)
  vals = np.where(np.isfinite(vals), vals, np.inf)
  starts = grid[np.argsort(vals, kind="stable")[:n_starts]]
  best = None
  for x0 in starts:
    res = _lbfgsb(model, x0)
    if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
      best = res
  if best is None:
    raise FitError("every L-BFGS-B start ended non-finite; check the data for extreme values or fix E")
  # A restart from the winner resets L-BFGS's curvature memory, which helps at the Huber kinks.
  polished = _lbfgsb(model, best.x)
  return polished if polished.fun <= best.fun else best


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FitResult:
  """A fitted law. params: E, A, alpha (powerlaw); + B, beta (chinchilla); L_lo, L_hi, k, N0 (logistic).

  loss is Σ Huber_δ(log residual), Epoch's scale. ci maps a parameter to its (lo, hi) percentile interval
  after `bootstrap`, and samples holds the bootstrap draws (name -> (R,) array).
  """

  method: str
  params: dict[str, float]
  loss: float
  at_bound: list[str]
  n_points: int
  n_sizes: int
  delta: float
  converged: bool
  fixed: dict[str, float] = dataclasses.field(default_factory=dict)
  ci: dict[str, tuple[float, float]] | None = None
  ci_level: float | None = None
  n_boot_failed: int = 0
  samples: dict[str, np.ndarray] | None = dataclasses.field(default=None, repr=False)
  _theta: np.ndarray | None = dataclasses.field(default=None, repr=False)
  _logX: np.ndarray | None = dataclasses.field(default=None, repr=False)
  _y: np.ndarray | None = dataclasses.field(default=None, repr=False)
  _seeds: np.ndarray | None = dataclasses.field(default=None, repr=False)
  _centre: np.ndarray | None = dataclasses.field(default=None, repr=False)
  _x_range: tuple | None = dataclasses.field(default=None, repr=False)

  def predict(self, N, D=None):
    """L̂ at sizes N (and data D for chinchilla; D=None there means D → ∞, the infinite-data curve)."""
    return _predict(self.method, self.params, N, D)

  def predict_samples(self, N, D=None):
    """(R, len(N)) predictions under each bootstrap draw; needs `bootstrap` first."""
    if self.samples is None:
      raise FitError("no bootstrap samples on this fit; call bootstrap(fit) or pass bootstrap=R to the fit")
    ps = {k: np.asarray(v)[:, None] for k, v in self.samples.items()}
    return _predict(self.method, ps, np.atleast_1d(N), D if D is None else np.atleast_1d(D))

  def predict_interval(self, N, D=None, level=None):
    """Percentile interval (lo, hi) of the prediction at N over the bootstrap draws."""
    level = level or self.ci_level or 0.95
    return percentile_interval(self.predict_samples(N, D), level)

  def to_dict(self):
    out = dict(self.params)
    out.update(method=self.method, loss=self.loss, at_bound=list(self.at_bound), n_points=self.n_points,
               n_sizes=self.n_sizes, delta=self.delta, converged=self.converged, fixed=dict(self.fixed))
    if self.ci is not None:
      out.update(ci={k: [float(v[0]), float(v[1])] for k, v in self.ci.items()}, ci_level=self.ci_level,
                 n_bootstrap=len(next(iter(self.samples.values()))), n_boot_failed=self.n_boot_failed)
    return out


def percentile_interval(x_R, level, axis=0):
  """(lo, hi) percentile interval of bootstrap draws along axis.

  Quantile p sits at rank p·(R+1) (numpy's 'weibull' rule), the rank whose expected coverage is p; numpy's
  default rank p·(R−1) puts a nominal 95% interval from 40 draws at ~90% (measured), the default is fine only
  for R in the thousands.
  """
  q = 100 * (1 - level) / 2
  return (np.percentile(x_R, q, axis=axis, method="weibull"), np.percentile(x_R, 100 - q, axis=axis, method="weibull"))


def _predict(method, p, N, D=None):
  logN = np.log(np.asarray(N, dtype=float))
  if method == "logistic":
    return p["L_lo"] + (p["L_hi"] - p["L_lo"]) * special.expit(-p["k"] * (logN - np.log(p["N0"])))
  out = p["E"] + np.exp(np.log(p["A"]) - p["alpha"] * logN)
  if method == "chinchilla" and D is not None:
    out = out + np.exp(np.log(p["B"]) - p["beta"] * np.log(np.asarray(D, dtype=float)))
  return out


def _check(name, x, n=None):
  x = np.asarray(x, dtype=float).reshape(-1)
  if n is not None and len(x) != n:
    raise FitError(f"{name} has {len(x)} values but the losses have {n}; pass arrays of equal length")
  bad = ~np.isfinite(x)
  if bad.any():
    raise FitError(f"{name} has {bad.sum()} NaN/inf values (at positions {np.flatnonzero(bad)[:5].tolist()}); "
                   "drop or fill those rows")
  if (x <= 0).any():
    raise FitError(f"{name} has {(x <= 0).sum()} values <= 0; the fit is in log space, so drop those rows")
  return x


def _fit(method, N, L, D=None, *, fix_E=None, delta=DEFAULT_DELTA, seeds=None, n_starts=N_STARTS,
         n_boot=0, level=0.95, seed=0, progress=True):
  L = _check("loss", L)
  N = _check("N", N, len(L))
  cols = [np.log(N)]
  if D is not None:
    cols.append(np.log(_check("D", D, len(L))))
  logX = np.stack(cols, axis=1)
  n_sizes = len(np.unique(N))
  n_conditions = len(np.unique(logX, axis=0))
  if fix_E is not None and not (np.isfinite(fix_E) and fix_E >= 0):
    raise FitError(f"fix_E={fix_E} must be a finite number >= 0")
  if method == "powerlaw":
    need = MIN_SIZES_FREE_E if fix_E is None else 2
    if n_sizes < need:
      hint = " (or fix E: fix_E=... / --fix_E VALUE, which needs only 2)" if fix_E is None else ""
      raise FitError(f"a {'free' if fix_E is None else 'fixed'}-E power law needs >= {need} distinct sizes, "
                     f"got {n_sizes}; add sizes{hint}")
  elif method == "chinchilla":
    need = 6 if fix_E is None else 4
    if n_conditions < need or len(np.unique(logX[:, 0])) < 2 or len(np.unique(logX[:, 1])) < 2:
      raise FitError(f"the N,D law needs >= {need} distinct (N, D) pairs with >= 2 values of each, got "
                     f"{n_conditions}; add runs{'' if fix_E is not None else ' or fix E'}")
  elif method == "logistic":
    if n_sizes < 4:
      raise FitError(f"the logistic step needs >= 4 distinct sizes, got {n_sizes}; add sizes or fit a power law "
                     "with E fixed")
  if seeds is not None:
    seeds = np.asarray(seeds).reshape(-1)
    if len(seeds) != len(L):
      raise FitError(f"seeds has {len(seeds)} values but the losses have {len(L)}; pass one seed per row")
  centre = logX.mean(0)
  x_range = (logX[:, 0].min() - centre[0], logX[:, 0].max() - centre[0])
  model = _make_model(method, logX, np.log(L), centre, fix_E, delta, x_range)
  with _one_blas_thread():
    res = _solve(model, n_starts)
  out = _result(model, res, n_sizes, fix_E)
  out._logX, out._y, out._seeds, out._centre, out._x_range = logX, np.log(L), seeds, centre, x_range
  if n_boot:
    out = bootstrap(out, n_resamples=n_boot, level=level, seed=seed, progress=progress)
  return out


def _make_model(method, logX, y, centre, fix_E, delta, x_range=None):
  if method == "logistic":
    return _LogisticModel(logX, y, centre_M=centre, delta=delta, x_range=x_range)
  return _LSEModel(logX, y, centre_M=centre, fix_E=fix_E, delta=delta)


def _result(model, res, n_sizes, fix_E):
  at_bound = []
  for name, (lo, hi), v in zip(model.bound_names(), model.bounds, res.x):
    if name is None:
      continue
    if (lo is not None and v - lo <= _BOUND_TOL * max(1, abs(lo))) or (
        hi is not None and hi - v <= _BOUND_TOL * max(1, abs(hi))):
      at_bound.append(name)
  return FitResult(method=model.method, params=model.params(res.x), loss=float(res.fun) * model.delta ** 2,
                   at_bound=at_bound, n_points=len(model.y), n_sizes=n_sizes, delta=model.delta,
                   converged=bool(res.success), fixed={} if fix_E is None else {"E": float(fix_E)},
                   _theta=np.array(res.x))


def fit_powerlaw(N, L, *, fix_E=None, delta=DEFAULT_DELTA, seeds=None, bootstrap=0, level=0.95, seed=0,
                 progress=True, n_starts=N_STARTS) -> FitResult:
  """L(N) = E + A·N^-α. N, L: (n,) positive arrays (several rows per size = seeds). fix_E: known E (>= 0).

  A free E needs >= 5 distinct sizes. bootstrap=R adds percentile CIs (see `bootstrap`).
  """
  return _fit("powerlaw", N, L, fix_E=fix_E, delta=delta, seeds=seeds, n_boot=bootstrap, level=level,
              seed=seed, progress=progress, n_starts=n_starts)


def fit_chinchilla(N, D, L, *, fix_E=None, delta=DEFAULT_DELTA, seeds=None, bootstrap=0, level=0.95, seed=0,
                   progress=True, n_starts=N_STARTS) -> FitResult:
  """L(N, D) = E + A/N^α + B/D^β. N, D, L: (n,) positive arrays."""
  return _fit("chinchilla", N, L, D, fix_E=fix_E, delta=delta, seeds=seeds, n_boot=bootstrap, level=level,
              seed=seed, progress=progress, n_starts=n_starts)


def fit_logistic(N, L, *, delta=DEFAULT_DELTA, seeds=None, bootstrap=0, level=0.95, seed=0, progress=True,
                 n_starts=N_STARTS) -> FitResult:
  """L(N) = L_lo + (L_hi − L_lo)·σ(−k·(log N − log N0)), k > 0: a drop from L_hi to L_lo around N0."""
  return _fit("logistic", N, L, delta=delta, seeds=seeds, n_boot=bootstrap, level=level, seed=seed,
              progress=progress, n_starts=n_starts)


# ---------------------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------------------
def noise_std(fit: FitResult) -> float:
  """Std of log L between seeds: pooled over rows that share N (and D), or without any replicates, the
  dof-corrected residual std of the fit."""
  logX, y = fit._logX, fit._y
  _, cond = np.unique(logX, axis=0, return_inverse=True)
  cond = cond.reshape(-1)
  ss, dof = 0.0, 0
  for c in np.unique(cond):
    yc = y[cond == c]
    if len(yc) >= 2:
      ss += float(((yc - yc.mean()) ** 2).sum())
      dof += len(yc) - 1
  if dof > 0:
    return math.sqrt(ss / dof)
  D = np.exp(logX[:, 1]) if logX.shape[1] > 1 else None
  r = np.log(fit.predict(np.exp(logX[:, 0]), D)) - y
  dof = len(r) - len(fit._theta)
  if dof <= 0:
    raise FitError(f"cannot estimate seed noise: {len(r)} points and {len(fit._theta)} parameters leave no "
                   "residual dof; add seeds (>= 2 at some size) or sizes")
  return math.sqrt(float((r ** 2).sum()) / dof)


class _Resampler:
  """Draws bootstrap datasets that always contain every size (N, or (N, D) for chinchilla).

  Strata are sizes; units are rows, or with seeds given, all rows of one (size, seed) run. Within a stratum of
  k >= 2 units, units are drawn with replacement; single-row units are then spread by sqrt(k/(k−1)) about
  the stratum mean of log L, so the resampled mean has the unbiased seed variance s²/k rather than the
  plug-in (k−1)/k·s²/k (which would halve the variance at k = 2). A stratum with one unit gets Gaussian
  noise on log L with the pooled seed std (rows that share N (and D)), or without replicates anywhere, the
  residual std of the point fit (dof-corrected).
  """

  def __init__(self, fit: FitResult):
    logX, y, seeds = fit._logX, fit._y, fit._seeds
    n = len(y)
    _, cond = np.unique(logX, axis=0, return_inverse=True)
    cond = cond.reshape(-1)
    if seeds is None:
      strata, units = cond, np.arange(n)
    else:
      _, strata = np.unique(logX[:, 0], return_inverse=True)
      _, units = np.unique(np.stack([strata.astype(str), seeds.astype(str)], 1), axis=0, return_inverse=True)
      units = units.reshape(-1)
    self.y = y
    self.groups = []  # (stratum rows as list of unit row-arrays) for strata with >= 2 units
    single_unit_rows = []
    self.centre_y = y.copy()
    self.scale = np.ones(n)
    for s in np.unique(strata):
      rows = np.flatnonzero(strata == s)
      unit_ids = np.unique(units[rows])
      if len(unit_ids) == 1:
        single_unit_rows.append(rows)
        continue
      unit_rows = [rows[units[rows] == u] for u in unit_ids]
      self.groups.append(unit_rows)
      if all(len(u) == 1 for u in unit_rows):
        k = len(unit_rows)
        self.centre_y[rows] = y[rows].mean()
        self.scale[rows] = math.sqrt(k / (k - 1))
    self.noise_rows = np.concatenate(single_unit_rows) if single_unit_rows else np.zeros(0, int)
    self.sigma = noise_std(fit) if len(self.noise_rows) else 0.0

  def draw(self, rng):
    """-> (row indices (n',), log-loss values (n',))."""
    idx_parts, y_parts = [self.noise_rows], [self.y[self.noise_rows] + self.sigma * rng.standard_normal(
        len(self.noise_rows))]
    for unit_rows in self.groups:
      pick = rng.integers(0, len(unit_rows), len(unit_rows))
      rows = np.concatenate([unit_rows[i] for i in pick])
      idx_parts.append(rows)
      y_parts.append(self.centre_y[rows] + self.scale[rows] * (self.y[rows] - self.centre_y[rows]))
    return np.concatenate(idx_parts), np.concatenate(y_parts)


def bootstrap(fit: FitResult, n_resamples: int = 1000, level: float = 0.95, seed: int = 0,
              progress: bool = True, batched: bool = True) -> FitResult:
  """Percentile CIs by refitting resampled data (see _Resampler), each refit warm-started from the point fit.

  batched: refit all resamples of a power law / Chinchilla fit at once (`_batch_refit`, 5-20x faster); resamples
  it cannot certify as converged are refitted one by one with L-BFGS-B from where it stopped. The logistic step
  is always refitted one by one: its plateaus and steepness rest on a few points each, its resamples have flat
  valleys, and where a batched path would stop in them changes the interval of k (measured).
  Deterministic given seed. Returns a copy of fit with ci, ci_level, samples, n_boot_failed filled in.
  """
  from tqdm.auto import tqdm

  if fit._y is None:
    raise FitError("this FitResult carries no data; bootstrap the result of fit_powerlaw/fit_chinchilla/fit_logistic")
  if not 0 < level < 1:
    raise FitError(f"level={level} must be in (0, 1), e.g. 0.95")
  rng = np.random.default_rng(seed)
  sampler = _Resampler(fit)
  fix_E = fit.fixed.get("E")
  data = [sampler.draw(rng) for _ in range(n_resamples)]
  starts = np.tile(fit._theta, (n_resamples, 1))
  certified = np.zeros(n_resamples, bool)
  with _one_blas_thread():
    if batched and fit.method != "logistic" and len({len(y) for _, y in data}) == 1:
      starts, certified = _batch_refit(fit, np.stack([i for i, _ in data]), np.stack([y for _, y in data]))
    draws, failed = [], 0
    template = _make_model(fit.method, fit._logX[data[0][0]], data[0][1], fit._centre, fix_E, fit.delta,
                           fit._x_range)
    for r in tqdm(range(n_resamples), desc=f"bootstrap {fit.method}", disable=not progress, leave=False):
      if certified[r]:
        draws.append(template.params(starts[r]))  # params() reads only the centring, never the data
        continue
      idx, y = data[r]
      model = _make_model(fit.method, fit._logX[idx], y, fit._centre, fix_E, fit.delta, fit._x_range)
      x0 = starts[r] if np.all(np.isfinite(starts[r])) else fit._theta
      res = _lbfgsb(model, x0, _BOOT_OPTIONS)
      if not np.all(np.isfinite(res.x)) or not np.isfinite(res.fun):
        failed += 1
        continue
      draws.append(model.params(res.x))
  if not draws:
    raise FitError("every bootstrap refit failed; check the data for outliers or fix E")
  samples = {k: np.array([d[k] for d in draws]) for k in draws[0]}
  ci = {k: tuple(float(b) for b in percentile_interval(v, level)) for k, v in samples.items() if k not in fit.fixed}
  return dataclasses.replace(fit, ci=ci, ci_level=level, samples=samples, n_boot_failed=failed)


# ---------------------------------------------------------------------------------------------------------
# Batched refits: every bootstrap resample at once
# ---------------------------------------------------------------------------------------------------------
# A refit is a tiny problem (p <= 5 parameters, ~10-100 points) that L-BFGS-B solves in ~40 evaluations, each
# dominated by Python/scipy overhead. Here all R resamples of a power law or Chinchilla fit take their steps
# together, as (R, n, p) arrays:
# iteratively reweighted Gauss-Newton (the Huber majorizer: weight ψ(r)/r per point, a descent direction for
# every block), a projected step on the box bounds, and a per-block backtracking (Armijo) line search. A block
# is certified when its full step is below _BATCH_STEP_TOL in the centred internal coordinates and its projected
# gradient is small; any other block goes back to L-BFGS-B (see bootstrap). On well-posed fits the draws equal
# the one-by-one L-BFGS-B refits to ~1e-5 relative for >= 90% of resamples and give the same intervals; the
# rest sit in flat valleys of the nearly-L1 objective (equal objective, parameters ~1% apart), where the two
# paths stop at different points (tests/analysis/test_powerlaw.py).
_BATCH_MAX_ITER = 300  # IRLS converges linearly; blocks still moving after this go to L-BFGS-B
_BATCH_GRAD_TOL = 1.0  # and their projected gradient (objective units: Huber/δ², typically 1e3..1e5) is this small
_BATCH_STEP_TOL = 1e-7
_BATCH_HALVINGS = 0.5 ** np.arange(24)


def _batch_eval_lse(theta, Xc, y, m, free_E, log_fix_E, delta, jac=True):
  """theta (R, p), Xc (R, n, m) centred log N (, log D), y (R, n) log L -> f (R,), r (R, n), J (R, n, p)."""
  R, n = y.shape
  T = theta[:, None, :m] - theta[:, None, m:2 * m] * Xc
  if free_E:
    T = np.concatenate([T, np.broadcast_to(theta[:, None, -1:], (R, n, 1))], -1)
  elif log_fix_E is not None:
    T = np.concatenate([T, np.full((R, n, 1), log_fix_E)], -1)
  mx = T.max(-1, keepdims=True)
  ex = np.exp(T - mx)
  tot = ex.sum(-1, keepdims=True)
  r = mx[..., 0] + np.log(tot[..., 0]) - y
  f = huber(r, delta).sum(-1) / delta ** 2
  if not jac:
    return f, r, None
  P = ex / tot  # d LSE / d term
  J = np.empty((R, n, theta.shape[1]))
  J[..., :m] = P[..., :m]
  J[..., m:2 * m] = -P[..., :m] * Xc
  if free_E:
    J[..., -1] = P[..., m]
  return f, r, J


def _batch_problem(fit: FitResult, idx_RxN, y_RxN):
  """(evaluate(theta, rows, jac), lo (R, p), hi (R, p)) with each resample's own bounds, as _make_model sets them
  (power law / Chinchilla only)."""
  R = len(y_RxN)
  Xc = fit._logX[idx_RxN] - fit._centre  # (R, n, m)
  m = Xc.shape[-1]
  fix_E = fit.fixed.get("E")
  free = fix_E is None
  log_fix = math.log(fix_E) if (not free and fix_E > 0) else None
  lo = np.concatenate([np.full((R, m), -np.inf), np.full((R, m), EXPONENT_BOUNDS[0])], 1)
  hi = np.concatenate([np.full((R, m), np.inf), np.full((R, m), EXPONENT_BOUNDS[1])], 1)
  if free:
    e_hi = y_RxN.min(1)
    lo, hi = np.concatenate([lo, (e_hi - LOG_E_RANGE)[:, None]], 1), np.concatenate([hi, e_hi[:, None]], 1)

  def evaluate(theta, rows, jac=True):
    return _batch_eval_lse(theta, Xc[rows], y_RxN[rows], m, free, log_fix, fit.delta, jac)
  return evaluate, lo, hi


def _irls_step(theta, r, J, g_scale, lo, hi, delta):
  """(step (R, p), projected gradient (R, p)): the reweighted Gauss-Newton step, active bounds held fixed."""
  p = theta.shape[1]
  psi = np.clip(r, -delta, delta) * g_scale
  g = np.einsum("rn,rnp->rp", psi, J)
  w = g_scale * np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))  # ψ(r)/r: 1/δ² inside, 1/(δ|r|) outside
  B = np.einsum("rn,rnp,rnq->rpq", w, J, J)
  fixed = ((theta <= lo + 1e-12) & (g > 0)) | ((theta >= hi - 1e-12) & (g < 0))
  free = ~fixed
  eye = np.eye(p)
  diag = np.einsum("rpp->rp", B)
  Bf = B * free[:, :, None] * free[:, None, :] + eye * fixed[:, None, :]
  Bf = Bf + eye * (1e-10 * diag + 1e-30)[:, None, :]  # keeps singular blocks solvable
  with np.errstate(all="ignore"):
    step = -np.linalg.solve(Bf, (g * free)[..., None])[..., 0]
  return np.where(np.isfinite(step), step, 0.0), g * free


def _batch_refit(fit: FitResult, idx_RxN, y_RxN):
  """Refits every resample from the point fit at once. -> (theta (R, p), certified (R,) bool)."""
  evaluate, lo, hi = _batch_problem(fit, idx_RxN, y_RxN)
  R = len(y_RxN)
  d = fit.delta
  g_scale = 1.0 / d ** 2
  theta = np.clip(np.tile(fit._theta, (R, 1)), lo, hi)
  with np.errstate(all="ignore"):
    f, r, J = evaluate(theta, np.arange(R))
    active = np.isfinite(f)
    certified = np.zeros(R, bool)
    for _ in range(_BATCH_MAX_ITER):
      rows = np.flatnonzero(active)
      if not len(rows):
        break
      th = theta[rows]
      step, g = _irls_step(th, r[rows], J[rows], g_scale, lo[rows], hi[rows], d)
      small = np.abs(step).max(1) < _BATCH_STEP_TOL
      certified[rows[small]] = np.abs(g[small]).max(1) <= _BATCH_GRAD_TOL
      active[rows[small]] = False
      keep = ~small
      rows, th, step, g = rows[keep], th[keep], step[keep], g[keep]
      if not len(rows):
        break
      f0 = f[rows]
      new_th = th.copy()
      pending = np.ones(len(rows), bool)
      for t in _BATCH_HALVINGS:
        if not pending.any():
          break
        sub = np.flatnonzero(pending)
        cand = np.clip(th[sub] + t * step[sub], lo[rows[sub]], hi[rows[sub]])
        fc = evaluate(cand, rows[sub], jac=False)[0]
        ok = fc <= f0[sub] + 1e-4 * np.einsum("rp,rp->r", g[sub], cand - th[sub])
        new_th[sub[ok]] = cand[ok]
        pending[sub[ok]] = False
      active[rows[pending]] = False  # no descent found: leave it to L-BFGS-B (not certified)
      upd = rows[~pending]
      theta[upd] = new_th[~pending]
      f[upd], r[upd], J[upd] = evaluate(theta[upd], upd)
  return theta, certified


# ---------------------------------------------------------------------------------------------------------
# Power law vs logistic step
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ModelChoice:
  """winner: 'powerlaw' or 'logistic'; errors: RMS log-loss error on held-out sizes; fits on all data."""

  winner: str
  errors: dict[str, float]
  n_folds: int
  fits: dict[str, FitResult] = dataclasses.field(repr=False)


def choose_model(N, L, *, fix_E=None, delta=DEFAULT_DELTA, n_starts=N_STARTS) -> ModelChoice:
  """Leave-one-size-out choice between the power law and the logistic step (ties go to the power law)."""
  L = _check("loss", L)
  N = _check("N", N, len(L))
  sizes = np.unique(N)
  need = max(4, MIN_SIZES_FREE_E if fix_E is None else 2) + 1
  if len(sizes) < need:
    raise FitError(f"leave-one-size-out needs >= {need} distinct sizes, got {len(sizes)}; add sizes"
                   + (" or fix E" if fix_E is None else ""))
  errs = {"powerlaw": [], "logistic": []}
  for s in sizes:
    held = N == s
    fits = {"powerlaw": fit_powerlaw(N[~held], L[~held], fix_E=fix_E, delta=delta, n_starts=n_starts),
            "logistic": fit_logistic(N[~held], L[~held], delta=delta, n_starts=n_starts)}
    for k, f in fits.items():
      errs[k].append(np.log(f.predict(N[held])) - np.log(L[held]))
  errors = {k: float(np.sqrt(np.mean(np.concatenate(v) ** 2))) for k, v in errs.items()}
  winner = "logistic" if errors["logistic"] < errors["powerlaw"] else "powerlaw"
  full = {"powerlaw": fit_powerlaw(N, L, fix_E=fix_E, delta=delta, n_starts=n_starts),
          "logistic": fit_logistic(N, L, delta=delta, n_starts=n_starts)}
  return ModelChoice(winner=winner, errors=errors, n_folds=len(sizes), fits=full)


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, no usage dump
    self.exit(2, f"error: {message} (see --help)\n")


def _column(df, name, flag, path):
  if name not in df.columns:
    raise FitError(f"column {name!r} (from {flag}) is not in {path}; it has columns: "
                   f"{', '.join(map(str, df.columns))}; pass one of those to {flag}")
  import pandas as pd
  x = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
  bad = ~np.isfinite(x)
  if bad.any():
    raise FitError(f"column {name!r} has {bad.sum()} NaN/non-numeric values (rows {np.flatnonzero(bad)[:5].tolist()}"
                   f"{', ...' if bad.sum() > 5 else ''}); drop or fill them first")
  if (x <= 0).any():
    raise FitError(f"column {name!r} has {(x <= 0).sum()} values <= 0; the fit is in log space, drop those rows")
  return x


def main(argv: Sequence[str] | None = None) -> int:
  p = _Parser(prog="python -m analysis.powerlaw", description=__doc__.split("\n\n")[0])
  p.add_argument("--csv", required=True, help="input CSV")
  p.add_argument("--n", required=True, help="column with model size N")
  p.add_argument("--loss", required=True, help="column with the loss")
  g = p.add_mutually_exclusive_group()
  g.add_argument("--d", help="column with data D (tokens): fits E + A/N^a + B/D^b")
  g.add_argument("--d_from_flops", metavar="COL", help="column with training FLOP; D = FLOP / (6 N)")
  p.add_argument("--model", choices=("powerlaw", "logistic"), default="powerlaw", help="one-variable form")
  p.add_argument("--exclude_top", type=int, default=0, metavar="K", help="drop the K highest-loss rows")
  p.add_argument("--fix_E", type=float, default=None, help="fix E to a known value instead of fitting it")
  p.add_argument("--delta", type=float, default=DEFAULT_DELTA, help="Huber delta on log-loss residuals")
  p.add_argument("--bootstrap", type=int, default=0, metavar="R", help="bootstrap resamples for CIs")
  p.add_argument("--seed_col", help="column with the run seed (bootstrap resamples seeds within each size)")
  p.add_argument("--ci", type=float, default=0.95, help="CI level")
  p.add_argument("--seed", type=int, default=0, help="bootstrap RNG seed")
  p.add_argument("--no_progress", action="store_true", help="no progress bar on stderr")
  a = p.parse_args(argv)
  if not (a.delta > 0 and math.isfinite(a.delta)):
    p.error(f"--delta {a.delta} must be a number > 0 (the Huber threshold on log-loss residuals)")

  def body() -> int:
    print(json.dumps(_run_cli(a), sort_keys=True))
    return 0

  return cli.guarded(body, bad_input=(FitError,), then="fit again")


def _run_cli(a):
  import pandas as pd

  if not os.path.isfile(a.csv):
    raise FitError(f"--csv {a.csv}: no such file; pass the path of an existing CSV")
  try:
    df = pd.read_csv(a.csv)
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise FitError(f"--csv {a.csv}: not a readable CSV ({str(e).splitlines()[0]}); fix the file") from None
  if a.model == "logistic" and (a.d or a.d_from_flops or a.fix_E is not None):
    raise FitError("--model logistic takes neither --d/--d_from_flops nor --fix_E; drop them")
  if a.bootstrap < 0 or a.exclude_top < 0:
    raise FitError("--bootstrap and --exclude_top must be >= 0")
  N = _column(df, a.n, "--n", a.csv)
  L = _column(df, a.loss, "--loss", a.csv)
  D = None
  if a.d:
    D = _column(df, a.d, "--d", a.csv)
  elif a.d_from_flops:
    D = _column(df, a.d_from_flops, "--d_from_flops", a.csv) / (6.0 * N)
  seeds = None
  if a.seed_col:
    if a.seed_col not in df.columns:
      raise FitError(f"column {a.seed_col!r} (from --seed_col) is not in {a.csv}; it has columns: "
                     f"{', '.join(map(str, df.columns))}")
    if df[a.seed_col].isna().any():
      raise FitError(f"column {a.seed_col!r} has {int(df[a.seed_col].isna().sum())} empty values; fill them")
    seeds = df[a.seed_col].to_numpy()
  keep = np.ones(len(L), bool)
  if a.exclude_top:
    if a.exclude_top >= len(L):
      raise FitError(f"--exclude_top {a.exclude_top} would drop all {len(L)} rows; pass a smaller K")
    keep[np.argsort(-L, kind="stable")[:a.exclude_top]] = False
  sel = lambda x: None if x is None else x[keep]
  kw = dict(delta=a.delta, seeds=sel(seeds), bootstrap=a.bootstrap, level=a.ci, seed=a.seed,
            progress=not a.no_progress)
  if a.model == "logistic":
    fit = fit_logistic(N[keep], L[keep], **kw)
  elif D is None:
    fit = fit_powerlaw(N[keep], L[keep], fix_E=a.fix_E, **kw)
  else:
    fit = fit_chinchilla(N[keep], D[keep], L[keep], fix_E=a.fix_E, **kw)
  out = fit.to_dict()
  out["n_excluded"] = int((~keep).sum())
  return out


if __name__ == "__main__":
  sys.exit(main())
