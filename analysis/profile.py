"""Profile-likelihood intervals for the one-variable laws (power law, logistic step), for N* and for the curve.

For a quantity ψ (α, E, log A, log N*, log L̂(N0), ...) the profile objective S(ψ) is the fit's objective Σρ(r)
minimised over everything else with ψ held fixed; the statistic Λ(ψ) = 2·(S(ψ) − Ŝ)/ĉ, with ĉ the residual
scale (least squares: ĉ = RSS/(n − p), so Λ = ΔRSS/s²; Huber: the drop-in-dispersion scale Σψ²/(n−p)/mean ψ'),
and the 95% interval is {ψ : Λ(ψ) <= t²_{n−p}(0.975)}. The t calibration accounts for estimating the noise
from n − p residual dof, which is what keeps a 5-size × 2-seed fit honest; the percentile bootstrap of the
same fits under-covers there (benchmarks/fit_coverage.py prints both).

Every quantity is made a coordinate of its own parametrisation (targets.py), the others are refitted for each
value by a batched damped Gauss-Newton (`minimise`), and the interval ends are found by an outward scan from ψ̂
(quadratically spaced, widened 4x until Λ passes the critical value) and a refinement on the bracket,
interpolated in √Λ (nearly linear in ψ). An end that never passes it within the parameter's range is open: the
interval runs to the bound (α, E) or to 0/∞ (A, N*). A parameter open at both ends is flagged unidentified, and so
is a floor (E, L_lo) whose interval spans more than FLAT_FLOOR of the range the data allow it ([0, ceiling]).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from analysis import fitcore, targets
from analysis.fitresult import FitResult, percentile_interval
from scaling.core.errors import FitError

SCAN_POINTS = 12
REFINE_POINTS = 9
MAX_WIDENINGS = 8
_LM_MAX_ITER = 150
FLOORS = ("E", "L_lo")
FLAT_FLOOR = 0.5  # a floor whose interval covers more than this share of [0, its ceiling] is "not identified"


def minimise(resid, phi, lo, hi, delta, max_iter=_LM_MAX_ITER):
  """Batched damped Gauss-Newton on Σρ_δ(r). resid(phi (B, Q), rows) -> r (B, n); lo, hi (B, Q) boxes.

  Steps that leave the feasible set (non-finite residuals) are rejected like steps that go uphill, so a
  constraint that is not a box (N*'s crossing must exist) holds as long as the start satisfies it.
  -> (phi (B, Q), S (B,)): the minimiser and Σρ at it (inf where the start was infeasible).
  """
  B, Q = phi.shape
  phi = np.clip(phi, lo, hi)
  with np.errstate(all="ignore"):
    r = resid(phi, np.arange(B))
    S = fitcore.huber(r, delta).sum(1)
    S = np.where(np.isfinite(S), S, np.inf)
    lam = np.full(B, 1e-3)
    active = np.isfinite(S)
    for _ in range(max_iter):
      rows = np.flatnonzero(active)
      if not len(rows):
        break
      p, r0, l_, h_ = phi[rows], r[rows], lo[rows], hi[rows]
      h = 1e-7 * (1 + np.abs(p))
      h = np.where(p + h > h_, -h, h)  # step inward at an upper bound
      J = np.empty((len(rows), r0.shape[1], Q))
      for q in range(Q):
        pp = p.copy()
        pp[:, q] += h[:, q]
        J[:, :, q] = (resid(pp, rows) - r0) / h[:, q, None]
      w = np.ones_like(r0) if delta is None else np.minimum(1.0, delta / np.maximum(np.abs(r0), 1e-300))
      g = np.einsum("bnq,bn->bq", J, fitcore.psi(r0, delta))
      H = np.einsum("bn,bnq,bnp->bqp", w, J, J)
      free = ~(((p <= l_ + 1e-12) & (g > 0)) | ((p >= h_ - 1e-12) & (g < 0)))
      d = np.einsum("bqq->bq", H)
      A = H * free[:, :, None] * free[:, None, :] + np.eye(Q) * (~free)[:, None, :]
      A = A + np.eye(Q)[None] * (lam[rows, None] * (d + 1e-12))[:, None, :]
      step = -np.linalg.solve(A, (g * free)[..., None])[..., 0]
      step = np.where(np.isfinite(step), step, 0.0)
      cand = np.clip(p + step, l_, h_)
      rc = resid(cand, rows)
      Sc = fitcore.huber(rc, delta).sum(1)
      Sc = np.where(np.isfinite(Sc), Sc, np.inf)
      ok = Sc <= S[rows]
      small = (S[rows] - np.where(ok, Sc, S[rows]) <= 1e-10 * S[rows] + 1e-300) | (
          np.abs(cand - p).max(1) <= 1e-10 * (1 + np.abs(p).max(1)))
      upd = rows[ok]
      phi[upd], r[upd], S[upd] = cand[ok], rc[ok], Sc[ok]
      lam[rows] = np.where(ok, lam[rows] / 3, lam[rows] * 5)
      active[rows[(ok & small) | (lam[rows] > 1e10)]] = False
  return phi, S


@dataclasses.dataclass
class Calibration:
  """Ŝ, the residual scale ĉ and the critical value of Λ for one fit."""

  S_hat: float
  c_hat: float
  dof: int
  delta: float | None

  def crit(self, level):
    return stats.t.ppf(0.5 + level / 2, self.dof) ** 2

  def stat(self, S):
    return np.maximum(2.0 * (np.asarray(S) - self.S_hat) / self.c_hat, 0.0)


def calibration(fit: FitResult) -> Calibration:
  if fit.method not in ("powerlaw", "logistic"):
    raise FitError(f"profile intervals cover the one-variable laws, not {fit.method}; use bootstrap=R")
  dof = fit.n_points - len(fit._theta)
  if dof <= 0:
    raise FitError(f"{fit.n_points} points and {len(fit._theta)} parameters leave no residual dof for an "
                   "interval; add seeds or sizes")
  r = np.log(fit.predict(np.exp(fit._logX[:, 0]))) - fit._y
  S_hat = float(fitcore.huber(r, fit.delta).sum())
  inside = 1.0 if fit.delta is None else float(np.mean(np.abs(r) <= fit.delta))
  c_hat = float((fitcore.psi(r, fit.delta) ** 2).sum() / dof) / max(inside, 1.0 / len(r))
  return Calibration(S_hat=S_hat, c_hat=max(c_hat, 1e-300), dof=dof, delta=fit.delta)


def profile(t: targets.Target, fit: FitResult, values) -> np.ndarray:
  """S(ψ) at each value (ordered outward from ψ̂): the objective minimised over the nuisance, from the MLE's
  nuisance and then from the inner neighbour's solution (two Jacobi sweeps carry good starts outward)."""
  psi_B = np.asarray(values, dtype=float)
  B = len(psi_B)
  lo, hi = t.bounds(psi_B)
  resid = lambda phi, rows: t.yhat(psi_B[rows], phi) - fit._y
  start = np.broadcast_to(t.phi_hat, (B, len(t.phi_hat))).copy()
  phi, S = minimise(resid, t.feasible(psi_B, start), lo, hi, fit.delta)
  if B > 1:
    for _ in range(2):
      phi2, S2 = minimise(resid, t.feasible(psi_B, np.roll(phi, 1, axis=0)), lo, hi, fit.delta)
      better = S2 < S
      phi[better], S[better] = phi2[better], S2[better]
  return S


def _wald_se(t: targets.Target, fit: FitResult, cal: Calibration) -> float:
  """se of ψ from the Gauss-Newton curvature at the optimum (only to size the first scan)."""
  x0 = np.concatenate([[t.psi_hat], t.phi_hat])
  h = 1e-6 * (1 + np.abs(x0))
  base = t.yhat(np.array([x0[0]]), x0[None, 1:])[0]
  cols = []
  for i in range(len(x0)):
    x = x0.copy()
    x[i] += h[i]
    cols.append((t.yhat(np.array([x[0]]), x[None, 1:])[0] - base) / h[i])
  J = np.stack(cols, 1)
  if not np.all(np.isfinite(J)):
    return math.nan
  with np.errstate(all="ignore"):
    try:
      cov = cal.c_hat * np.linalg.pinv(J.T @ J)
    except np.linalg.LinAlgError:
      return math.nan
  return math.sqrt(cov[0, 0]) if np.isfinite(cov[0, 0]) and cov[0, 0] > 0 else math.nan


def _end(t, fit, cal, side, crit, w0):
  """(ψ at the crossing, open) on one side of ψ̂."""
  lim = t.psi_lo if side < 0 else t.psi_hi
  u = np.linspace(0, 1, SCAN_POINTS + 1)[1:] ** 2
  w = w0
  for _ in range(MAX_WIDENINGS):
    vals = np.clip(t.psi_hat + side * w * u, t.psi_lo, t.psi_hi)
    L = cal.stat(profile(t, fit, vals))
    above = np.flatnonzero(L > crit)
    if len(above):
      k = above[0]
      v0 = t.psi_hat if k == 0 else vals[k - 1]
      sub = np.linspace(v0, vals[k], REFINE_POINTS)
      Ls = cal.stat(profile(t, fit, sub))
      if k == 0:
        Ls[0] = 0.0
      j = np.flatnonzero(Ls > crit)
      if not len(j) or j[0] == 0:
        return float(vals[k] if not len(j) else sub[0]), False
      j = j[0]
      r0, r1 = math.sqrt(Ls[j - 1]), math.sqrt(Ls[j])
      return float(sub[j - 1] + (sub[j] - sub[j - 1]) * (math.sqrt(crit) - r0) / max(r1 - r0, 1e-300)), False
    if vals[-1] == lim:
      return float(lim), True
    w *= 4
  return float(lim), True


def interval(t: targets.Target, fit: FitResult, cal: Calibration, level=0.95):
  """((lo, hi) in ψ units, (open_lo, open_hi))."""
  crit = cal.crit(level)
  se = _wald_se(t, fit, cal)
  w0 = 2.5 * math.sqrt(crit) * se if np.isfinite(se) and se > 0 else t.default_width
  w0 = min(w0, 50.0)
  lo, lo_open = _end(t, fit, cal, -1, crit, w0)
  hi, hi_open = _end(t, fit, cal, +1, crit, w0)
  return (lo, hi), (lo_open, hi_open)


def with_profile_ci(fit: FitResult, level: float = 0.95) -> FitResult:
  """A copy of fit with profile intervals for every free parameter, ci_method 'profile', and `identified`."""
  cal = calibration(fit)
  ci, identified = {}, {}
  for name in targets.PARAMS[fit.method]:
    if name in fit.fixed:
      continue
    t = targets.parameter(fit, name)
    (lo, hi), (o_lo, o_hi) = interval(t, fit, cal, level)
    ci[name] = (t.report(lo, o_lo, -1), t.report(hi, o_hi, +1))
    identified[name] = not (o_lo and o_hi)
    if name in FLOORS:  # a floor is bounded by the data: flat when its interval spans most of [0, ceiling]
      identified[name] = bool(identified[name] and ci[name][1] - ci[name][0] < FLAT_FLOOR * t.psi_hi)
  return dataclasses.replace(fit, ci=ci, ci_level=level, ci_method="profile", identified=identified,
                             samples=None)


def n_star_interval(fit: FitResult, threshold: targets.Threshold, level: float = 0.95):
  """(N*, (lo, hi), p_cross) for the crossing of `threshold` (fit units), profile-calibrated.

  p_cross is the confidence that the curve crosses at all: T_{n−p}(z) with z the signed root of Λ at the
  no-crossing boundary (E = t for the power law, L_lo = t for the logistic step), so the upper end of the
  interval is finite exactly when p_cross > (1 + level)/2.
  """
  cal = calibration(fit)
  crit = cal.crit(level)
  n_hat = targets.crossing_of(fit.method, fit.params, threshold)
  p_cross = _p_cross(fit, cal, threshold)
  t = targets.n_star_target(fit, threshold)
  if t is None:  # fixed floor at or above the threshold: never crosses, with certainty
    return n_hat, (math.inf, math.inf), 0.0
  if np.isfinite(t.psi_hat):
    (lo, hi), (o_lo, o_hi) = interval(t, fit, cal, level)
    return n_hat, (t.report(lo, o_lo, -1), t.report(hi, o_hi, +1)), p_cross
  # No crossing at the optimum: scan the whole search range for values the data still allow.
  vals = np.linspace(t.psi_lo, t.psi_hi, 4 * SCAN_POINTS)
  ok = cal.stat(profile(t, fit, vals)) <= crit
  if not ok.any():
    return n_hat, ((math.inf, math.inf) if math.isinf(n_hat) else (0.0, 0.0)), p_cross
  lo_i, hi_i = np.flatnonzero(ok)[[0, -1]]
  # inf (never gets there): every allowed crossing is a lower bound; nan (below at every size): an upper bound.
  lo = 0.0 if lo_i == 0 or math.isnan(n_hat) else math.exp(vals[lo_i])
  hi = math.inf if hi_i == len(vals) - 1 or math.isinf(n_hat) else math.exp(vals[hi_i])
  return n_hat, (lo, hi), p_cross


def _p_cross(fit, cal, threshold) -> float:
  b = targets.no_cross_boundary(fit, threshold)
  if b is None:
    return 1.0 if np.isfinite(targets.crossing_of(fit.method, fit.params, threshold)) else 0.0
  t, boundary, crosses_at_hat = b
  if boundary < t.psi_lo or boundary > t.psi_hi:
    return 1.0 if crosses_at_hat else 0.0
  L = float(cal.stat(profile(t, fit, [boundary]))[0])
  z = math.sqrt(L) if crosses_at_hat else -math.sqrt(L)
  return float(stats.t.cdf(z, cal.dof))


def curve_band(fit: FitResult, N, level: float | None = None, n_knots: int = 9):
  """(lo, hi) of the fitted curve at sizes N: bootstrap percentiles when the fit has draws, else the profile
  interval of log L̂ at n_knots sizes across N, interpolated in log N."""
  level = level or fit.ci_level or 0.95
  N = np.atleast_1d(np.asarray(N, dtype=float))
  if fit.samples is not None:
    return percentile_interval(fit.predict_samples(N), level)
  cal = calibration(fit)
  knots = np.geomspace(N.min(), N.max(), n_knots) if N.max() > N.min() else N[:1]
  lo, hi = [], []
  for x in np.log(knots):
    t = targets.prediction_target(fit, x)
    (a, b), _ = interval(t, fit, cal, level)
    lo.append(a)
    hi.append(b)
  logN = np.log(N)
  return (np.exp(np.interp(logN, np.log(knots), lo)), np.exp(np.interp(logN, np.log(knots), hi)))
