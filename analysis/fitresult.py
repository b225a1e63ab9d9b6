"""`FitResult`: a fitted law with its data, intervals and how they were made; predictions from a parameter set."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import special

from scaling.core.errors import FitError

CI_METHODS = {
    "profile": "profile likelihood, t-calibrated: {θ: Λ(θ) <= t²(n−p)}, Λ = drop in objective over the residual "
               "scale (least squares: ΔRSS / s²)",
    "bootstrap-seeds": "bootstrap percentile interval, seeds resampled within each size",
    "bootstrap-residual": "bootstrap percentile interval, residuals of the point fit resampled (few seeds per size)",
    "bootstrap-parametric": "bootstrap percentile interval, Gaussian noise of the residual scale (one run per size)",
}


@dataclasses.dataclass
class FitResult:
  """A fitted law. params: E, A, alpha (powerlaw); + B, beta (chinchilla); L_lo, L_hi, k, N0 (logistic).

  loss: the objective Σρ(log residual) (Huber: Epoch's scale). ci maps a parameter to its (lo, hi) interval
  made by ci_method (CI_METHODS); samples holds bootstrap draws (name -> (R,) array) for bootstrap methods.
  identified: parameter -> False when its interval spans every value the bounds allow (a flat profile: the data
  do not determine it, e.g. the floor E of a curve that is still falling steeply at the largest size).
  sigma: the noise scale of log L (pooled between seeds, else the residual scale); dof: points − parameters.
  """

  method: str
  params: dict[str, float]
  loss: float
  at_bound: list[str]
  n_points: int
  n_sizes: int
  delta: float | None
  converged: bool
  fixed: dict[str, float] = dataclasses.field(default_factory=dict)
  ci: dict[str, tuple[float, float]] | None = None
  ci_level: float | None = None
  ci_method: str | None = None
  identified: dict[str, bool] = dataclasses.field(default_factory=dict)
  sigma: float | None = None
  dof: int = 0
  n_boot_failed: int = 0
  samples: dict[str, np.ndarray] | None = dataclasses.field(default=None, repr=False)
  _theta: np.ndarray | None = dataclasses.field(default=None, repr=False)
  _logX: np.ndarray | None = dataclasses.field(default=None, repr=False)
  _y: np.ndarray | None = dataclasses.field(default=None, repr=False)
  _seeds: np.ndarray | None = dataclasses.field(default=None, repr=False)
  _centre: np.ndarray | None = dataclasses.field(default=None, repr=False)
  _x_range: tuple | None = dataclasses.field(default=None, repr=False)
  _e_margin: float = dataclasses.field(default=0.0, repr=False)

  @property
  def objective(self) -> str:
    return objective_name(self.delta)

  @property
  def sizes(self) -> np.ndarray:
    return np.unique(np.exp(self._logX[:, 0]))

  def predict(self, N, D=None):
    """L̂ at sizes N (and data D for chinchilla; D=None there means D → ∞, the infinite-data curve)."""
    return predict(self.method, self.params, N, D)

  def predict_samples(self, N, D=None):
    """(R, len(N)) predictions under each bootstrap draw; needs a bootstrap first."""
    if self.samples is None:
      raise FitError("no bootstrap samples on this fit; call bootstrap(fit) or pass bootstrap=R to the fit")
    ps = {k: np.asarray(v)[:, None] for k, v in self.samples.items()}
    return predict(self.method, ps, np.atleast_1d(N), D if D is None else np.atleast_1d(D))

  def predict_interval(self, N, D=None, level=None):
    """Percentile interval (lo, hi) of the prediction at N over the bootstrap draws (profile fits: see
    analysis.profile.curve_band)."""
    level = level or self.ci_level or 0.95
    return percentile_interval(self.predict_samples(N, D), level)

  def to_dict(self):
    out = dict(self.params)
    out.update(method=self.method, loss=self.loss, at_bound=list(self.at_bound), n_points=self.n_points,
               n_sizes=self.n_sizes, delta=self.delta, objective=self.objective, converged=self.converged,
               fixed=dict(self.fixed), sigma=self.sigma, dof=self.dof, identified=dict(self.identified))
    if self.ci is not None:
      out.update(ci={k: [float(v[0]), float(v[1])] for k, v in self.ci.items()}, ci_level=self.ci_level,
                 ci_method=self.ci_method, ci_method_description=CI_METHODS.get(self.ci_method, ""))
      if self.samples is not None:
        out.update(n_bootstrap=len(next(iter(self.samples.values()))), n_boot_failed=self.n_boot_failed)
    return out


def objective_name(delta) -> str:
  return "least squares on log L" if delta is None or not math.isfinite(delta) else f"Huber(δ={delta:g}) on log L"


def percentile_interval(x_R, level, axis=0):
  """(lo, hi) percentile interval of bootstrap draws along axis.

  Quantile p sits at rank p·(R+1) (numpy's 'weibull' rule), the rank whose expected coverage is p; numpy's
  default rank p·(R−1) puts a nominal 95% interval from 40 draws at ~90% (measured), the default is fine only
  for R in the thousands.
  """
  q = 100 * (1 - level) / 2
  return (np.percentile(x_R, q, axis=axis, method="weibull"), np.percentile(x_R, 100 - q, axis=axis, method="weibull"))


def predict(method, p, N, D=None):
  """The law `method` with parameters p (floats, or arrays that broadcast against N) at sizes N."""
  logN = np.log(np.asarray(N, dtype=float))
  if method == "logistic":
    return p["L_lo"] + (p["L_hi"] - p["L_lo"]) * special.expit(-p["k"] * (logN - np.log(p["N0"])))
  out = p["E"] + np.exp(np.log(p["A"]) - p["alpha"] * logN)
  if method == "chinchilla" and D is not None:
    out = out + np.exp(np.log(p["B"]) - p["beta"] * np.log(np.asarray(D, dtype=float)))
  return out
