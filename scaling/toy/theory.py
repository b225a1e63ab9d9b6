"""Exact analytic side of the toy (paper §3): pure numpy, no training, no JAX.

The toy: K regression tasks; task k is sampled with frequency π_k and owns r orthonormal feature directions
b_{k,j} with variances λ_{k,j}; C_k = Σ_j λ_{k,j} b_{k,j} b_{k,j}ᵀ. A shared width-N encoder U (d×N) with
per-task decoders and optimal decoders loses ℓ_k(U) = Tr(C_k) − Tr(P_U C_k) on task k, so the population loss
is Tr(M) − Tr(P_U M) with M = Σ_k π_k C_k, whose eigenvalues are the utilities u_{k,j} = π_k λ_{k,j}
(eigenvectors b_{k,j}). Everything below follows from that.

Conventions (fixed once, here):
- Labels vs positions. Tasks are labelled k = 1..K and features j = 1..r as in the paper; arrays are 0-based,
  so ``arr[k - 1, j - 1]`` is feature j of task k. Arguments that name a task or feature (``spec.C(k)``,
  ``critical_width(spec, rare_task, feature)``) take the 1-based paper label.
- Frequencies: π_k = k^-β / Σ_k' k'^-β (task 1 most frequent when β ≥ 0).
- Spectrum: λ_{k,j} = c_k · j^-α_k with α_k ≥ 0; ``lam_norm="first"`` (default, the paper leaves it open):
  c_k = 1, i.e. λ_{k,1} = 1; ``lam_norm="trace"``: Σ_j λ_{k,j} = Tr(C_k) = 1. The choice only matters when α
  differs between tasks, where it decides whether a "complex" task also carries more total signal.
- Loss: ℓ_k = E‖y − ŷ‖² *summed* over the r outputs (zero predictor: Tr(C_k)). The paper's "mean squared error"
  averaged over outputs divides ℓ_k and Tr(C_k) alike by r; the normalised loss ℓ_k / Tr(C_k) is unchanged.
- Basis: B = Q of numpy's QR of a d×d standard Gaussian drawn from ``np.random.default_rng(seed)``, each column
  multiplied by sign(R_ii) (this makes the QR unique and B Haar-distributed). Column (k−1)·r + (j−1) is b_{k,j}.
- Tie-breaking (Theorem 3's top-N set): features are ranked by utility, descending; utilities equal to 12
  significant digits are ties (so π_1·λ_{1,2} = π_2·λ_{2,1} is a tie despite float rounding), and ties go to
  the smaller task label k, then the smaller feature label j. The ranking is one total order, so the top-N sets
  are nested in N and always keep a prefix j = 1..n_k of each task (λ is non-increasing in j).
- Frequent set F: sort tasks by π descending (ties: smaller k first) and keep the shortest prefix whose mass
  reaches ``mass`` (default 0.8) — the task whose mass crosses the threshold IS included. M_F = Σ_{k∈F} π_k C_k.
- δ_F*(N_crit) = Σ_{i > N_crit} μ_i^F (the paper's, ``delta_F_star``); Σ_{i >= N_crit} μ_i^F is ``delta_F_entry``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

TIE_DIGITS = 12  # utilities equal to this many significant digits count as ties
_MASS_SLACK = 1e-12  # so a prefix whose mass is exactly `mass` up to rounding counts as reaching it
LAM_NORMS = ("first", "trace")


@functools.lru_cache(maxsize=4)
def _orthogonal_basis(d: int, seed: int) -> np.ndarray:
  """d×d Haar-orthogonal matrix; cached (8 MiB at d = 1024) and read-only so callers cannot corrupt it."""
  q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
  q *= np.where(np.diag(r) < 0, -1.0, 1.0)
  q.setflags(write=False)
  return q


@dataclasses.dataclass(frozen=True)
class ToySpec:
  """The toy's task distribution. ``alpha`` is one float for all tasks or a length-K tuple (per-task α)."""

  K: int = 32
  r: int = 32
  beta: float = 1.0
  alpha: float | tuple[float, ...] = 2.0
  seed: int = 0
  lam_norm: str = "first"

  def __post_init__(self):
    if self.K < 1 or self.r < 1:
      raise ValueError(f"need K, r >= 1, got K={self.K}, r={self.r}")
    if isinstance(self.alpha, (list, tuple, np.ndarray)):
      alpha = tuple(float(a) for a in self.alpha)
      if len(alpha) != self.K:
        raise ValueError(f"per-task alpha needs K={self.K} values, got {len(alpha)}")
      object.__setattr__(self, "alpha", alpha)  # a tuple keeps the spec hashable
    else:
      object.__setattr__(self, "alpha", float(self.alpha))
    if np.any(np.asarray(self.alpha) < 0):
      raise ValueError("alpha must be >= 0 (λ non-increasing in j: Theorem 3's prefix structure relies on it)")
    if self.lam_norm not in LAM_NORMS:
      raise ValueError(f"lam_norm must be one of {LAM_NORMS}, got {self.lam_norm!r}")

  @property
  def d(self) -> int:
    return self.K * self.r

  @property
  def alpha_K(self) -> np.ndarray:
    """(K,) per-task spectral decay."""
    return np.broadcast_to(np.asarray(self.alpha, dtype=np.float64), (self.K,)).copy()

  @property
  def pi(self) -> np.ndarray:
    """(K,) task frequencies π_k ∝ k^-β, summing to 1."""
    w = np.arange(1, self.K + 1, dtype=np.float64) ** -float(self.beta)
    return w / w.sum()

  @property
  def lam(self) -> np.ndarray:
    """(K, r) spectra λ_{k,j} ∝ j^-α_k, normalised per ``lam_norm``."""
    j = np.arange(1, self.r + 1, dtype=np.float64)
    lam = j[None, :] ** -self.alpha_K[:, None]
    if self.lam_norm == "trace":
      lam /= lam.sum(axis=1, keepdims=True)
    return lam

  @property
  def trace_C(self) -> np.ndarray:
    """(K,) Tr(C_k): the zero predictor's loss."""
    return self.lam.sum(axis=1)

  def basis(self, seed: int | None = None) -> np.ndarray:
    """(d, d) orthogonal matrix whose column (k−1)·r + (j−1) is b_{k,j}; ``seed`` defaults to ``self.seed``."""
    return _orthogonal_basis(self.d, self.seed if seed is None else int(seed))

  @property
  def feature_directions(self) -> np.ndarray:
    """(K, r, d): ``[k-1, j-1]`` is b_{k,j} (a read-only view of the basis)."""
    return self.basis().T.reshape(self.K, self.r, self.d)

  def C(self, k: int) -> np.ndarray:
    """(d, d) covariance C_k of task label k (1-based). Dense: build only when needed."""
    if not 1 <= k <= self.K:
      raise ValueError(f"task label must be in 1..{self.K}, got {k}")
    b_dxr = self.basis()[:, (k - 1) * self.r : k * self.r]
    return (b_dxr * self.lam[k - 1]) @ b_dxr.T

  def M(self, tasks: np.ndarray | None = None) -> np.ndarray:
    """(d, d) Σ_{k ∈ tasks} π_k C_k; ``tasks`` a (K,) bool mask (None: all tasks, the full M)."""
    u = utilities(self)
    if tasks is not None:
      u = u * np.asarray(tasks, dtype=bool)[:, None]
    b = self.basis()
    return (b * u.ravel()) @ b.T


# ----------------------------------------------------------------------------------------------------------
# Theorem 3: the optimal encoder keeps the N largest utilities.


def utilities(spec: ToySpec) -> np.ndarray:
  """(K, r) u_{k,j} = π_k λ_{k,j}: the eigenvalues of M, eigenvector b_{k,j}."""
  return spec.pi[:, None] * spec.lam


def _tie_key(x: np.ndarray) -> np.ndarray:
  """x rounded to TIE_DIGITS significant digits, so products equal in exact arithmetic compare equal."""
  mant, expo = np.frexp(np.asarray(x, dtype=np.float64))
  return np.ldexp(np.round(mant, TIE_DIGITS), expo)


def utility_rank(u_KxR: np.ndarray) -> np.ndarray:
  """(K, r) int: 0-based position of each feature in the global order (utility desc, ties → small k, small j)."""
  u = np.asarray(u_KxR, dtype=np.float64)
  # Stable sort on the flat (k, j) index is exactly the documented tie-break.
  order = np.argsort(-_tie_key(u).ravel(), kind="stable")
  rank = np.empty(u.size, dtype=np.int64)
  rank[order] = np.arange(u.size)
  return rank.reshape(u.shape)


def top_mask(u_KxR: np.ndarray, N: int) -> np.ndarray:
  """(K, r) bool: the N largest entries of any utility table, same order and ties as ``top_features``.

  For a sub-problem (e.g. F ∪ {rare}) zero the other tasks' rows; zeros rank last, so read the mask only
  for N up to the number of positive utilities.
  """
  if N < 0:
    raise ValueError(f"width must be >= 0, got {N}")
  return utility_rank(u_KxR) < N


def top_features(spec: ToySpec, N: int) -> np.ndarray:
  """(K, r) bool: features kept by the optimal width-N encoder (Theorem 3); N >= d keeps all."""
  return top_mask(utilities(spec), N)


def feature_entry_width(spec: ToySpec) -> np.ndarray:
  """(K, r) int: smallest width whose optimal encoder keeps feature (k, j) (= its rank + 1)."""
  return utility_rank(utilities(spec)) + 1


def n_features(spec: ToySpec, N) -> np.ndarray:
  """n_k(N): task k's features among the top N. N scalar → (K,); N array (W,) → (W, K)."""
  N_arr = np.asarray(N)
  kept = utility_rank(utilities(spec)) < N_arr[..., None, None]
  return kept.sum(axis=-1)


class TaskLoss(NamedTuple):
  loss: np.ndarray  # (..., K) Σ_{j > n_k(N)} λ_{k,j}
  normalised: np.ndarray  # (..., K) loss / Tr(C_k): the dashed analytic curve of Fig 2b


def optimal_task_loss(spec: ToySpec, N) -> TaskLoss:
  """Per-task loss of the optimal width-N encoder (with optimal decoders). N scalar → (K,), (W,) → (W, K)."""
  kept = utility_rank(utilities(spec)) < np.asarray(N)[..., None, None]
  lam = spec.lam
  loss = np.where(kept, 0.0, lam).sum(axis=-1)
  return TaskLoss(loss, loss / lam.sum(axis=1))


def encoder_from_mask(spec: ToySpec, mask_KxR: np.ndarray) -> np.ndarray:
  """(d, n) orthonormal encoder spanning the features in the mask (columns in (k, j) order)."""
  return spec.basis()[:, np.flatnonzero(np.asarray(mask_KxR, dtype=bool).ravel())]


def optimal_encoder(spec: ToySpec, N: int) -> np.ndarray:
  """(d, min(N, d)) orthonormal optimal encoder; columns ordered by rank, so U[:, :n] is optimal at width n."""
  if N < 0:
    raise ValueError(f"width must be >= 0, got {N}")
  order = np.argsort(utility_rank(utilities(spec)).ravel(), kind="stable")
  return spec.basis()[:, order[: min(N, spec.d)]]


class EighCheck(NamedTuple):
  eig_err: float  # max |eigh(M) − sorted utilities| (both descending)
  proj_err: float  # max |P_closed-form − P_eigh top-N|
  gap: float  # eigh's μ_N − μ_{N+1}: the top-N eigenspace (and proj_err's meaning) needs gap > 0


def check_optimum_eigh(spec: ToySpec, N: int) -> EighCheck:
  """Compares the closed form with numpy's eigh of the dense M (O(d³); meant for tests and spot checks)."""
  evals, evecs = np.linalg.eigh(spec.M())
  evals, evecs = evals[::-1], evecs[:, ::-1]
  N = min(N, spec.d)
  u_sorted = np.sort(utilities(spec).ravel())[::-1]
  v = evecs[:, :N]
  U = optimal_encoder(spec, N)
  gap = evals[N - 1] - evals[N] if 0 < N < spec.d else np.inf
  return EighCheck(
      eig_err=float(np.max(np.abs(evals - u_sorted))),
      proj_err=float(np.max(np.abs(U @ U.T - v @ v.T))) if N else 0.0,
      gap=float(gap),
  )


# ----------------------------------------------------------------------------------------------------------
# Fig 2a boundary and learnability.


def _widths_grid(spec: ToySpec, widths) -> np.ndarray:
  if widths is None:
    return np.arange(1, spec.d + 1)
  return np.sort(np.asarray(widths, dtype=np.int64).ravel())


def phase_boundary(spec: ToySpec, widths: Sequence[int] | None = None) -> np.ndarray:
  """(K, r) float: smallest width in ``widths`` whose optimal encoder keeps feature (k, j); inf if none does.

  Column 0 is the Fig 2a boundary (each task's first feature). ``widths=None`` gives the exact entry width.
  Retention is monotone in N (nested top-N sets), so "smallest" is a true boundary.
  """
  entry = feature_entry_width(spec)
  w = _widths_grid(spec, widths)
  idx = np.searchsorted(w, entry, side="left")
  return np.where(idx < w.size, w[np.minimum(idx, w.size - 1)], np.inf).astype(np.float64)


def smallest_learning_width(spec: ToySpec, widths: Sequence[int] | None = None, tol: float = 0.5) -> np.ndarray:
  """(K,) float: smallest width in ``widths`` (None: 1..d) where the optimal normalised loss is <= tol; inf if never.

  tol = 0.5 (default) means "the optimal encoder captures at least half of task k's signal".
  """
  w = _widths_grid(spec, widths)
  ok = optimal_task_loss(spec, w).normalised <= tol  # (W, K), monotone in W
  first = np.argmax(ok, axis=0)
  return np.where(ok.any(axis=0), w[first], np.inf).astype(np.float64)


# ----------------------------------------------------------------------------------------------------------
# Frequent set, Proposition 6, Theorem 4.


def frequent_set(spec: ToySpec, mass: float = 0.8) -> np.ndarray:
  """(K,) bool: the most frequent tasks whose mass first reaches ``mass`` (crossing task included)."""
  if not 0.0 < mass <= 1.0:
    raise ValueError(f"mass must be in (0, 1], got {mass}")
  pi = spec.pi
  order = np.argsort(-pi, kind="stable")
  n = int(np.searchsorted(np.cumsum(pi[order]), mass - _MASS_SLACK, side="left")) + 1
  mask = np.zeros(spec.K, dtype=bool)
  mask[order[: min(n, spec.K)]] = True
  return mask


def utilities_F(spec: ToySpec, mass: float = 0.8) -> np.ndarray:
  """(K, r) utilities with the rows of tasks outside F zeroed: the eigenvalue table of M_F."""
  return utilities(spec) * frequent_set(spec, mass)[:, None]


def mu_F(spec: ToySpec, mass: float = 0.8) -> np.ndarray:
  """(d,) eigenvalues of M_F, descending: F's utilities then zeros (rank M_F = |F|·r)."""
  return np.sort(utilities_F(spec, mass).ravel())[::-1]


def critical_widths(spec: ToySpec, mass: float = 0.8) -> np.ndarray:
  """(K, r) float: N^crit of feature (k, j) treated as a rank-one rare feature against M_F; nan for k ∈ F.

  N^crit = min{N : μ_N^F <= π_k λ_{k,j}} = 1 + #{i : μ_i^F > π_k λ_{k,j}} (Proposition 6; comparisons at
  TIE_DIGITS digits, ties count as "<=": a tie makes both choices optimal). Each feature is compared with M_F
  alone: the rare task's own earlier features are not counted, so in the joint F ∪ {rare} problem feature j
  enters at N^crit + (j − 1).
  """
  mu_asc = _tie_key(mu_F(spec, mass))[::-1]
  u = _tie_key(utilities(spec))
  n_greater = mu_asc.size - np.searchsorted(mu_asc, u, side="right")
  out = (n_greater + 1).astype(np.float64)
  out[u <= 0] = np.inf  # a zero-utility feature carries no signal: "retained" is meaningless
  out[frequent_set(spec, mass)] = np.nan
  return out


def critical_width(spec: ToySpec, rare_task: int, feature: int = 1, mass: float = 0.8,
                   max_width: int | None = None) -> int | None:
  """N_r^crit = min{N : μ_N^F <= π_r λ_{r,feature}} (Proposition 6), labels 1-based.

  Returns None when it is never reached: M_F has rank |F|·r, so for a rare task outside F the minimum is at most
  |F|·r + 1 <= d and None arises only from a zero utility (underflow of j^-α) or when N^crit > ``max_width``
  (e.g. pass the largest width of a sweep grid). Raises for a task inside F, where the proposition does not apply.
  """
  if not 1 <= rare_task <= spec.K or not 1 <= feature <= spec.r:
    raise ValueError(f"labels are 1-based: task in 1..{spec.K}, feature in 1..{spec.r}")
  if frequent_set(spec, mass)[rare_task - 1]:
    raise ValueError(f"task {rare_task} is in the frequent set F (mass={mass}); Proposition 6 needs a rare task")
  n = critical_widths(spec, mass)[rare_task - 1, feature - 1]
  if not np.isfinite(n) or (max_width is not None and n > max_width):
    return None
  return int(n)


def delta_F_min(spec: ToySpec, N, mass: float = 0.8) -> np.ndarray:
  """Σ_{i > N} μ_i^F: the smallest δ_F any width-N encoder reaches (Eckart–Young); N scalar or array."""
  tail = np.concatenate([np.cumsum(mu_F(spec, mass)[::-1])[::-1], [0.0]])  # tail[n] = Σ_{i > n} μ_i
  return tail[np.clip(np.asarray(N), 0, spec.d)]


def delta_F_star(spec: ToySpec, N_crit: int | None, mass: float = 0.8) -> float:
  """δ_F*(N_crit) = Σ_{i > N_crit} μ_i^F = ``delta_F_min(spec, N_crit)``, the paper's Fig 3 threshold (rare tasks
  start once δ_F falls below it): the Eckart–Young floor of a width-N_crit encoder spent on F alone. nan when
  N_crit is None; ``delta_F_entry`` is one frequent eigenvalue higher.
  """
  return _residual_after(spec, N_crit, N_crit, mass)


def delta_F_entry(spec: ToySpec, N_crit: int | None, mass: float = 0.8) -> float:
  """Σ_{i >= N_crit} μ_i^F = ``delta_F_min(spec, N_crit − 1)`` = δ_F*(N_crit) + μ_{N_crit}^F; nan when N_crit is None.

  The δ_F of the optimal width-N_crit encoder of the F ∪ {rare} problem (the rare feature in the last slot, the
  first N_crit − 1 frequent directions learned), i.e. the frequent residual at the moment the rare feature enters;
  independent of the model's width.
  """
  return _residual_after(spec, N_crit, None if N_crit is None else N_crit - 1, mass)


def _residual_after(spec: ToySpec, N_crit: int | None, n: int | None, mass: float) -> float:
  if N_crit is None:
    return float("nan")
  if N_crit < 1:
    raise ValueError(f"N_crit must be >= 1, got {N_crit}")
  return float(delta_F_min(spec, n, mass))


def grad_F_bound(spec: ToySpec, delta_F, mass: float = 0.8, sigma_min=1.0) -> np.ndarray:
  """Theorem 4: ‖G_F‖_Fro <= 2·sqrt(λ1(M_F)·δ_F) / σ_min(U).

  G_F is the population encoder gradient of the frequent part of the loss, Σ_{k∈F} π_k ℓ_k, with optimal
  decoders (see ``grad_F``). The theorem's form is σ_min = 1 (orthonormal U); for a general full-rank U the
  same proof gives the 1/σ_min(U) factor. A frequent-only *batch* averages over F, i.e. divides by π(F):
  scale the bound by 1/π(F) for that.
  """
  lam1 = mu_F(spec, mass)[0]
  return 2.0 * np.sqrt(lam1 * np.maximum(np.asarray(delta_F, dtype=np.float64), 0.0)) / np.asarray(sigma_min)


# ----------------------------------------------------------------------------------------------------------
# Measurements on any encoder U (..., d, N): leading axes are a batch (e.g. seeds).


def _svd(U) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Thin SVD with columns past the numerical rank zeroed: (W (...,d,N), 1/s or 0 (...,N), Vᵀ (...,N,N))."""
  U = np.asarray(U, dtype=np.float64)
  if U.ndim < 2:
    raise ValueError(f"encoder must be (..., d, N), got shape {U.shape}")
  w, s, vt = np.linalg.svd(U, full_matrices=False)
  # numpy.linalg.matrix_rank's default tolerance.
  keep = s > s[..., :1] * max(U.shape[-2:]) * np.finfo(np.float64).eps
  s_inv = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
  return w * keep[..., None, :], s_inv, vt


def span_basis(U) -> np.ndarray:
  """(..., d, N): orthonormal columns spanning span(U), columns beyond the numerical rank set to 0.

  P_U = Q Qᵀ for the returned Q, robust to rank-deficient U (duplicate or zero columns).
  """
  return _svd(U)[0]


def _check_d(U, spec: ToySpec):
  if np.shape(U)[-2] != spec.d:
    raise ValueError(f"encoder has {np.shape(U)[-2]} rows, spec has d={spec.d}")


def feature_retention(U, spec: ToySpec) -> np.ndarray:
  """(..., K, r): ‖P_U b_{k,j}‖², the fraction of each feature direction inside span(U)."""
  _check_d(U, spec)
  q = span_basis(U)
  coeff = spec.basis().T @ q  # (..., d, N): row (k, j) holds b_{k,j}ᵀ q
  return np.square(coeff).sum(axis=-1).reshape(*q.shape[:-2], spec.K, spec.r)


def signal_captured(U, spec: ToySpec) -> np.ndarray:
  """(..., K): s_k = Tr(P_U C_k) / Tr(C_k)."""
  lam = spec.lam
  return (feature_retention(U, spec) * lam).sum(axis=-1) / lam.sum(axis=1)


def signal_normalised(U, spec: ToySpec) -> np.ndarray:
  """(..., K): s̃_k = (s_k − N/d)/(1 − N/d), 0 for a random subspace in expectation; nan when N >= d.

  N is the encoder's column count (not its rank), as in the paper's random baseline.
  """
  frac = np.shape(U)[-1] / spec.d
  s = signal_captured(U, spec)
  if frac >= 1.0:
    return np.full_like(s, np.nan)
  return (s - frac) / (1.0 - frac)


def normalised_loss_from_U(U, spec: ToySpec) -> np.ndarray:
  """(..., K): ℓ_k / Tr(C_k) = 1 − s_k with optimal decoders for this U."""
  return 1.0 - signal_captured(U, spec)


def delta_F(U, spec: ToySpec, mass: float = 0.8) -> np.ndarray:
  """(...): δ_F = Tr((I − P_U) M_F), which is also the frequent loss Σ_{k∈F} π_k ℓ_k at optimal decoders."""
  u_F = utilities_F(spec, mass)
  return u_F.sum() - (feature_retention(U, spec) * u_F).sum(axis=(-2, -1))


def grad_F(U, spec: ToySpec, mass: float = 0.8) -> np.ndarray:
  """(..., d, N): G_F = ∇_U Σ_{k∈F} π_k ℓ_k(U, D_k*) = −2 (I − P_U) M_F U (UᵀU)⁺.

  Derivation: ℓ_k(U, D) = Tr(C_k) − 2 Tr(D Uᵀ B_k Λ_k^½) + Tr(D UᵀU Dᵀ), so ∇_U ℓ_k = −2 B_k Λ_k^½ D + 2 U DᵀD;
  at D* = Λ_k^½ B_kᵀ U (UᵀU)⁺ this is −2 (I − P_U) C_k U (UᵀU)⁺ (equivalently ∇_U δ_F(U), envelope theorem).
  """
  _check_d(U, spec)
  w, s_inv, vt = _svd(U)
  u_pinvT = (w * s_inv[..., None, :]) @ vt  # U (UᵀU)⁺ = (U⁺)ᵀ
  b = spec.basis()
  mx = b @ (utilities_F(spec, mass).ravel()[:, None] * (b.T @ u_pinvT))  # M_F U (UᵀU)⁺ without a dense M_F
  return -2.0 * (mx - w @ (np.swapaxes(w, -1, -2) @ mx))
