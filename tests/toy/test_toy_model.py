"""The toy student (scaling/toy/model.py): losses and population metrics against toy_theory and dense numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling.toy import data as td
from scaling.toy import model as tm
from scaling.toy import theory as tt

DATA = td.ToyData(K=6, r=4, beta=1.2, alpha=1.5, lam_norm="first", basis_seed=3, batch_size=40)
SPEC = DATA.spec()
ARRAYS = td.TaskArrays.build(SPEC)


# Everything under jit: eager JAX compiles each primitive separately, which dominates small tests on CPU.
@jax.jit
def _measure(U, D):
  F = tt.frequent_set(SPEC)
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  return tm.measure(U, D, ARRAYS.B_KxDxR, f32(SPEC.lam), f32(SPEC.pi), f32(SPEC.pi * F), f32(SPEC.pi * ~F))


def _init(cfg, seed):
  return jax.jit(lambda k: tm.init_params(cfg, k))(jax.random.key(seed))


@pytest.mark.parametrize("variant", tm.VARIANTS)
def test_param_count_matches_the_nnx_tree(variant):
  cfg = tm.ToyModelConfig(d=24, width=5, K=6, r=4, variant=variant)
  model = tm.ToyModel(cfg, rngs=nnx.Rngs(0))
  assert sum(int(np.prod(v.shape)) for v in jax.tree.leaves(model.params())) == tm.param_count(cfg)
  assert sorted(tm.init_params(cfg, jax.random.key(0))) == (["D", "U"] if variant == "plain" else ["W"])


def test_config_rejects_bad_width_and_variant():
  with pytest.raises(ValueError, match="width"):
    tm.ToyModelConfig(d=8, width=9, K=2, r=4)
  with pytest.raises(ValueError, match="variant"):
    tm.ToyModelConfig(d=8, width=2, K=2, r=4, variant="pca")


def test_measure_matches_toy_theory_and_dense_numpy():
  p = _init(tm.ToyModelConfig(d=SPEC.d, width=7, K=6, r=4), 1)
  out = jax.device_get(_measure(p["U"], p["D"]))
  U, D = np.asarray(p["U"], np.float64), np.asarray(p["D"], np.float64)
  np.testing.assert_allclose(out["retention_KxJ"], tt.feature_retention(U, SPEC), atol=2e-6)
  np.testing.assert_allclose(out["signal_K"], tt.signal_captured(U, SPEC), atol=2e-6)
  np.testing.assert_allclose(out["signal_norm_K"], tt.signal_normalised(U, SPEC), atol=2e-6)
  np.testing.assert_allclose(out["delta_F"], tt.delta_F(U, SPEC), rtol=1e-5)
  # Population loss with the model's own decoders: E‖Λ^½Bₖᵀx − DₖUᵀx‖² = ‖Λ^½Bₖᵀ − DₖUᵀ‖²_F for x ~ N(0, I).
  B = SPEC.basis()
  want = [np.sum((np.sqrt(SPEC.lam[k])[:, None] * B[:, 4 * k:4 * k + 4].T - D[k] @ U.T) ** 2) for k in range(6)]
  np.testing.assert_allclose(out["loss_K"], want, rtol=1e-5)
  np.testing.assert_allclose(out["loss"], np.dot(SPEC.pi, want), rtol=1e-5)
  # Encoder gradients of the frequent / rare parts with these decoders, by dense numpy.
  F = tt.frequent_set(SPEC)

  def grad(mask):
    g = np.zeros_like(U)
    for k in np.flatnonzero(mask):
      Bk = B[:, 4 * k:4 * k + 4]
      g += SPEC.pi[k] * (-2 * Bk @ (np.sqrt(SPEC.lam[k])[:, None] * D[k]) + 2 * U @ D[k].T @ D[k])
    return g

  gF, gr = grad(F), grad(~F)
  np.testing.assert_allclose(out["grad_F_norm"], np.linalg.norm(gF), rtol=1e-4)
  np.testing.assert_allclose(out["grad_r_norm"], np.linalg.norm(gr), rtol=1e-4)
  np.testing.assert_allclose(out["cos_rF"], np.sum(gF * gr) / np.linalg.norm(gF) / np.linalg.norm(gr), atol=1e-5)


def test_orthonormal_variant_loss_is_toy_theorys_formula_for_its_U():
  """The theory-faithful student: orthonormal U, closed-form decoders, loss = Tr(C_k) − Tr(P_U C_k)."""
  cfg = tm.ToyModelConfig(d=SPEC.d, width=7, K=6, r=4, variant="orthonormal")
  p = _init(cfg, 2)
  U, D = jax.jit(lambda p: (lambda U: (U, tm.decoders(p, "orthonormal", U, ARRAYS.B_KxDxR, ARRAYS.sqrt_lam_KxR)))(
      tm.encoder(p, "orthonormal")))(p)
  Q = np.asarray(U, np.float64)
  np.testing.assert_allclose(Q.T @ Q, np.eye(7), atol=1e-5)
  out = jax.device_get(_measure(U, D))
  np.testing.assert_allclose(out["loss_norm_K"], tt.normalised_loss_from_U(Q, SPEC), atol=1e-5)
  np.testing.assert_allclose(out["loss_K"], tt.normalised_loss_from_U(Q, SPEC) * SPEC.trace_C, atol=1e-5)
  # With optimal decoders the frequent gradient is toy_theory's G_F, and Theorem 4's bound holds.
  np.testing.assert_allclose(out["grad_F_norm"], np.linalg.norm(tt.grad_F(Q, SPEC)), rtol=1e-4)
  assert out["grad_F_norm"] <= tt.grad_F_bound(SPEC, tt.delta_F(Q, SPEC))
  # The sampled training loss has that expectation: mean over 400 batches of one seed, 16000 rows.
  counts = np.stack([td.step_counts(DATA, 0, s) for s in range(400)])
  one = lambda s, c: tm.dense_loss(U[None], D[None], td.gaussian(0, s, 40, SPEC.d)[None], [0], c[None],  # noqa: E731
                                   ARRAYS.B_KxDxR, ARRAYS.sqrt_lam_KxR, 1 / 40)[0]
  losses = jax.jit(jax.vmap(one))(jnp.arange(400), jnp.asarray(counts, jnp.int32))
  expected = np.mean(counts @ (tt.normalised_loss_from_U(Q, SPEC) * SPEC.trace_C)) / 40
  assert abs(float(np.mean(losses)) - expected) < 0.03 * expected


def test_dense_loss_matches_the_per_row_reference_with_gradients():
  cfg = tm.ToyModelConfig(d=SPEC.d, width=5, K=6, r=4)
  model = tm.ToyModel(cfg, rngs=nnx.Rngs(3))
  params = model.params()
  # Two members reading two seeds in swapped order: member m uses seed slab x_of_member[m].
  x_of_member = np.asarray([1, 0])
  seeds, step = (11, 12), 4
  counts = [td.step_counts(DATA, seeds[x_of_member[m]], step) for m in range(2)]
  x_S = jnp.stack([td.gaussian(s, step, 40, SPEC.d) for s in seeds])
  params_M = jax.tree.map(lambda a: jnp.stack([a, 1.5 * a]), params)

  def dense(p_M):
    return tm.dense_loss(p_M["U"], p_M["D"], x_S, x_of_member, jnp.asarray(np.stack(counts), jnp.int32),
                         ARRAYS.B_KxDxR, ARRAYS.sqrt_lam_KxR, 1 / 40)

  def ref(p, m):
    x = x_S[x_of_member[m]]
    task = jnp.asarray(td.row_tasks(counts[m]))
    y_hat = jnp.einsum("rn,rjn->rj", x @ p["U"], p["D"][task])
    return jnp.sum((td.targets(x, task, ARRAYS) - y_hat) ** 2) / 40

  got, g_dense = jax.jit(lambda p: (dense(p), jax.grad(lambda q: jnp.sum(dense(q)))(p)))(params_M)
  for m in range(2):
    p_m = jax.tree.map(lambda a, m=m: a[m], params_M)
    want, g_ref = jax.jit(jax.value_and_grad(ref), static_argnums=1)(p_m, m)
    np.testing.assert_allclose(got[m], want, rtol=2e-5)
    for k in g_ref:
      np.testing.assert_allclose(g_dense[k][m], g_ref[k], rtol=2e-4, atol=1e-6)
  # The NNX forward pass is the same per-row model.
  x = x_S[1]
  task = jnp.asarray(td.row_tasks(counts[0]))
  np.testing.assert_allclose(model(x, task, ARRAYS.B_KxDxR, ARRAYS.sqrt_lam_KxR),
                             jnp.einsum("rn,rjn->rj", x @ params["U"], params["D"][task]), rtol=1e-6)
