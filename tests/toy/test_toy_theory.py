"""Tests for scaling/toy/theory.py: hand-worked small cases plus independent dense numpy computations."""

import numpy as np
import pytest

from scaling.toy import theory as tt


def _generic_spec(K=6, r=4, seed=0, beta=None):
  """Random real-valued per-task α and β: utilities are distinct, so every top-N eigenspace is unique."""
  rng = np.random.default_rng(1000 + seed)
  return tt.ToySpec(K=K, r=r, beta=float(rng.uniform(0.5, 2.0)) if beta is None else beta,
                    alpha=tuple(rng.uniform(0.3, 3.0, size=K)), seed=seed)


def _projector(U):
  return U @ U.T


def _random_orthonormal(rng, d, N):
  return np.linalg.qr(rng.standard_normal((d, N)))[0]


# ---- spec basics ---------------------------------------------------------------------------------------------


def test_spec_frequencies_spectra_and_normalisations():
  # K=2, β=1: weights (1, 1/2) → π = (2/3, 1/3). r=2, α=1: λ = (1, 1/2) ("first"), (2/3, 1/3) ("trace").
  s = tt.ToySpec(K=2, r=2, beta=1.0, alpha=1.0)
  np.testing.assert_allclose(s.pi, [2 / 3, 1 / 3])
  np.testing.assert_allclose(s.lam, [[1, 0.5], [1, 0.5]])
  np.testing.assert_allclose(tt.ToySpec(K=2, r=2, beta=1.0, alpha=1.0, lam_norm="trace").lam,
                             [[2 / 3, 1 / 3], [2 / 3, 1 / 3]])
  # Per-task α = (3, 0): task 1 λ = (1, 1/8), task 2 λ = (1, 1).
  np.testing.assert_allclose(tt.ToySpec(K=2, r=2, beta=1.0, alpha=(3, 0)).lam, [[1, 1 / 8], [1, 1]])
  np.testing.assert_allclose(tt.utilities(s), [[2 / 3, 1 / 3], [1 / 3, 1 / 6]])
  with pytest.raises(ValueError):
    tt.ToySpec(K=3, alpha=(1.0, 2.0))
  with pytest.raises(ValueError):
    tt.ToySpec(alpha=-1.0)
  hash(tt.ToySpec(K=2, alpha=[1, 2]))  # list → tuple, still hashable


def test_basis_is_deterministic_orthogonal_and_blocks_are_features():
  s = tt.ToySpec(K=4, r=3, seed=7)
  B = s.basis()
  np.testing.assert_allclose(B.T @ B, np.eye(12), atol=1e-12)
  # Same construction by hand: QR of default_rng(seed) Gaussian with sign fix.
  q, r = np.linalg.qr(np.random.default_rng(7).standard_normal((12, 12)))
  np.testing.assert_allclose(B, q * np.sign(np.diag(r)), atol=1e-12)
  assert not np.allclose(B, s.basis(seed=8))
  fd = s.feature_directions
  np.testing.assert_array_equal(fd[2, 1], B[:, 2 * 3 + 1])  # b_{3,2} is column (3−1)·3 + (2−1)
  # C_k has eigenvalues λ_k on its own block and 0 elsewhere; M = Σ π_k C_k.
  C2 = s.C(2)
  np.testing.assert_allclose(C2 @ fd[1].T, fd[1].T * s.lam[1], atol=1e-12)
  np.testing.assert_allclose(C2 @ fd[0].T, 0, atol=1e-12)
  np.testing.assert_allclose(s.M(), sum(s.pi[k] * s.C(k + 1) for k in range(4)), atol=1e-12)
  with pytest.raises(ValueError):
    s.C(0)


# ---- Theorem 3 -----------------------------------------------------------------------------------------------


def test_top_features_hand_case_with_tie():
  # u = [[2/3, 1/3], [1/3, 1/6]]. u_{1,2} = u_{2,1} = 1/3 exactly (π_1·½ vs π_2·1 may differ by an ulp in
  # floats): tie → smaller task. Order (1,1), (1,2), (2,1), (2,2):
  # N=1 → n=(1,0); N=2 → (2,0); N=3 → (2,1); N=4 → (2,2).
  s = tt.ToySpec(K=2, r=2, beta=1.0, alpha=1.0)
  np.testing.assert_array_equal(tt.n_features(s, [0, 1, 2, 3, 4]), [[0, 0], [1, 0], [2, 0], [2, 1], [2, 2]])
  np.testing.assert_array_equal(tt.top_features(s, 2), [[True, True], [False, False]])
  np.testing.assert_array_equal(tt.feature_entry_width(s), [[1, 2], [3, 4]])
  np.testing.assert_array_equal(tt.n_features(s, 99), [2, 2])  # N > d keeps everything


def test_tie_break_survives_float_rounding():
  # K=r=4, β=α=1: u_{k,j} ∝ 1/(k·j). Products k·j below 12: 1; 2,2; 3,3; 4,4,4; 6,6; 8,8; 9 → 13 features.
  # Then the exact tie k·j = 12 between (3,4) and (4,3) — in floats π_4/3 exceeds π_3/4 by an ulp, but the tie
  # goes to task 3. So N=14 keeps n = (4, 4, 4, 2), N=15 keeps (4, 4, 4, 3).
  s = tt.ToySpec(K=4, r=4, beta=1.0, alpha=1.0)
  np.testing.assert_array_equal(tt.n_features(s, 14), [4, 4, 4, 2])
  np.testing.assert_array_equal(tt.n_features(s, 15), [4, 4, 4, 3])


def test_top_features_and_optimal_loss_per_task_alpha():
  # β=1, α=(3, 0): π=(2/3, 1/3), λ_1=(1, 1/8), λ_2=(1, 1) → u = [[2/3, 1/12], [1/3, 1/3]].
  # Order (1,1), (2,1), (2,2) [tie inside task 2 → j=1 first], (1,2).
  # N=2: n=(1,1); loss task 1 = 1/8, Tr(C_1)=9/8 → 1/9; task 2 loss 1, Tr=2 → 1/2.
  # N=3: n=(1,2); losses (1/8, 0).
  s = tt.ToySpec(K=2, r=2, beta=1.0, alpha=(3.0, 0.0))
  np.testing.assert_array_equal(tt.n_features(s, 2), [1, 1])
  np.testing.assert_array_equal(tt.n_features(s, 3), [1, 2])
  res = tt.optimal_task_loss(s, 2)
  np.testing.assert_allclose(res.loss, [1 / 8, 1])
  np.testing.assert_allclose(res.normalised, [1 / 9, 1 / 2])
  both = tt.optimal_task_loss(s, np.array([0, 3, 4]))
  np.testing.assert_allclose(both.loss, [[9 / 8, 2], [1 / 8, 0], [0, 0]])
  # The encoder spans exactly b_{1,1}, b_{2,1}, b_{2,2}, in rank order.
  B = s.basis()
  np.testing.assert_array_equal(tt.optimal_encoder(s, 3), B[:, [0, 2, 3]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_optimum_is_top_eigenspace_of_M(seed):
  s = _generic_spec(K=6, r=4, seed=seed)
  # Independent computation: eigh of the dense M built from C_k.
  M = sum(s.pi[k] * s.C(k + 1) for k in range(s.K))
  evals, evecs = np.linalg.eigh(M)
  evecs = evecs[:, ::-1]
  np.testing.assert_allclose(np.sort(evals)[::-1], np.sort(tt.utilities(s).ravel())[::-1], atol=1e-12)
  for N in (1, 3, 7, 12, 23):
    U = tt.optimal_encoder(s, N)
    assert U.shape == (24, N)
    np.testing.assert_allclose(U.T @ U, np.eye(N), atol=1e-12)
    np.testing.assert_allclose(_projector(U), _projector(evecs[:, :N]), atol=1e-8)
    chk = tt.check_optimum_eigh(s, N)
    assert chk.gap > 1e-8 and chk.proj_err < 1e-8 and chk.eig_err < 1e-12
    # Optimal loss equals the population loss Tr(C_k) − Tr(P_U C_k) of that U, task by task.
    P = _projector(U)
    direct = np.array([np.trace(s.C(k + 1)) - np.trace(P @ s.C(k + 1)) for k in range(s.K)])
    np.testing.assert_allclose(tt.optimal_task_loss(s, N).loss, direct, atol=1e-10)


def test_optimum_beats_random_subspaces():
  s = _generic_spec(seed=3)
  rng = np.random.default_rng(0)
  best = (s.pi * tt.optimal_task_loss(s, 5).loss).sum()
  U = np.stack([_random_orthonormal(rng, s.d, 5) for _ in range(50)])
  total = (s.pi * tt.normalised_loss_from_U(U, s) * s.trace_C).sum(-1)
  assert np.all(total > best)


# ---- Fig 2a boundary, learnability ----------------------------------------------------------------------------


def test_phase_boundary_and_learning_width_hand_case():
  # Same spec as the per-task-α case: entry widths [[1, 4], [2, 3]].
  s = tt.ToySpec(K=2, r=2, beta=1.0, alpha=(3.0, 0.0))
  np.testing.assert_array_equal(tt.phase_boundary(s), [[1, 4], [2, 3]])
  np.testing.assert_array_equal(tt.phase_boundary(s, widths=[2, 1]), [[1, np.inf], [2, np.inf]])
  np.testing.assert_array_equal(tt.phase_boundary(s, widths=[4, 1]), [[1, 4], [4, 4]])
  # Normalised optimal losses: task 1 (N=1..4) 1/9, 1/9, 1/9, 0; task 2: 1, 1/2, 0, 0.
  np.testing.assert_array_equal(tt.smallest_learning_width(s, tol=0.5), [1, 2])
  np.testing.assert_array_equal(tt.smallest_learning_width(s, tol=0.1), [4, 3])
  np.testing.assert_array_equal(tt.smallest_learning_width(s, widths=[1, 2], tol=0.1), [np.inf, np.inf])


# ---- frequent set, Proposition 6 ------------------------------------------------------------------------------


def test_frequent_set_mu_F_and_critical_width_hand_case():
  # K=4, β=1: π = (12, 6, 4, 3)/25 = (.48, .24, .16, .12); cumulative .48, .72, .88 → F = {1, 2, 3}
  # (task 3 crosses 80% and is included). With mass .72 exactly, F = {1, 2}.
  s = tt.ToySpec(K=4, r=2, beta=1.0, alpha=1.0)
  np.testing.assert_array_equal(tt.frequent_set(s), [True, True, True, False])
  np.testing.assert_array_equal(tt.frequent_set(s, mass=0.72), [True, True, False, False])
  np.testing.assert_array_equal(tt.frequent_set(s, mass=1.0), [True] * 4)
  # A mass within rounding of a prefix's mass counts as reached.
  np.testing.assert_array_equal(tt.frequent_set(s, mass=s.pi[:2].sum() + 1e-13), [True, True, False, False])
  # λ = (1, 1/2): F's utilities .48, .24 | .24, .12 | .16, .08 → μ_F = (.48, .24, .24, .16, .12, .08, 0, 0).
  np.testing.assert_allclose(tt.mu_F(s), [.48, .24, .24, .16, .12, .08, 0, 0], atol=1e-15)
  # Rare task 4, feature 1: u = .12, μ_5 = .12 <= .12 (a tie counts), μ_4 = .16 > .12 → N_crit = 5.
  # Feature 2: u = .06 → first μ_N <= .06 is μ_7 = 0 → N_crit = 7.
  assert tt.critical_width(s, 4) == 5
  assert tt.critical_width(s, 4, feature=2) == 7
  assert tt.critical_width(s, 4, max_width=4) is None
  with pytest.raises(ValueError):
    tt.critical_width(s, 2)  # in F
  # The paper's δ_F*(5) = Σ_{i > 5} μ_i = μ_6 = .08, the Eckart–Young minimum at width 5; the residual when the
  # rare feature enters in slot 5 is μ_5 + μ_6 = .20.
  assert tt.delta_F_star(s, 5) == pytest.approx(0.08) == tt.delta_F_min(s, 5)
  assert tt.delta_F_entry(s, 5) == pytest.approx(0.20)
  assert tt.delta_F_entry(s, 5) == pytest.approx(tt.delta_F_star(s, 5) + tt.mu_F(s)[4])
  np.testing.assert_allclose(tt.delta_F_min(s, np.array([0, 8, 20])), [1.32, 0, 0])
  assert np.isnan(tt.delta_F_star(s, None)) and np.isnan(tt.delta_F_entry(s, None))


@pytest.mark.parametrize("seed", [0, 1])
def test_mu_F_matches_eigh_of_M_F(seed):
  s = _generic_spec(K=6, r=4, seed=seed)
  F = tt.frequent_set(s)
  M_F = sum(s.pi[k] * s.C(k + 1) for k in range(s.K) if F[k])
  # Independent F: prefix of the sorted π reaching 80%.
  cum = np.cumsum(np.sort(s.pi)[::-1])
  assert F.sum() == np.argmax(cum >= 0.8) + 1 and F[: F.sum()].all()
  np.testing.assert_allclose(tt.mu_F(s), np.sort(np.linalg.eigvalsh(M_F))[::-1], atol=1e-12)
  np.testing.assert_allclose(tt.mu_F(s)[0], np.linalg.eigvalsh(M_F).max(), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_critical_width_is_where_rare_feature_enters_F_only_problem(seed):
  s = _generic_spec(K=8, r=4, seed=seed, beta=1.5)
  F = tt.frequent_set(s)
  u = tt.utilities(s)
  mu = np.sort(np.linalg.eigvalsh(s.M(F)))[::-1]  # dense, independent of the closed form
  for rare in np.flatnonzero(~F):
    sub = u * (F | (np.arange(s.K) == rare))[:, None]  # the F ∪ {rare} problem
    n_crit = tt.critical_width(s, int(rare) + 1)
    assert not tt.top_mask(sub, n_crit - 1)[rare, 0]
    assert tt.top_mask(sub, n_crit)[rare, 0]
    # Definition straight from Proposition 6 on eigh's spectrum.
    assert n_crit == 1 + np.flatnonzero(mu <= u[rare, 0] + 1e-15)[0]
    # Feature j enters the joint problem after the rare task's own j−1 earlier features.
    for j in range(1, s.r + 1):
      nc = tt.critical_width(s, int(rare) + 1, feature=j)
      assert tt.top_mask(sub, nc + j - 1)[rare, j - 1] and not tt.top_mask(sub, nc + j - 2)[rare, j - 1]


# ---- δ_F and the measurements ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_delta_F_of_optimal_encoders_matches_closed_form(seed):
  s = _generic_spec(K=6, r=4, seed=seed)
  F = tt.frequent_set(s)
  M_F = s.M(F)
  u_F = tt.utilities(s) * F[:, None]
  for N in (2, 5, 11):
    U = tt.optimal_encoder(s, N)
    dense = np.trace(M_F) - np.trace(_projector(U) @ M_F)
    closed = u_F[~tt.top_features(s, N)].sum()  # F's utilities left out of the top N
    assert tt.delta_F(U, s) == pytest.approx(dense, abs=1e-12)
    assert tt.delta_F(U, s) == pytest.approx(closed, abs=1e-12)
    # The F-only optimum attains the Eckart–Young minimum.
    U_F = tt.encoder_from_mask(s, tt.top_mask(u_F, N))
    assert tt.delta_F(U_F, s) == pytest.approx(tt.delta_F_min(s, N), abs=1e-12)
  # delta_F_entry is the δ_F of the optimal width-N_crit encoder of the F ∪ {rare} problem; the paper's δ_F* is
  # the δ_F of the F-only optimum at width N_crit.
  rare = int(np.flatnonzero(~F)[-1])
  n_crit = tt.critical_width(s, rare + 1)
  sub = tt.utilities(s) * (F | (np.arange(s.K) == rare))[:, None]
  U = tt.encoder_from_mask(s, tt.top_mask(sub, n_crit))
  assert tt.delta_F(U, s) == pytest.approx(tt.delta_F_entry(s, n_crit), abs=1e-12)
  U_F = tt.encoder_from_mask(s, tt.top_mask(tt.utilities(s) * F[:, None], n_crit))
  assert tt.delta_F(U_F, s) == pytest.approx(tt.delta_F_star(s, n_crit), abs=1e-12)


def test_signal_of_optimal_encoder_is_one_minus_optimal_loss():
  s = _generic_spec(K=5, r=4, seed=4)
  for N in (1, 4, 9, 20):
    U = tt.optimal_encoder(s, N)
    np.testing.assert_allclose(tt.signal_captured(U, s), 1 - tt.optimal_task_loss(s, N).normalised, atol=1e-12)
    np.testing.assert_allclose(tt.normalised_loss_from_U(U, s), tt.optimal_task_loss(s, N).normalised,
                               atol=1e-12)
    np.testing.assert_allclose(tt.feature_retention(U, s), tt.top_features(s, N), atol=1e-12)
    # Columns are in rank order: every prefix is the optimal encoder of that width.
    for n in range(N + 1):
      np.testing.assert_allclose(tt.feature_retention(U[:, :n], s), tt.top_features(s, n), atol=1e-12)
  # s̃ by hand: K=4, r=2, β=α=1 → u = [.48 .24 | .24 .12 | .16 .08 | .12 .06]; N=2 keeps (1,1) and, by the
  # tie rule, (1,2): task 1 fully (s̃ = 1), the others not at all (s̃ = (0 − 2/8)/(1 − 2/8) = −1/3).
  h = tt.ToySpec(K=4, r=2, beta=1.0, alpha=1.0)
  np.testing.assert_allclose(tt.signal_normalised(tt.optimal_encoder(h, 2), h), [1, -1 / 3, -1 / 3, -1 / 3],
                             atol=1e-12)


def test_random_encoder_signal_is_N_over_d_and_batches_match():
  s = tt.ToySpec(K=8, r=8, beta=1.0, alpha=2.0)  # d = 64
  rng = np.random.default_rng(0)
  U = rng.standard_normal((200, 64, 16))  # Gaussian U: uniformly random 16-dim subspace
  sig = tt.signal_captured(U, s)
  assert sig.shape == (200, 8)
  np.testing.assert_allclose(sig.mean(0), 16 / 64, atol=0.03)  # E‖P_U b‖² = N/d
  assert abs(tt.signal_normalised(U, s).mean()) < 0.03
  # Batched call equals per-encoder calls (and a 2-D batch works).
  np.testing.assert_allclose(sig[:3], np.stack([tt.signal_captured(U[i], s) for i in range(3)]), atol=1e-12)
  assert tt.delta_F(U.reshape(20, 10, 64, 16), s).shape == (20, 10)
  # Dense reference for one U.
  P = U[0] @ np.linalg.inv(U[0].T @ U[0]) @ U[0].T
  ref = [np.trace(P @ s.C(k + 1)) / np.trace(s.C(k + 1)) for k in range(8)]
  np.testing.assert_allclose(sig[0], ref, atol=1e-10)
  assert np.isnan(tt.signal_normalised(np.eye(64), s)).all()


def test_measurements_depend_only_on_span_and_handle_rank_deficiency():
  s = _generic_spec(K=4, r=3, seed=5)
  rng = np.random.default_rng(1)
  Q = _random_orthonormal(rng, s.d, 3)
  ref = tt.feature_retention(Q, s)
  # Invertible mixing, duplicated and zero columns do not change span(U).
  mixed = Q @ rng.standard_normal((3, 3))
  dup = np.concatenate([Q, 2 * Q[:, :1], np.zeros((s.d, 1))], axis=1)
  np.testing.assert_allclose(tt.feature_retention(mixed, s), ref, atol=1e-10)
  np.testing.assert_allclose(tt.feature_retention(dup, s), ref, atol=1e-10)
  np.testing.assert_allclose(tt.feature_retention(np.zeros((s.d, 2)), s), 0)
  assert tt.delta_F(np.zeros((s.d, 2)), s) == pytest.approx(np.trace(s.M(tt.frequent_set(s))))
  with pytest.raises(ValueError):
    tt.feature_retention(np.zeros((s.d + 1, 2)), s)


# ---- Theorem 4 ------------------------------------------------------------------------------------------------


def _frequent_loss_dense(U, s):
  """Σ_{k∈F} π_k min_D E‖y − D Uᵀx‖², with the optimal decoder solved by least squares (independent path)."""
  F = tt.frequent_set(s)
  total = 0.0
  for k in np.flatnonzero(F):
    C = s.C(k + 1)
    Bk = s.basis()[:, k * s.r : (k + 1) * s.r]
    A = np.sqrt(s.lam[k])[:, None] * Bk.T  # y = A x
    G = U.T @ U
    D = A @ U @ np.linalg.pinv(G)  # normal equations of min_D E‖Ax − D Uᵀx‖²
    total += s.pi[k] * (np.trace(C) - 2 * np.trace(D @ U.T @ A.T) + np.trace(D @ G @ D.T))
  return total


def test_grad_F_is_the_true_gradient():
  s = _generic_spec(K=5, r=3, seed=6)
  rng = np.random.default_rng(2)
  U = rng.standard_normal((s.d, 4))
  assert tt.delta_F(U, s) == pytest.approx(_frequent_loss_dense(U, s), abs=1e-10)
  G = tt.grad_F(U, s)
  eps = 1e-6
  for _ in range(5):
    E = rng.standard_normal(U.shape)
    fd = (_frequent_loss_dense(U + eps * E, s) - _frequent_loss_dense(U - eps * E, s)) / (2 * eps)
    assert np.sum(G * E) == pytest.approx(fd, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem4_bound_holds_at_random_encoders(seed):
  s = _generic_spec(K=6, r=4, seed=seed)
  rng = np.random.default_rng(10 + seed)
  for N in (2, 6, 12):
    # Orthonormal U: the theorem's setting.
    U = np.stack([_random_orthonormal(rng, s.d, N) for _ in range(20)])
    G = tt.grad_F(U, s)
    norm = np.linalg.norm(G, axis=(-2, -1))
    bound = tt.grad_F_bound(s, tt.delta_F(U, s))
    assert np.all(norm <= bound * (1 + 1e-9))
    assert np.all(norm > 0.05 * bound)  # not vacuous: a real gradient, same order as the bound
    # Independent dense gradient for one U: −2 (I − P) M_F U.
    M_F = s.M(tt.frequent_set(s))
    dense = -2 * (np.eye(s.d) - _projector(U[0])) @ M_F @ U[0]
    np.testing.assert_allclose(G[0], dense, atol=1e-12)
    # General full-rank U: the bound with 1/σ_min(U).
    V = rng.standard_normal((20, s.d, N))
    sig_min = np.linalg.svd(V, compute_uv=False)[:, -1]
    norm_v = np.linalg.norm(tt.grad_F(V, s), axis=(-2, -1))
    assert np.all(norm_v <= tt.grad_F_bound(s, tt.delta_F(V, s), sigma_min=sig_min) * (1 + 1e-9))


def test_gradient_vanishes_at_frequent_optimum():
  # At the F-only optimal encoder δ_F is minimal (stationary) — Theorem 4's "finished frequent tasks" limit.
  s = _generic_spec(K=6, r=4, seed=1)
  u_F = tt.utilities(s) * tt.frequent_set(s)[:, None]
  U = tt.encoder_from_mask(s, tt.top_mask(u_F, 7))
  np.testing.assert_allclose(tt.grad_F(U, s), 0, atol=1e-12)


def test_paper_scale_spec_is_cheap_and_sane():
  s = tt.ToySpec()  # K = r = 32, β = 1, α = 2: no dense d×d work below
  assert tt.ToySpec(beta=1.5).pi[-1] == pytest.approx(0.0025, abs=1e-4)  # PAPER §2: rarest task 0.25% at β=1.5
  F = tt.frequent_set(s)
  assert F[:14].all() and not F[14:].any()  # H_14/H_32 ≈ 0.801 is the first prefix past 0.8
  crit = tt.critical_widths(s)[:, 0]
  assert np.isnan(crit[F]).all()
  rare = crit[~F]
  assert np.all(np.diff(rare) >= 0)  # rarer task → wider model needed
  assert np.all((rare >= 1) & (rare <= F.sum() * s.r + 1))
  widths = [8, 16, 32, 64, 128, 256, 512]
  loss = tt.optimal_task_loss(s, np.array(widths)).normalised
  assert np.all(np.diff(loss, axis=0) <= 1e-15) and np.all(np.diff(loss, axis=1) >= -1e-15)
