"""The learnability frontier: N*(f), the size at which a task of frequency f becomes learnable, and its inverse
f*(N), the frequency at which it becomes learnable at a given size.

Law: log N* = c − γ·log f (natural logs), fitted by weighted least squares on the per-frequency N* with weights
1/s_i², s_i = the log-scale half width of N*_i's interval / z. The covariance is scaled by the Birge ratio
max(1, χ²/dof): when the N* scatter about the law exceeds what their intervals explain, the excess widens every
band (and the quantile becomes t_dof); without intervals it is the plain residual-scale t fit. Frequencies whose
N* is not finite (never learned within the search range) or whose interval is open above are left out and listed.

Inverse: log f*(N) = (c − log N)/γ. Its interval inverts the law's band (Fieller): the f whose band at f holds
log N, i.e. the roots of (log N − c + γu)² = z²·(xᵀΣx + s_obs²), x = (1, −u), u = log f. Bounded when γ is
significantly non-zero; otherwise open (the law cannot say where the frontier is).

Toy (paper Prop 6): a rank-one rare feature of utility π·λ survives at width N iff π·λ >= μ_N^F, so its
critical width is N_crit(π) = 1 + #{i : μ_i^F > π·λ} — the analytic frontier drawn next to the fitted one.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from analysis import curves as curves_lib
from scaling.core.errors import FitError
from scaling.toy import theory as toy_theory

Z95 = stats.norm.ppf(0.975)


@dataclasses.dataclass
class FrequencyLaw:
  """log N* = c − γ·log f. ci: intervals of gamma and c. points: (f, N*, lo, hi) of the frequencies used."""

  gamma: float
  c: float
  ci: dict[str, tuple[float, float]] | None
  ci_level: float
  n_points: int
  resid_sd: float
  weighted: bool
  excluded: list[tuple[float, str]]
  birge: float = 1.0
  points: list[tuple[float, float, float, float]] = dataclasses.field(default_factory=list)
  _cov: np.ndarray = dataclasses.field(repr=False, default=None)
  _dof: int = dataclasses.field(repr=False, default=0)
  _s2_point: float = dataclasses.field(repr=False, default=0.0)

  def _q(self, level):
    """Quantile for the bands: normal with known (interval) variances, t when the scatter was estimated."""
    if self.weighted and self.birge <= 1.0:
      return stats.norm.ppf(0.5 + level / 2)
    return stats.t.ppf(0.5 + level / 2, self._dof) if self._dof > 0 else math.nan

  def _var(self, log_f):
    x0 = np.stack([np.ones_like(log_f), -log_f], -1)
    return np.einsum("...i,ij,...j->...", x0, self._cov, x0)

  def n_star_at(self, freq, level=None, sd_obs=0.0):
    """(N*, lo, hi) of the law at frequencies freq: the band of the law itself (sd_obs = 0), or of one new
    observation with log-sd sd_obs. Arrays in, arrays out."""
    level = level or self.ci_level
    u = np.log(np.asarray(freq, dtype=float))
    mid = self.c - self.gamma * u
    h = self._q(level) * np.sqrt(self._var(u) + sd_obs ** 2)
    return np.exp(mid), np.exp(mid - h), np.exp(mid + h)

  def predict(self, freq, level=None):
    """-> (N*, lo, hi) at an unseen frequency, a prediction interval for one task's N* (adds the scatter of
    single frequencies about the law). lo/hi are nan when the fit had no way to estimate it."""
    n, lo, hi = self.n_star_at(freq, level, math.sqrt(self._s2_point) if np.isfinite(self._s2_point) else 0.0)
    return float(n), float(lo), float(hi)

  def f_star(self, N, level=None, sd_obs=0.0):
    """(f*, lo, hi): the frequency at which the task becomes learnable at size N; lo/hi may be 0/inf (open)."""
    level = level or self.ci_level
    y = math.log(N)
    f_mid = math.exp((self.c - y) / self.gamma) if self.gamma != 0 else math.nan
    q = self._q(level)
    if not np.isfinite(q):
      return f_mid, math.nan, math.nan
    S = self._cov
    a = self.gamma ** 2 - q * q * S[1, 1]
    b = 2 * (self.gamma * (y - self.c) + q * q * S[0, 1])
    cc = (y - self.c) ** 2 - q * q * (S[0, 0] + sd_obs ** 2)
    disc = b * b - 4 * a * cc
    if a <= 0 or disc < 0:
      return f_mid, 0.0, math.inf
    r = sorted(((-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a)))
    return f_mid, math.exp(r[0]), math.exp(r[1])

  def to_dict(self):
    return {"gamma": self.gamma, "c": self.c, "ci": self.ci, "ci_level": self.ci_level, "n_points": self.n_points,
            "resid_sd": self.resid_sd, "weighted": self.weighted, "birge_ratio": self.birge,
            "excluded": self.excluded, "points": [list(p) for p in self.points],
            "band": "weighted by the N* intervals, Birge-scaled" if self.weighted else "residual-scale t"}


def _log_sd(ci, level):
  lo, hi = ci
  if not (np.isfinite(lo) and np.isfinite(hi) and lo > 0 and hi > lo):
    return math.nan
  return (math.log(hi) - math.log(lo)) / (2 * stats.norm.ppf(0.5 + level / 2))


def fit_frequency_law(freq, n_stars, *, n_star_ci=None, level=0.95) -> FrequencyLaw:
  """Fits N* ∝ f^-γ across frequencies (see the module docstring).

  n_stars: floats, or NStar-like objects with .n_star and .ci (their intervals then set the weights).
  """
  freq = np.asarray(freq, dtype=float).reshape(-1)
  items = list(n_stars)
  if len(items) != len(freq):
    raise FitError(f"{len(freq)} frequencies but {len(items)} N* values; pass one N* per frequency")
  if n_star_ci is None and items and hasattr(items[0], "ci"):
    n_star_ci = [it.ci for it in items]
  ns = np.array([getattr(it, "n_star", it) for it in items], dtype=float)
  cis = [None] * len(ns) if n_star_ci is None else list(n_star_ci)
  excluded, keep, sds = [], [], []
  for i, (f, n) in enumerate(zip(freq, ns)):
    sd = math.nan if cis[i] is None else _log_sd(cis[i], level)
    if not (np.isfinite(f) and f > 0):
      excluded.append((float(f), "frequency is not a positive number"))
    elif np.isnan(n):
      excluded.append((float(f), "learned at every size (no N* inside the sizes)"))
    elif not (np.isfinite(n) and n > 0):
      excluded.append((float(f), "N* = ∞: not learned at any size, per its fit"))
    elif cis[i] is not None and not np.isfinite(cis[i][1]):
      excluded.append((float(f), "N*'s interval is open above (the data allow a curve that never crosses)"))
    else:
      keep.append(i)
      sds.append(sd)
  keep = np.array(keep, dtype=int)
  if len(keep) < 2:
    raise FitError(f"the N*(f) law needs >= 2 frequencies with a finite N*, got {len(keep)}; add frequencies "
                   "or larger sizes")
  x, y = np.log(freq[keep]), np.log(ns[keep])
  sds = np.array(sds)
  weighted = bool(np.all(np.isfinite(sds)) and np.all(sds > 0))
  w = 1.0 / sds ** 2 if weighted else np.ones(len(keep))
  X = np.stack([np.ones_like(x), -x], axis=1)
  XtW = X.T * w
  cov_unit = np.linalg.inv(XtW @ X)
  c, gamma = cov_unit @ (XtW @ y)
  r = y - X @ np.array([c, gamma])
  dof = len(keep) - 2
  chi2 = float((w * r * r).sum())
  if weighted:
    birge = max(1.0, chi2 / dof) if dof > 0 else 1.0
    cov, s2_point = cov_unit * birge, float(np.mean(sds ** 2)) * birge
  else:
    birge = math.nan
    s2 = chi2 / dof if dof > 0 else math.nan
    cov, s2_point = cov_unit * s2, s2
  law = FrequencyLaw(gamma=float(gamma), c=float(c), ci=None, ci_level=level, n_points=len(keep),
                     resid_sd=math.sqrt(chi2 / dof) if dof > 0 else math.nan, weighted=weighted, excluded=excluded,
                     birge=birge, points=[(float(freq[i]), float(ns[i]), *(cis[i] or (math.nan, math.nan)))
                                          for i in keep], _cov=cov, _dof=dof, _s2_point=s2_point)
  q = law._q(level)
  if np.isfinite(q) and np.all(np.isfinite(cov)):
    law.ci = {"gamma": (gamma - q * math.sqrt(cov[1, 1]), gamma + q * math.sqrt(cov[1, 1])),
              "c": (c - q * math.sqrt(cov[0, 0]), c + q * math.sqrt(cov[0, 0]))}
  return law


# ---------------------------------------------------------------------------------------------------------
# Leave-one-frequency-out validation
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FrequencyHoldout:
  """The law without frequency f, predicting its N* (and, inversely, f itself from the observed N*)."""

  freq: float
  n_star_observed: float
  n_star_predicted: float
  n_star_interval: tuple[float, float]
  n_star_inside: bool
  log_error: float  # log(predicted / observed) of N*
  f_star_predicted: float
  f_star_interval: tuple[float, float]
  f_inside: bool

  def to_dict(self):
    return dataclasses.asdict(self)


def leave_one_frequency_out(law: FrequencyLaw, level: float | None = None) -> list[FrequencyHoldout]:
  """For each frequency of a law with >= 3 points: refit without it, predict its N* (interval: the law's band
  plus the held-out N*'s own uncertainty) and f* at its observed N*."""
  level = level or law.ci_level
  pts = law.points
  if len(pts) < 3:
    return []
  out = []
  for i, (f, n, lo, hi) in enumerate(pts):
    rest = [p for j, p in enumerate(pts) if j != i]
    try:
      sub = fit_frequency_law([p[0] for p in rest], [p[1] for p in rest],
                              n_star_ci=[(p[2], p[3]) for p in rest] if law.weighted else None, level=level)
    except FitError:
      continue
    sd = _log_sd((lo, hi), level) if law.weighted else math.sqrt(max(sub._s2_point, 0.0))
    sd = sd if np.isfinite(sd) else 0.0
    mid, plo, phi = (float(v) for v in sub.n_star_at(f, level, sd))
    fs, flo, fhi = sub.f_star(n, level, sd)
    out.append(FrequencyHoldout(freq=f, n_star_observed=n, n_star_predicted=mid, n_star_interval=(plo, phi),
                                n_star_inside=bool(plo <= n <= phi), log_error=math.log(mid / n),
                                f_star_predicted=fs, f_star_interval=(flo, fhi), f_inside=bool(flo <= f <= fhi)))
  return out


# ---------------------------------------------------------------------------------------------------------
# Toy: Proposition 6's analytic frontier
# ---------------------------------------------------------------------------------------------------------
def toy_n_crit(spec: toy_theory.ToySpec, freq, *, lam: float = 1.0, mass: float = 0.8, base_share=None):
  """N_crit(π) = 1 + #{i : μ_i^F > π·lam} for a rank-one rare feature of variance lam at frequency π (array in,
  array out). base_share: the frequent tasks' frequencies in the units of freq (default spec.pi, i.e. freq is
  a share of all samples; an injected task's per-base-row rate wants the base tasks' shares of the base rows)."""
  F = toy_theory.frequent_set(spec, mass)
  pi = spec.pi if base_share is None else np.asarray(base_share, dtype=float)
  mu = np.sort((pi[:, None] * spec.lam)[F].ravel())
  u = np.asarray(freq, dtype=float) * lam
  return 1.0 + (len(mu) - np.searchsorted(mu, u, side="right"))


def base_share(spec: toy_theory.ToySpec, injected_task: str) -> np.ndarray:
  """The base tasks' shares of the base rows when `injected_task` (e.g. 't32') arrives in extra rows: its
  per-base-row rate (the trainer's frequency_per_token) compares with these in toy_n_crit."""
  k = int(injected_task.lstrip("t")) - 1
  keep = np.arange(spec.K) != k
  return np.where(keep, spec.pi / spec.pi[keep].sum(), 0.0)


def within_one_step(fitted, exact, widths) -> np.ndarray:
  """fitted N* within one step of the width grid from the exact critical width (grid ratio at that width)."""
  w = np.sort(np.asarray(widths, dtype=float))
  ratio = np.exp(np.diff(np.log(w)))
  out = []
  for f, e in zip(np.atleast_1d(fitted), np.atleast_1d(exact)):
    i = int(np.clip(np.searchsorted(w, e), 1, len(w) - 1))
    step = ratio[i - 1]
    out.append(bool(abs(math.log(f / e)) <= math.log(step) + 1e-12))
  return np.array(out)


# ---------------------------------------------------------------------------------------------------------
# Frontiers of a sweep's curves
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FrequencyFit:
  """N*(f) over curves that differ only in frequency. points: (f, N*, ci lo, ci hi, curve id).

  holdouts: leave-one-frequency-out checks. toy: Prop 6's N_crit at each point's frequency (rare tasks only)
  with `agree` (the fitted frontier within one width step of it) and the widths of the grid."""

  id: str
  kind: str
  task: str
  metric: str
  freq_name: str
  condition: dict
  points: list[tuple]
  law: FrequencyLaw | None
  reason: str | None
  holdouts: list[FrequencyHoldout] = dataclasses.field(default_factory=list)
  toy: dict | None = None
  sizes: list[float] = dataclasses.field(default_factory=list)

  def to_dict(self):
    out = {"id": self.id, "kind": self.kind, "task": self.task, "metric": self.metric, "frequency": self.freq_name,
           "condition": self.condition, "points": [list(p) for p in self.points], "reason": self.reason,
           "sizes": self.sizes, "law": self.law.to_dict() if self.law is not None else None,
           "leave_one_frequency_out": [h.to_dict() for h in self.holdouts], "toy_prop6": self.toy}
    return curves_lib._jsonable(out)


def _clean(v):
  return None if isinstance(v, float) and math.isnan(v) else v


def _group_key(f):
  c = f.curve
  if c.kind == "task":
    sched = c.condition.get("schedule")
    period = None if sched in ("random", None) else _clean(c.condition.get("period"))  # random: period unused
    return ("task", c.task, c.metric, sched, period)
  if c.kind == "toy" and c.condition.get("injected"):
    return ("toy", c.task, c.metric, c.condition.get("beta"), "injected")
  if c.kind == "toy":
    return ("toy", "all tasks", c.metric, c.condition.get("beta"), None)
  return None


def _toy_overlay(ff: FrequencyFit, members, spec) -> dict | None:
  """Prop 6's N_crit at the group's rare frequencies, and whether the fitted frontier is within a width step."""
  if spec is None:
    return None
  F = toy_theory.frequent_set(spec)
  names = [f"t{k:02d}" for k in range(1, spec.K + 1)]
  injected = bool(ff.condition.get("injected"))
  shares = base_share(spec, members[0].curve.task) if injected else None
  if injected:
    rare = list(members)
  else:
    rare = [m for m in members if m.curve.task in names and not F[names.index(m.curve.task)]]
  if not rare:
    return None
  freqs = np.array([m.curve.condition["frequency_per_token"] for m in rare])
  crit = toy_n_crit(spec, freqs, base_share=shares)
  out = {"frequency": freqs.tolist(), "n_crit": crit.tolist(), "tasks": [m.curve.task for m in rare],
         "units": "per-base-row rate vs the base tasks' shares" if injected else "π_k (share of all samples)"}
  if ff.law is not None and ff.sizes:
    fitted = ff.law.n_star_at(freqs)[0]
    out["fitted"] = fitted.tolist()
    out["agree"] = within_one_step(fitted, crit, ff.sizes).tolist()
  return out


def frequency_laws(fits: list, toy_specs: dict | None = None) -> list[FrequencyFit]:
  """N*(f) per group of curves that differ only in frequency. LM: per (task, metric, schedule, period) across
  frequency_per_batch. Toy: per β across tasks (frequency π_k), and per injected task across its injected rate
  (a sweep over π_r). toy_specs: β -> ToySpec, for Proposition 6's overlay."""
  groups: dict[tuple, list] = {}
  for f in fits:
    key = _group_key(f)
    if f.nstar is not None and key is not None:
      groups.setdefault(key, []).append(f)
  out = []
  for key, members in groups.items():
    kind, task, metric = key[:3]
    fname = "frequency_per_batch" if kind == "task" else "frequency_per_token"
    freqs = [m.curve.condition.get(fname, np.nan) for m in members]
    if len(set(freqs)) < 2:
      continue  # a single frequency: nothing to relate
    stars = [m.nstar for m in members]
    pts = [(float(fr), float(s.n_star), *(s.ci if s.ci else (math.nan, math.nan)), m.curve.id)
           for fr, s, m in zip(freqs, stars, members)]
    cond = ({"schedule": key[3], "period": key[4]} if kind == "task" else
            {"beta": key[3], "injected": key[4] == "injected"})
    fid = f"{kind}:{task}:{metric}[{curves_lib._cond_id({k: v for k, v in cond.items() if v is not False})}]"
    law, reason = None, None
    try:
      law = fit_frequency_law(freqs, stars)
    except FitError as e:
      reason = str(e)
    sizes = sorted({float(n) for m in members for n in np.unique(m.curve.N)})
    ff = FrequencyFit(id=fid, kind=kind, task=task, metric=metric, freq_name=fname, condition=cond, points=pts,
                      law=law, reason=reason, sizes=sizes)
    if law is not None:
      ff.holdouts = leave_one_frequency_out(law)
    if kind == "toy":
      ff.toy = _toy_overlay(ff, members, (toy_specs or {}).get(key[3]))
    out.append(ff)
  return out
