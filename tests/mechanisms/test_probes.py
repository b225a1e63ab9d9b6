"""Probes: near 1 / the known mode count on models built to hold the feature, near chance at random init."""

import jax
import numpy as np
import pytest

from scaling.lm import config as configlib
from scaling.lm import step as step_lib
from scaling.mechanisms import probes
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
    assert got[f"probe/add/fourier_modes_l{layer}"] == 0, got
  assert got["probe/add/fourier_modes"] == 0 and got["probe/cmp/order_r2"] == got["probe/cmp/order_r2_l1"]


@pytest.mark.parametrize("silence_blocks,amp", [(True, 1.0), (False, 10.0)])
def test_constructed_features_are_found(probe_setup, silence_blocks, amp):
  _, pr, params = probe_setup
  got = pr.measure(_constructed(params, pr, silence_blocks, amp))
  for layer in range(3):
    assert got[f"probe/cmp/order_r2_l{layer}"] > 0.95, got
    assert got[f"probe/add/fourier_modes_l{layer}"] == len(MODES), got
  assert got["probe/add/fourier_modes"] == len(MODES)


def test_scores_on_synthetic_vectors():
  rng = np.random.default_rng(1)
  n, d = 100, 32
  phi = rng.permutation(n)
  ang = 2 * np.pi * 5 * phi / n
  r = 0.02 * rng.normal(size=(n, d))
  r[:, 0] += np.cos(ang)
  r[:, 1] += np.sin(ang)
  assert probes.fourier_modes(r, phi) == {5}
  shares = probes.fourier_shares(r, phi)
  assert shares.shape == (50,) and abs(shares.sum() - 1) < 1e-12 and shares[4] > 0.9
  # Order probe: a rank feature plus noise in 2 occurrences per symbol; a shuffled rank is chance.
  rank = rng.permutation(n)
  sym = np.repeat(np.arange(n), 2)
  x = rng.normal(size=(2 * n, d))
  x[:, 3] += 0.5 * rank[sym]
  assert probes.order_r2(x, sym, rank) > 0.95
  assert probes.order_r2(x, sym, rng.permutation(rank)) < 0.2
