"""The toy student (paper §3): a width-N linear encoder U (d×N) shared by K tasks, one decoder D_k (r×N) per task.

ŷ = D_k Uᵀ x for a sample of task k; the loss is ‖y − ŷ‖² summed over the r outputs (toy_theory's convention).

Variants (``model.variant``):
  plain        U and D are free parameters trained by Adam: the paper's student.
  orthonormal  the theory-faithful student: U = Q of qr(W) (orthonormal columns) with the population-optimal
               decoders in closed form, D_k = Λ_k^½ B_kᵀ U, so ŷ = Λ_k^½ B_kᵀ P_U x and the expected loss is
               exactly toy_theory's ℓ_k(U) = Tr(C_k) − Tr(P_U C_k). Only W is a parameter.

The NNX module defines the parameters and the simple per-row forward pass. Training uses ``dense_loss`` with
the members of a program on an explicit leading axis M. ``measure`` gives the population metrics of Figs 2–4 in
closed form (no sampling noise).

Shape suffixes: M members, S distinct seeds, R rows, D input dim d, N width, K tasks, J outputs per task (r),
E = K·J (all tasks' outputs).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling.core import hashrng

VARIANTS = ("plain", "orthonormal")


@dataclasses.dataclass(frozen=True)
class ToyModelConfig:
  d: int
  width: int
  K: int
  r: int
  variant: str = "plain"
  init_scale: float = 1.0  # multiplies the fan-in std 1/sqrt(fan_in) of U (or W)
  decoder_init_scale: float = 1.0  # the same for D; 0 starts from the zero predictor

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"model.variant={self.variant!r} is not one of {VARIANTS}")
    if not 1 <= self.width <= self.d:
      raise ValueError(f"model.width={self.width} must be in 1..d={self.d} (d = K*r)")


def _normal(std: float):
  # Counter-hash normals (hashrng.jax_normal): the init compiles in a fraction of jax.random.normal's time,
  # which dominates small toy programs on CPU.
  return lambda key, shape: std * hashrng.jax_normal(key, shape)


def param_count(cfg: ToyModelConfig) -> int:
  return cfg.d * cfg.width + (cfg.K * cfg.r * cfg.width if cfg.variant == "plain" else 0)


class ToyModel(nnx.Module):
  """Flax NNX toy student. Parameters: U (d, N) and D (K, r, N), or W (d, N) for the orthonormal variant."""

  def __init__(self, cfg: ToyModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    enc = _normal(cfg.init_scale / np.sqrt(cfg.d))(rngs.params(), (cfg.d, cfg.width))
    if cfg.variant == "plain":
      self.U = nnx.Param(enc)
      dec = _normal(cfg.decoder_init_scale / np.sqrt(cfg.width))(rngs.params(), (cfg.K * cfg.r, cfg.width))
      self.D = nnx.Param(dec.reshape(cfg.K, cfg.r, cfg.width))
    else:
      self.W = nnx.Param(enc)

  def params(self) -> dict:
    return nnx.state(self, nnx.Param).to_pure_dict()

  def __call__(self, x_RxD, task_R, B_KxDxJ, sqrt_lam_KxJ):
    """(R, r) predictions, each row through its own task's decoder."""
    U = encoder(self.params(), self.cfg.variant)
    D = decoders(self.params(), self.cfg.variant, U, B_KxDxJ, sqrt_lam_KxJ)
    return jnp.einsum("rn,rjn->rj", x_RxD @ U, D[task_R])


def init_params(cfg: ToyModelConfig, key: jax.Array) -> dict:
  """Pure-dict parameters (jit/vmap friendly: vmap over keys to build many members at once)."""
  return ToyModel(cfg, rngs=nnx.Rngs(params=key)).params()


def encoder(params: dict, variant: str) -> jax.Array:
  """(d, N) encoder; orthonormal columns for the orthonormal variant."""
  if variant == "plain":
    return params["U"]
  return jnp.linalg.qr(params["W"])[0]


def decoders(params: dict, variant: str, U_DxN, B_KxDxJ, sqrt_lam_KxJ) -> jax.Array:
  """(K, r, N) decoders; Λ_k^½ B_kᵀ U (population optimum for orthonormal U) for the orthonormal variant."""
  if variant == "plain":
    return params["D"]
  return sqrt_lam_KxJ[:, :, None] * jnp.einsum("kdj,dn->kjn", B_KxDxJ, U_DxN)


def rows_mask(counts_MxK, rows: int) -> jax.Array:
  """(M, R, K) float one-hot task of each sorted row (counts_MxK rows of task k, in task order)."""
  ends_MxK = jnp.cumsum(counts_MxK, axis=-1)
  task_MxR = jnp.sum(jnp.arange(rows)[None, :, None] >= ends_MxK[:, None, :], axis=-1)
  return jax.nn.one_hot(task_MxR, counts_MxK.shape[-1], dtype=jnp.float32)


def dense_loss(U_MxDxN, D_MxKxJxN, x_SxRxD, x_of_member, counts_MxK, B_KxDxJ, sqrt_lam_KxJ, weight):
  """(M,) weight · Σ_rows ‖y − ŷ‖², computing every task's target and prediction for every row and masking.

  x_SxRxD holds the inputs of S distinct seeds; member m reads slab x_of_member[m] (static numpy: members that
  share a seed, e.g. different β, share inputs and targets). Costs R·d² per distinct seed for the targets plus
  ~5·R·d·N per member. Grouping rows by task instead (padded per-task blocks, ~2·R·d·N + P·d·r) needs row
  gathers and layout copies that made it 2–4× slower on XLA:CPU at every size tried (d = 256 … 1024).
  """
  M, K, J, N = D_MxKxJxN.shape
  S, R, d = x_SxRxD.shape
  x_of_member = np.asarray(x_of_member)
  B_DxE = jnp.transpose(B_KxDxJ, (1, 0, 2)).reshape(d, K * J)  # E = K·J = d outputs, task-major
  y_SxRxE = (x_SxRxD @ B_DxE) * sqrt_lam_KxJ.reshape(-1)
  same = np.array_equal(x_of_member, np.arange(S))
  x_MxRxD = x_SxRxD if same else x_SxRxD[x_of_member]
  y_MxRxE = y_SxRxE if same else y_SxRxE[x_of_member]
  h_MxRxN = jnp.einsum("mrd,mdn->mrn", x_MxRxD, U_MxDxN)
  y_hat = jnp.einsum("mrn,men->mre", h_MxRxN, D_MxKxJxN.reshape(M, K * J, N))
  mask_MxRxE = jnp.repeat(rows_mask(counts_MxK, R), J, axis=-1)
  err = (y_MxRxE - y_hat) * mask_MxRxE
  return jnp.sum(err * err, axis=(1, 2)) * weight


def measure(U_DxN, D_KxJxN, B_KxDxJ, lam_KxJ, pi_K, w_F_K, w_r_K):
  """Population metrics of one member, in closed form (x ~ N(0, I), so nothing is sampled).

  w_F_K / w_r_K: π_k on the frequent / rare tasks, 0 elsewhere. Gradients are taken with the model's own
  decoders: G_F = ∇_U Σ_k w_F,k ℓ_k(U, D_k), the frequent part of the expected training gradient (toy_theory's
  grad_F convention; with optimal decoders it IS toy_theory.grad_F). They are computed in the feature basis
  (Bᵀ G), which leaves norms and cosines unchanged and avoids a d×d×N product.
  """
  K, J, N = D_KxJxN.shape
  d = U_DxN.shape[0]
  A_KxJxN = jnp.einsum("kdj,dn->kjn", B_KxDxJ, U_DxN)  # b_{k,j}ᵀ U
  A_DxN = A_KxJxN.reshape(K * J, N)
  # span(U) = span(A) up to the rotation B; row norms of an orthonormal basis of A are ‖P_U b_{k,j}‖².
  retention_KxJ = jnp.sum(jnp.square(jnp.linalg.qr(A_DxN)[0]), axis=-1).reshape(K, J)
  gram_NxN = A_DxN.T @ A_DxN  # UᵀU
  sqrt_lam = jnp.sqrt(lam_KxJ)
  trace_K = lam_KxJ.sum(-1)
  # ℓ_k = Tr(C_k) − 2 Tr(D_k Uᵀ B_k Λ^½) + Tr(D_k UᵀU D_kᵀ)
  cross_K = jnp.einsum("kjn,kjn->k", D_KxJxN, sqrt_lam[:, :, None] * A_KxJxN)
  quad_K = jnp.einsum("kjn,nm,kjm->k", D_KxJxN, gram_NxN, D_KxJxN)
  loss_K = trace_K - 2.0 * cross_K + quad_K
  signal_K = jnp.sum(retention_KxJ * lam_KxJ, -1) / trace_K
  frac = N / d
  signal_norm_K = (signal_K - frac) / (1.0 - frac) if frac < 1.0 else jnp.full_like(signal_K, jnp.nan)
  u_F = w_F_K[:, None] * lam_KxJ
  u_r = w_r_K[:, None] * lam_KxJ

  def grad(w_K):  # Bᵀ ∇_U Σ_k w_k ℓ_k = −2 E + 2 A S
    E = (w_K[:, None] * sqrt_lam)[:, :, None] * D_KxJxN
    S = jnp.einsum("k,kjn,kjm->nm", w_K, D_KxJxN, D_KxJxN)
    return (-2.0 * E.reshape(K * J, N) + 2.0 * A_DxN @ S)

  g_F, g_r = grad(w_F_K), grad(w_r_K)
  n_F, n_r = jnp.linalg.norm(g_F), jnp.linalg.norm(g_r)
  tiny = jnp.finfo(jnp.float32).tiny
  return {
      "loss_K": loss_K,
      "loss_norm_K": loss_K / trace_K,
      "loss": jnp.sum(pi_K * loss_K),
      "retention_KxJ": retention_KxJ,
      "signal_K": signal_K,
      "signal_norm_K": signal_norm_K,
      "delta_F": jnp.sum(u_F * (1.0 - retention_KxJ)),
      "signal_frequent": jnp.sum(u_F * retention_KxJ) / jnp.sum(u_F),
      "signal_rare": jnp.sum(u_r * retention_KxJ) / jnp.maximum(jnp.sum(u_r), tiny),
      "grad_F_norm": n_F,
      "grad_r_norm": n_r,
      "cos_rF": jnp.sum(g_F * g_r) / jnp.maximum(n_F * n_r, tiny),
  }
