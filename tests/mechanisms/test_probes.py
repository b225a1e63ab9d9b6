"""Probes: near 1 / the known mode count on models built to hold the feature, near chance at random init."""

import jax
import numpy as np
import pytest

from scaling.lm import config as configlib
from scaling.lm import step as step_lib
from scaling.mechanisms import fourier, probes
from tests import helpers

MODES = (3, 17, 41)


@pytest.fixture(scope="module")
def probe_setup():
  c = helpers.tiny_config()
  c.data.vocab_size = 256  # room for both tasks' symbol sets
  setup = step_lib.build(configlib.resolve(c), jax.devices()[:1])
  pr = probes.from_config(setup)
  assert set(pr.tasks) == {"cmp", "add"}
  return setup, pr, jax.device_get(setup.init()["params"])


def _constructed(params, pr, silence_blocks: bool, amp: float):
  """Token embeddings with the rank along one direction (cmp) and Fourier features of φ at MODES (add)."""
  q = jax.tree.map(np.array, params)
  rng = np.random.default_rng(0)
  d = q["embed"].shape[1]
  if silence_blocks:  # zero sublayer outputs: every layer's residual stream is the embedding
    q["blocks"]["attn"]["wo"][:] = 0
    q["blocks"]["mlp"]["w_down"][:] = 0
  cmp, add = pr.tasks["cmp"], pr.tasks["add"]
  u = rng.normal(size=d)
  q["embed"][cmp.symbols] += amp * np.outer(cmp.rank / 99 - 0.5, u / np.linalg.norm(u))
  basis = np.linalg.qr(rng.normal(size=(d, 2 * len(MODES))))[0]
  for j, k in enumerate(MODES):
    ang = 2 * np.pi * k * add.phi / add.n_symbols
    q["embed"][add.symbols] += amp / len(MODES) * (np.outer(np.cos(ang), basis[:, 2 * j]) +
                                                   np.outer(np.sin(ang), basis[:, 2 * j + 1]))
  return q


def test_random_init_scores_chance(probe_setup):
  _, pr, params = probe_setup
  got = pr.measure(params)
  n_layers = 2
  for layer in range(n_layers + 1):
    assert abs(got[f"probe/cmp/order_r2_l{layer}"]) < 0.25, got
    assert got[f"probe/add/fourier_modes_l{layer}"] == 0 and got[f"probe/add/fourier_var_l{layer}"] == 0, got
    assert 0.2 < got[f"probe/cmp/order_r2_paper_l{layer}"] < 0.8, got  # in-sample: ≈ 50/99 by chance
  assert got["probe/add/fourier_modes"] == 0 and got["probe/cmp/order_r2"] == got["probe/cmp/order_r2_l1"]
  assert got["probe/cmp/order_r2_paper"] == got["probe/cmp/order_r2_paper_l1"]


@pytest.mark.parametrize("silence_blocks,amp", [(True, 1.0), (False, 10.0)])
def test_constructed_features_are_found(probe_setup, silence_blocks, amp):
  _, pr, params = probe_setup
  q = _constructed(params, pr, silence_blocks, amp)
  got = pr.measure(q)
  for layer in range(3):
    assert got[f"probe/cmp/order_r2_l{layer}"] > 0.95, got
    assert got[f"probe/cmp/order_r2_paper_l{layer}"] > 0.95, got
    assert 0 < got[f"probe/add/fourier_var_l{layer}"] <= 1, got
  assert got["probe/add/fourier_modes_l0"] == len(MODES), got
  if silence_blocks:  # every layer is the embedding
    assert all(got[f"probe/add/fourier_modes_l{layer}"] == len(MODES) for layer in range(3)), got
    assert got["probe/add/fourier_modes"] == len(MODES)
    return
  # Random blocks act nonlinearly on the planted cos/sin features: besides the planted modes a later layer may hold
  # their intermodulation products (frequencies |a ± b|, 2a folded into 1 … 50), and nothing else.
  n = pr.tasks["add"].n_symbols
  fold = lambda k: min(k % n, n - k % n)  # noqa: E731
  products = {fold(a + b) for a in MODES for b in MODES} | {fold(a - b) for a in MODES for b in MODES}
  x = pr.streams(q)["add"]
  for layer in range(3):
    modes, _ = fourier.fourier_modes(x[layer].reshape(-1, x.shape[-1]), pr.rows["add"].reshape(-1),
                                     pr.tasks["add"].phi)
    assert set(MODES) <= modes <= set(MODES) | products, (layer, sorted(modes))
    assert got[f"probe/add/fourier_modes_l{layer}"] == len(modes)


def test_relative_rule_is_available(probe_setup):
  setup, pr, params = probe_setup
  rel = probes.Probes(setup, pr.tasks, fourier_rule="relative")
  got = rel.measure(_constructed(params, pr, True, 1.0))
  assert got["probe/add/fourier_modes"] == len(MODES)
  from_settings = probes.from_config(setup, {"probe_fourier_rule": "relative", "probe_fourier_alpha": 0.05})
  assert (from_settings.fourier_rule, from_settings.alpha, from_settings.min_variance) == ("relative", 0.05, 0.01)
  with pytest.raises(probes.ProbeError, match="probe_fourier_rule='typo' is not one of absolute, relative"):
    probes.Probes(setup, pr.tasks, fourier_rule="typo")


def _hidden_order(seed, amp, dim=256, ctx=20, n=100):
  """Occurrences of n symbols in `dim` dimensions: unit-variance symbol content in every direction, context noise
  (variance 0.25), and, if amp, the rank along one direction with standard deviation amp; randomly rotated."""
  rng = np.random.default_rng(seed)
  rank = rng.permutation(n)
  sym = np.tile(np.arange(n), ctx)
  r_SxD = rng.normal(size=(n, dim))
  r_SxD[:, 0] += amp * (rank - rank.mean()) / rank.std()
  x = r_SxD[sym] + 0.5 * rng.normal(size=(len(sym), dim))
  return x @ np.linalg.qr(rng.normal(size=(dim, dim)))[0].T, sym, rank


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_order_hidden_in_a_random_rotation_is_recovered(seed):
  # amp 8: the order direction holds 64/(64 + 256·1.25) = 17% of the variance, spread over all 256 coordinates.
  x, sym, rank = _hidden_order(seed, amp=8.0)
  assert probes.order_r2(x, sym, rank) > 0.95
  assert probes.order_r2_paper(x, sym, rank) > 0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_order_information_only_the_held_out_score_is_zero(seed):
  x, sym, rank = _hidden_order(seed, amp=0.0)
  assert abs(probes.order_r2(x, sym, rank)) < 0.15
  # In-sample least squares on 50 PCs: the occurrences are 100 symbol vectors plus small context noise, so 50
  # generic directions fit ≈ 50/99 of any target's variance over the symbols.
  assert 0.3 < probes.order_r2_paper(x, sym, rank) < 0.7


def test_scores_on_synthetic_vectors():
  rng = np.random.default_rng(1)
  n, d = 100, 32
  phi = rng.permutation(n)
  ang = 2 * np.pi * 5 * phi / n
  r = 0.02 * rng.normal(size=(n, d))
  r[:, 0] += np.cos(ang)
  r[:, 1] += np.sin(ang)
  assert fourier.fourier_modes_relative(r, phi) == {5}
  assert fourier.fourier_modes(r, np.arange(n), phi)[0] == {5}  # one occurrence per symbol
  shares = fourier.fourier_shares(r, phi)
  assert shares.shape == (50,) and abs(shares.sum() - 1) < 1e-12 and shares[4] > 0.9
  # Order probe: a rank feature plus noise in 2 occurrences per symbol; a shuffled rank is chance.
  rank = rng.permutation(n)
  sym = np.repeat(np.arange(n), 2)
  x = rng.normal(size=(2 * n, d))
  x[:, 3] += 0.5 * rank[sym]
  assert probes.order_r2(x, sym, rank) > 0.95
  assert probes.order_r2(x, sym, rng.permutation(rank)) < 0.2


@pytest.mark.parametrize("shape", [(300, 40), (60, 200)])
def test_pca_scores_equal_the_svd_projections(shape):
  rng = np.random.default_rng(2)
  x = rng.normal(size=shape) * rng.uniform(0.1, 2.0, size=shape[1]) + 3.0
  xc = x - x.mean(0)
  u, s, _ = np.linalg.svd(xc, full_matrices=False)
  z = probes.pca_scores(x, 20)
  assert z.shape == (shape[0], 20)
  np.testing.assert_allclose(np.abs(z), np.abs(u[:, :20] * s[:20]), rtol=1e-7, atol=1e-9 * s[0])
