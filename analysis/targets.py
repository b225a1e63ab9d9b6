"""Parametrisations that make one quantity of a fitted curve a coordinate, for profile intervals (profile.py).

Power law log L̂ = log(E + exp(c − α·X)), X = log N − centre, c = log A − α·centre. With ψ the quantity and φ the
nuisance refitted for each ψ:
  alpha      ψ = α        φ = (c, E)
  E          ψ = E        φ = (c, α)
  A          ψ = log A    φ = (α, E)      c = ψ − α·centre
  N*         ψ = log N*   φ = (α, E)      A = (t(E) − E)·N*^α, so the curve passes t at N* (needs E < t(E))
  L̂(N0)      ψ = log L̂    φ = (α, E)      c = log(e^ψ − E) + α·X0
(E drops out of φ when it is fixed.) Logistic step L̂ = lo + span·σ(−k(X − mc)):
  L_lo, k    ψ = lo or k, φ = the other three;  L_hi: ψ = lo + span, φ = (lo, k, mc);  N0: ψ = mc + centre
  N*         ψ = log N*   φ = (lo, span, k)   mc = X* + logit(q)/k, q = (t(lo) − lo)/span ∈ (0, 1)
  L̂(N0)      likewise with the curve's value in place of the threshold.
A threshold t(floor) = t0 + slope·floor is fixed (slope 0) or a fraction of the way from chance to the fitted
floor (t0 = (1 − frac)·chance, slope = frac).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from scipy import special

from analysis import fitcore
from analysis.fitresult import FitResult

PARAMS = {"powerlaw": ("E", "A", "alpha"), "logistic": ("L_lo", "L_hi", "k", "N0")}
N_STAR_RANGE = math.log(1e4)  # N* is searched from 1e-4 × the smallest to 1e4 × the largest size
LOG_RANGE = 50.0  # search range of unbounded log-scale parameters (A, L̂) about their estimate


@dataclasses.dataclass(frozen=True)
class Threshold:
  """t(floor) = t0 + slope·floor, in fit units (loss, or error = 1 − accuracy)."""

  t0: float
  slope: float = 0.0

  def at(self, floor):
    return self.t0 + self.slope * np.asarray(floor, dtype=float)

  @property
  def floor_max(self) -> float:
    """The floor at and above which the curve never gets down to t(floor)."""
    return self.t0 / (1.0 - self.slope)


@dataclasses.dataclass
class Target:
  """One quantity ψ in its own parametrisation. yhat(ψ (B,), φ (B, Q)) -> log L̂ (B, n)."""

  name: str
  psi_hat: float
  phi_hat: np.ndarray
  yhat: Callable
  lo: np.ndarray
  hi: np.ndarray
  psi_lo: float
  psi_hi: float
  log_scale: bool = False
  limits: tuple[float, float] = (-math.inf, math.inf)  # reported for an open end (lower, upper)
  default_width: float = 0.1
  bound_fn: Callable | None = None  # ψ (B,) -> (lo (B, Q), hi (B, Q)) where the box depends on ψ
  feasible_fn: Callable | None = None  # (ψ, φ) -> φ moved inside a constraint that is not a box

  def bounds(self, psi_B):
    if self.bound_fn is not None:
      return self.bound_fn(psi_B)
    B = len(psi_B)
    return np.tile(self.lo, (B, 1)), np.tile(self.hi, (B, 1))

  def feasible(self, psi_B, phi):
    lo, hi = self.bounds(psi_B)
    phi = np.clip(phi, lo, hi)
    return self.feasible_fn(psi_B, phi) if self.feasible_fn is not None else phi

  def report(self, v, is_open, side):
    if is_open:
      return self.limits[0] if side < 0 else self.limits[1]
    return math.exp(v) if self.log_scale else v


# ---------------------------------------------------------------------------------------------------------
# Power law
# ---------------------------------------------------------------------------------------------------------
class _PL:
  def __init__(self, fit: FitResult):
    self.X = fit._logX[:, 0] - fit._centre[0]
    self.xc = float(fit._centre[0])
    self.fix_E = fit.fixed.get("E")
    self.c, self.alpha = float(fit._theta[0]), float(fit._theta[1])
    self.E = float(fit.params["E"])
    self.E_hi = math.exp(float(fit._y.min()) + fit._e_margin)
    self.a_lo, self.a_hi = fitcore.POWERLAW_EXPONENT_BOUNDS
    self.x_lo, self.x_hi = float(fit._logX[:, 0].min()), float(fit._logX[:, 0].max())

  def y(self, c, alpha, E):
    with np.errstate(all="ignore"):
      t = c[:, None] - alpha[:, None] * self.X[None]
      return t if E is None else np.logaddexp(np.log(E)[:, None], t)

  def target(self, name, psi_hat, mapping, *, e_max=None, **kw):
    """mapping(ψ, α, E) -> c; φ = (α, E) or (α,)."""
    free = self.fix_E is None
    e_max = self.E_hi if e_max is None else e_max
    lo = np.array([self.a_lo, 0.0] if free else [self.a_lo])
    hi = np.array([self.a_hi, e_max] if free else [self.a_hi])
    phi_hat = np.array([self.alpha, min(self.E, e_max * (1 - 1e-6))] if free else [self.alpha])

    def yhat(psi, phi):
      a = phi[:, 0]
      E = phi[:, 1] if free else np.full(len(phi), self.fix_E)
      return self.y(mapping(psi, a, E), a, E if (free or self.fix_E > 0) else None)
    return Target(name, psi_hat, phi_hat, yhat, lo, hi, **kw)


def _pl_parameter(fit, name):
  m = _PL(fit)
  free = m.fix_E is None
  if name == "alpha":
    def yhat(psi, phi):
      return m.y(phi[:, 0], psi, phi[:, 1] if free else (np.full(len(phi), m.fix_E) if m.fix_E > 0 else None))
    return Target("alpha", m.alpha, np.array([m.c, m.E] if free else [m.c]), yhat,
                  np.array([-np.inf, 0.0] if free else [-np.inf]), np.array([np.inf, m.E_hi] if free else [np.inf]),
                  m.a_lo, m.a_hi, limits=(m.a_lo, m.a_hi), default_width=0.1)
  if name == "E":
    return Target("E", m.E, np.array([m.c, m.alpha]), lambda psi, phi: m.y(phi[:, 0], phi[:, 1], psi),
                  np.array([-np.inf, m.a_lo]), np.array([np.inf, m.a_hi]), 0.0, m.E_hi, limits=(0.0, m.E_hi),
                  default_width=0.05 * m.E + 1e-3)
  if name == "A":
    a_hat = m.c + m.alpha * m.xc
    return m.target("A", a_hat, lambda psi, a, E: psi - a * m.xc, psi_lo=a_hat - LOG_RANGE,
                    psi_hi=a_hat + LOG_RANGE, log_scale=True, limits=(0.0, math.inf), default_width=0.2)
  raise KeyError(name)


def _pl_n_star(fit, thr: Threshold):
  m = _PL(fit)
  if m.fix_E is not None and not float(thr.at(m.fix_E)) > m.fix_E:
    return None
  n_hat = crossing_of("powerlaw", fit.params, thr)
  e_max = min(m.E_hi, thr.floor_max * (1 - 1e-9))
  with np.errstate(divide="ignore"):
    mapping = lambda psi, a, E: np.log(thr.at(E) - E) + a * (psi - m.xc)
  return m.target("n_star", math.log(n_hat) if 0 < n_hat < math.inf else math.inf, mapping, e_max=e_max,
                  psi_lo=m.x_lo - N_STAR_RANGE, psi_hi=m.x_hi + N_STAR_RANGE, log_scale=True,
                  limits=(0.0, math.inf), default_width=0.3)


def _pl_prediction(fit, x0):
  m = _PL(fit)
  y_hat = float(np.log(fit.predict([math.exp(x0)]))[0])
  X0 = x0 - m.xc
  with np.errstate(all="ignore"):
    mapping = lambda psi, a, E: np.log(np.exp(psi) - E) + a * X0
  t = m.target("L", y_hat, mapping, psi_lo=y_hat - LOG_RANGE, psi_hi=y_hat + LOG_RANGE, log_scale=True,
               limits=(0.0, math.inf), default_width=0.05)
  if m.fix_E is None:
    def bound_fn(psi):
      B = len(psi)
      hi = np.tile(t.hi, (B, 1))
      hi[:, 1] = np.minimum(m.E_hi, np.exp(psi) * (1 - 1e-9))
      return np.tile(t.lo, (B, 1)), hi
    t.bound_fn = bound_fn
  else:
    t.psi_lo = max(t.psi_lo, math.log(max(m.fix_E, 1e-300)) + 1e-12)
  return t


# ---------------------------------------------------------------------------------------------------------
# Logistic step
# ---------------------------------------------------------------------------------------------------------
class _Logistic:
  def __init__(self, fit: FitResult):
    self.X = fit._logX[:, 0] - fit._centre[0]
    self.xc = float(fit._centre[0])
    self.theta = np.array(fit._theta, dtype=float)
    model = fitcore.make_model("logistic", fit._logX, fit._y, fit._centre, None, fit.delta, fit._x_range)
    self.lo_b, self.hi_b = fitcore.box(model)
    self.x_lo, self.x_hi = float(fit._logX[:, 0].min()), float(fit._logX[:, 0].max())

  def y(self, lo, span, k, mc):
    with np.errstate(all="ignore"):
      return np.log(lo[:, None] + span[:, None] * special.expit(-k[:, None] * (self.X[None] - mc[:, None])))

  def through(self, name, psi_hat, level_of, x_of, **kw):
    """Target whose curve passes level_of(ψ, lo) at X = x_of(ψ): φ = (lo, span, k), mc solved for."""
    def mc(psi, phi):
      with np.errstate(all="ignore"):
        q = (level_of(psi, phi[:, 0]) - phi[:, 0]) / phi[:, 1]
        q = np.where((q > 0) & (q < 1), q, np.nan)
        return x_of(psi) + special.logit(q) / phi[:, 2]

    def yhat(psi, phi):
      return self.y(phi[:, 0], phi[:, 1], phi[:, 2], mc(psi, phi))

    def feasible(psi, phi):
      phi = phi.copy()
      lvl = level_of(psi, phi[:, 0])
      bad = ~(phi[:, 0] < lvl)
      phi[bad, 0] = np.maximum(self.lo_b[0], 0.5 * np.minimum(phi[bad, 0], np.abs(lvl[bad])))
      lvl = level_of(psi, phi[:, 0])
      phi[:, 1] = np.maximum(phi[:, 1], 1.5 * (lvl - phi[:, 0]))
      return phi
    return Target(name, psi_hat, self.theta[:3].copy(), yhat, self.lo_b[:3], self.hi_b[:3],
                  feasible_fn=feasible, log_scale=True, limits=(0.0, math.inf), **kw)


def _logistic_parameter(fit, name):
  m = _Logistic(fit)
  lo, span, k, mc = m.theta
  lb, hb = m.lo_b, m.hi_b
  if name == "L_lo":
    return Target("L_lo", lo, m.theta[1:].copy(), lambda psi, p: m.y(psi, p[:, 0], p[:, 1], p[:, 2]), lb[1:],
                  hb[1:], lb[0], hb[0], limits=(lb[0], hb[0]), default_width=0.05 * lo + 1e-3)
  if name == "k":
    return Target("k", k, m.theta[[0, 1, 3]].copy(), lambda psi, p: m.y(p[:, 0], p[:, 1], psi, p[:, 2]),
                  lb[[0, 1, 3]], hb[[0, 1, 3]], lb[2], hb[2], limits=(lb[2], hb[2]), default_width=0.3 * k)
  if name == "N0":
    return Target("N0", mc + m.xc, m.theta[:3].copy(), lambda psi, p: m.y(p[:, 0], p[:, 1], p[:, 2], psi - m.xc),
                  lb[:3], hb[:3], lb[3] + m.xc, hb[3] + m.xc, log_scale=True,
                  limits=(math.exp(lb[3] + m.xc), math.exp(hb[3] + m.xc)), default_width=0.2)
  if name == "L_hi":
    phi_hat = np.array([lo, k, mc])
    t = Target("L_hi", lo + span, phi_hat, lambda psi, p: m.y(p[:, 0], psi - p[:, 0], p[:, 1], p[:, 2]),
               lb[[0, 2, 3]], hb[[0, 2, 3]], lb[0], hb[0] + hb[1], limits=(lb[0], hb[0] + hb[1]),
               default_width=0.05 * (lo + span))

    def bound_fn(psi):
      B = len(psi)
      lo_, hi_ = np.tile(t.lo, (B, 1)), np.tile(t.hi, (B, 1))
      hi_[:, 0] = np.minimum(hi_[:, 0], psi)
      return lo_, hi_
    t.bound_fn = bound_fn
    return t
  raise KeyError(name)


def _logistic_n_star(fit, thr: Threshold):
  m = _Logistic(fit)
  n_hat = crossing_of("logistic", fit.params, thr)
  return m.through("n_star", math.log(n_hat) if 0 < n_hat < math.inf else math.inf,
                   lambda psi, lo: thr.at(lo), lambda psi: psi - m.xc,
                   psi_lo=m.x_lo - N_STAR_RANGE, psi_hi=m.x_hi + N_STAR_RANGE, default_width=0.3)


def _logistic_prediction(fit, x0):
  m = _Logistic(fit)
  y_hat = float(np.log(fit.predict([math.exp(x0)]))[0])
  return m.through("L", y_hat, lambda psi, lo: np.exp(psi), lambda psi: x0 - m.xc + 0 * psi,
                   psi_lo=y_hat - LOG_RANGE, psi_hi=y_hat + LOG_RANGE, default_width=0.05)


# ---------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------
def parameter(fit: FitResult, name: str) -> Target:
  return (_pl_parameter if fit.method == "powerlaw" else _logistic_parameter)(fit, name)


def n_star_target(fit: FitResult, thr: Threshold) -> Target | None:
  """The N* parametrisation, or None when a fixed floor rules out any crossing."""
  return (_pl_n_star if fit.method == "powerlaw" else _logistic_n_star)(fit, thr)


def prediction_target(fit: FitResult, x0: float) -> Target:
  """log L̂ at log N = x0."""
  return (_pl_prediction if fit.method == "powerlaw" else _logistic_prediction)(fit, x0)


def crossing_of(method, params, thr: Threshold):
  """N where the curve falls to t(floor): inf if it never gets that low, nan if it is below at every N.
  params: floats or (R,) arrays of draws."""
  p = {k: np.asarray(v, dtype=float) for k, v in params.items()}
  with np.errstate(all="ignore"):
    if method == "logistic":
      lo, hi = p["L_lo"], p["L_hi"]
      t = thr.at(lo)
      q = np.clip((t - lo) / (hi - lo), 1e-300, 1 - 1e-16)
      n = p["N0"] * np.exp(-special.logit(q) / p["k"])
      n = np.where(t <= lo, np.inf, np.where(t >= hi, np.nan, n))
    else:
      gap = thr.at(p["E"]) - p["E"]
      n = np.where(gap > 0, np.exp((np.log(p["A"]) - np.log(np.where(gap > 0, gap, 1.0))) / p["alpha"]), np.inf)
  return n if n.ndim else float(n)


def no_cross_boundary(fit: FitResult, thr: Threshold):
  """(floor target, floor value where crossing stops, crosses at the estimate) or None (fixed floor)."""
  if fit.method == "powerlaw":
    if "E" in fit.fixed:
      return None
    t = parameter(fit, "E")
  else:
    t = parameter(fit, "L_lo")
  return t, thr.floor_max, t.psi_hat < thr.floor_max
