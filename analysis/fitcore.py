"""The fitted laws, their objective and the multi-start solver; `FitResult` (a point fit, CIs added later).

Models (L is a loss, or any positive quantity that falls with size N and data D):
  powerlaw    L(N)    = E + A·N^-α          log L̂ = LSE(a − α·log N, e)
  chinchilla  L(N, D) = E + A/N^α + B/D^β    log L̂ = LSE(a − α·log N, b − β·log D, e)
  logistic    L(N)    = L_lo + (L_hi − L_lo)·σ(−k·(log N − log N0))   for tasks that switch on abruptly
with a = log A, b = log B, e = log E. Objective on log residuals r = log L̂ − log L: Σ Huber_δ(r) (δ = 1e-3,
Epoch's Chinchilla choice: nearly L1) or, with delta=None, least squares Σ r²/2 (the Gaussian likelihood of
log-normal seed noise, which the per-task fits and their profile intervals use). Minimised by L-BFGS-B with
analytic gradients from the best points of a grid scored in one vectorised pass.

Bounds. α, β ∈ EXPONENT_BOUNDS (the one-variable power law: POWERLAW_EXPONENT_BOUNDS, wide enough for curves that
flatten inside the sizes). The floor E is free in [≈0, min L · exp(margin)] with margin = E_NOISE_SCALES seed-noise
scales of log L (pooled between seeds of a size, or the residual scale without replicates): noise puts points
below the true floor, so a bound at min L (the old rule) binds and biases E and α low on any curve that reaches
its floor inside the sizes. A point more than E_NOISE_SCALES noise scales below E is implausible, so the margin
never binds at the truth. Or E is fixed by the caller (a known Bayes floor). A fit that ends on a bound lists the
parameter in `at_bound`.
"""

from __future__ import annotations

import contextlib
import itertools
import math

import numpy as np
from scipy import optimize, special

from analysis.fitresult import FitResult
from scaling.core.errors import FitError

try:
  from threadpoolctl import threadpool_limits
except ImportError:  # optional; without it fits can run 5-15x slower on a busy 2-core machine
  threadpool_limits = None

DEFAULT_DELTA = 1e-3
EXPONENT_BOUNDS = (0.01, 2.0)
POWERLAW_EXPONENT_BOUNDS = (0.01, 4.0)
# log E may not reach −inf; E = min(L)·e^-20 ≈ 2e-9·min(L) is zero for every practical purpose.
LOG_E_RANGE = 20.0
E_NOISE_SCALES = 5.0
E_MIN_MARGIN = 1e-3  # in log L: noise-free data still get a little room above min L
LOGISTIC_K_BOUNDS = (0.05, 50.0)  # per unit of log N; 50 is a step for any ladder spacing
MIN_SIZES_FREE_E = 5
N_STARTS = 12  # L-BFGS-B runs from the best grid points; more buys nothing on the data we tried
_BOUND_TOL = 1e-6
_LBFGS_OPTIONS = dict(maxiter=20_000, maxfun=40_000, ftol=1e-14, gtol=1e-10, maxls=50)
# Bootstrap refits only feed percentiles, where 1e-6 relative precision is plenty: ~20% fewer evaluations.
_BOOT_OPTIONS = dict(_LBFGS_OPTIONS, ftol=1e-10, gtol=1e-7)
PARAM_NAMES = {"powerlaw": ("E", "A", "alpha"), "chinchilla": ("E", "A", "alpha", "B", "beta"),
               "logistic": ("L_lo", "L_hi", "k", "N0")}


def huber(r, delta):
  """ρ_δ(r); delta None or inf: r²/2 (least squares)."""
  if delta is None or not math.isfinite(delta):
    return 0.5 * r * r
  a = np.abs(r)
  return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def psi(r, delta):
  """ρ_δ'(r): the residual clipped at ±δ (the residual itself for least squares)."""
  return r if delta is None or not math.isfinite(delta) else np.clip(r, -delta, delta)


def objective_scale(delta):
  """Divisor that keeps the objective O(1..1e5) for L-BFGS-B's tolerances: δ² (Huber) or DEFAULT_DELTA²."""
  return delta * delta if delta is not None and math.isfinite(delta) else DEFAULT_DELTA ** 2


# ---------------------------------------------------------------------------------------------------------
# Models. Each works in internal coordinates where log N (log D) is centred on the data, so that the
# intercept and the exponent are nearly uncorrelated: this is what lets L-BFGS-B converge to ~1e-10.
# ---------------------------------------------------------------------------------------------------------
class _LSEModel:
  """powerlaw / chinchilla. θ = [c_1..c_m, s_1..s_m, (e)], c_j = a_j − s_j·centre_j."""

  def __init__(self, logX_NxM, y_N, *, centre_M, fix_E, delta, e_margin=0.0):
    self.Xc = logX_NxM - centre_M
    self.centre = centre_M
    self.y = y_N
    self.m = logX_NxM.shape[1]
    self.method = "powerlaw" if self.m == 1 else "chinchilla"
    self.fix_E = fix_E
    self.free_E = fix_E is None
    self.delta = delta
    self.scale = objective_scale(delta)
    self.p = 2 * self.m + int(self.free_E)
    self._buf = np.empty((len(y_N), self.m + int(self.free_E or fix_E > 0)))
    if not self.free_E and fix_E > 0:
      self._buf[:, self.m] = math.log(fix_E)
    e_hi = float(np.min(y_N)) + e_margin
    exp_bounds = POWERLAW_EXPONENT_BOUNDS if self.m == 1 else EXPONENT_BOUNDS
    self.bounds = [(None, None)] * self.m + [exp_bounds] * self.m
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
        out.append(huber(r, self.delta).sum(-1) / self.scale)
    return np.concatenate(out)

  def value_grad(self, theta):
    # Hand-rolled LSE (scipy's logsumexp costs ~10x more on small arrays; this runs ~10^5 times per bootstrap).
    m = self.m
    T = self._buf
    T[:, :m] = theta[:m] - self.Xc * theta[m:2 * m]
    if self.free_E:
      T[:, m] = theta[-1]
    mx = T.max(1, keepdims=True)
    ex = np.exp(T - mx)
    tot = ex.sum(1)
    r = mx[:, 0] + np.log(tot) - self.y
    gr = psi(r, self.delta) / (tot * self.scale)
    gw = ex * gr[:, None]  # (n, terms): d objective / d term
    g = np.empty(self.p)
    g[:m] = gw[:, :m].sum(0)
    g[m:2 * m] = -(gw[:, :m] * self.Xc).sum(0)
    if self.free_E:
      g[-1] = gw[:, m].sum()
    return float(huber(r, self.delta).sum() / self.scale), g

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
    s_vals = (np.array([0.01, 0.1, 0.25, 0.4, 0.7, 1.0, 1.5, 2.0, 3.0]) if self.m == 1 else
              np.array([0.05, 0.2, 0.35, 0.6, 1.0, 1.7]))
    axes = [c_vals] * self.m + [s_vals] * self.m
    if self.free_E:
      e_min = float(np.min(self.y))
      axes.append(e_min + np.log([1e-8, 0.3, 0.6, 0.85, 0.95, 1.0]))
    return np.array(list(itertools.product(*axes)), dtype=float)


class _LogisticModel:
  """θ = [L_lo, span = L_hi − L_lo, k, mc = log N0 − centre]."""

  method = "logistic"

  def __init__(self, logX_NxM, y_N, *, centre_M, delta, x_range=None, **_):
    self.x = logX_NxM[:, 0] - centre_M[0]
    self.centre = centre_M
    self.y = y_N
    self.delta = delta
    self.scale = objective_scale(delta)
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
      v = huber(r, self.delta).sum(-1) / self.scale
    return np.where(np.isfinite(v), v, np.inf)

  def value_grad(self, theta):
    lhat, s = self._lhat(theta)
    lo, span, k, mc = theta
    r = np.log(lhat) - self.y
    gr = psi(r, self.delta) / lhat / self.scale
    ds = s * (1 - s)
    g = np.array([gr.sum(), (gr * s).sum(), -(gr * span * ds * (self.x - mc)).sum(), (gr * span * ds * k).sum()])
    return float(huber(r, self.delta).sum() / self.scale), g

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
    # A plateau above the last points (a staircase whose later steps the step should not chase) needs starts at
    # the data's lower quantiles as well as below the minimum.
    los = np.unique(np.concatenate([lmin * np.array([0.3, 0.8, 0.97]), np.exp(np.quantile(self.y, [0.25, 0.5]))]))
    spans = max(lmax - lmin, 1e-3 * lmax) * np.array([0.5, 1.0, 1.5, 3.0])
    ks = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 40.0])
    mcs = np.linspace(self.x.min(), self.x.max(), 9)
    return np.array(list(itertools.product(los, spans, ks, mcs)), dtype=float)


def one_blas_thread():
  # L-BFGS-B makes many tiny BLAS calls; OpenBLAS waking its threads for each made refits 15x slower on a
  # loaded 2-core machine (measured), so fits hold BLAS to one thread.
  return threadpool_limits(1, user_api="blas") if threadpool_limits else contextlib.nullcontext()


def box(model):
  lo = np.array([-np.inf if b[0] is None else b[0] for b in model.bounds])
  hi = np.array([np.inf if b[1] is None else b[1] for b in model.bounds])
  return lo, hi


def lbfgsb(model, x0, options=None):
  x0 = np.clip(x0, *box(model))  # a warm start may sit outside a resample's E bound
  with np.errstate(all="ignore"):
    return optimize.minimize(model.value_grad, x0, jac=True, method="L-BFGS-B", bounds=model.bounds,
                             options=options or _LBFGS_OPTIONS)


def solve(model, n_starts=N_STARTS):
  """Scores the whole grid at once, runs L-BFGS-B from the n_starts best points, polishes the winner."""
  grid = np.clip(model.grid(), *box(model))
  vals = model.batch_value(grid)
  vals = np.where(np.isfinite(vals), vals, np.inf)
  starts = grid[np.argsort(vals, kind="stable")[:n_starts]]
  best = None
  for x0 in starts:
    res = lbfgsb(model, x0)
    if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
      best = res
  if best is None:
    raise FitError("every L-BFGS-B start ended non-finite; check the data for extreme values or fix E")
  # A restart from the winner resets L-BFGS's curvature memory, which helps at the Huber kinks.
  polished = lbfgsb(model, best.x)
  return polished if polished.fun <= best.fun else best


# ---------------------------------------------------------------------------------------------------------
# Fitting one data set
# ---------------------------------------------------------------------------------------------------------
def check_array(name, x, n=None):
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


def seed_noise(logX, y) -> tuple[float, int]:
  """(std, dof) of log L between rows that share N (and D), pooled; (nan, 0) without replicates."""
  _, cond = np.unique(logX, axis=0, return_inverse=True)
  cond = cond.reshape(-1)
  ss, dof = 0.0, 0
  for c in np.unique(cond):
    yc = y[cond == c]
    if len(yc) >= 2:
      ss += float(((yc - yc.mean()) ** 2).sum())
      dof += len(yc) - 1
  return (math.sqrt(ss / dof), dof) if dof else (math.nan, 0)


def noise_std(fit: FitResult) -> float:
  """Std of log L between seeds: pooled over rows that share N (and D), or without any replicates, the
  dof-corrected residual std of the fit."""
  s, dof = seed_noise(fit._logX, fit._y)
  if dof > 0:
    return s
  D = np.exp(fit._logX[:, 1]) if fit._logX.shape[1] > 1 else None
  r = np.log(fit.predict(np.exp(fit._logX[:, 0]), D)) - fit._y
  dof = len(r) - len(fit._theta)
  if dof <= 0:
    raise FitError(f"cannot estimate seed noise: {len(r)} points and {len(fit._theta)} parameters leave no "
                   "residual dof; add seeds (>= 2 at some size) or sizes")
  return math.sqrt(float((r ** 2).sum()) / dof)


def make_model(method, logX, y, centre, fix_E, delta, x_range=None, e_margin=0.0):
  if method == "logistic":
    return _LogisticModel(logX, y, centre_M=centre, delta=delta, x_range=x_range)
  return _LSEModel(logX, y, centre_M=centre, fix_E=fix_E, delta=delta, e_margin=e_margin)


def _result(model, res, n_sizes, fix_E):
  at_bound = []
  for name, (lo, hi), v in zip(model.bound_names(), model.bounds, res.x):
    if name is None:
      continue
    if (lo is not None and v - lo <= _BOUND_TOL * max(1, abs(lo))) or (
        hi is not None and hi - v <= _BOUND_TOL * max(1, abs(hi))):
      at_bound.append(name)
  return FitResult(method=model.method, params=model.params(res.x), loss=float(res.fun) * model.scale,
                   at_bound=at_bound, n_points=len(model.y), n_sizes=n_sizes, delta=model.delta,
                   converged=bool(res.success), fixed={} if fix_E is None else {"E": float(fix_E)},
                   dof=len(model.y) - model.p, _theta=np.array(res.x))


def _check_counts(method, logX, fix_E):
  n_sizes = len(np.unique(logX[:, 0]))
  if method == "powerlaw":
    need = MIN_SIZES_FREE_E if fix_E is None else 2
    if n_sizes < need:
      hint = " (or fix E: fix_E=... / --fix_E VALUE, which needs only 2)" if fix_E is None else ""
      raise FitError(f"a {'free' if fix_E is None else 'fixed'}-E power law needs >= {need} distinct sizes, "
                     f"got {n_sizes}; add sizes{hint}")
  elif method == "chinchilla":
    need = 6 if fix_E is None else 4
    n_conditions = len(np.unique(logX, axis=0))
    if n_conditions < need or len(np.unique(logX[:, 0])) < 2 or len(np.unique(logX[:, 1])) < 2:
      raise FitError(f"the N,D law needs >= {need} distinct (N, D) pairs with >= 2 values of each, got "
                     f"{n_conditions}; add runs{'' if fix_E is not None else ' or fix E'}")
  elif method == "logistic" and n_sizes < 4:
    raise FitError(f"the logistic step needs >= 4 distinct sizes, got {n_sizes}; add sizes or fit a power law "
                   "with E fixed")
  return n_sizes


def fit_point(method, N, L, D=None, *, fix_E=None, delta=DEFAULT_DELTA, seeds=None,
              n_starts=N_STARTS) -> FitResult:
  """The point fit of `method` (powerlaw | chinchilla | logistic) to (N[, D], L), no intervals.

  delta None: least squares on log L. Without replicates, a free E's margin above min L comes from the residual
  scale of a first fit whose E is held at or below min L.
  """
  L = check_array("loss", L)
  N = check_array("N", N, len(L))
  cols = [np.log(N)] + ([np.log(check_array("D", D, len(L)))] if D is not None else [])
  logX = np.stack(cols, axis=1)
  if fix_E is not None and not (np.isfinite(fix_E) and fix_E >= 0):
    raise FitError(f"fix_E={fix_E} must be a finite number >= 0")
  n_sizes = _check_counts(method, logX, fix_E)
  if seeds is not None:
    seeds = np.asarray(seeds).reshape(-1)
    if len(seeds) != len(L):
      raise FitError(f"seeds has {len(seeds)} values but the losses have {len(L)}; pass one seed per row")
  y = np.log(L)
  centre = logX.mean(0)
  x_range = (logX[:, 0].min() - centre[0], logX[:, 0].max() - centre[0])
  margin = 0.0
  with one_blas_thread():
    if method != "logistic" and fix_E is None:
      s, _ = seed_noise(logX, y)
      if not np.isfinite(s):
        m0 = make_model(method, logX, y, centre, None, delta)
        first = _result(m0, solve(m0, n_starts), n_sizes, None)
        first._logX, first._y, first._centre = logX, y, centre
        s = noise_std(first) if first.dof > 0 else 0.0
      margin = max(E_NOISE_SCALES * s, E_MIN_MARGIN)
    model = make_model(method, logX, y, centre, fix_E, delta, x_range, margin)
    out = _result(model, solve(model, n_starts), n_sizes, fix_E)
  out._logX, out._y, out._seeds, out._centre, out._x_range, out._e_margin = logX, y, seeds, centre, x_range, margin
  out.sigma = noise_std(out) if (out.dof > 0 or seed_noise(logX, y)[1] > 0) else None
  return out
