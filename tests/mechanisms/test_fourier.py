"""The T_ADD Fourier count on planted representations whose answer is known by construction.

A planted representation gives occurrence (round r, position p) of symbol s the vector
  Σ_{k ∈ modes} a·(cos 2πkφ(s)/n, sin 2πkφ(s)/n) in its own pair of axes   (the modes; variance a² each)
  + per-symbol content c_s                                                    (not periodic in φ)
  + per-occurrence noise e                                                    (context)
  [+ a vector shared by every symbol in round r at position p                 (position/context content)]
rotated by one random orthogonal matrix, so no coordinate lines up with a mode. SNRs are ratios of total
variances: the modes' (m·a²) over the content's or the noise's.
"""

import numpy as np
import pytest

from scaling.mechanisms import fourier, probes

N, D, ROUNDS = 100, 64, 10  # 100 symbols, 10 rounds × 2 positions = 20 occurrences each (the probe's layout)


def _modes(m: int) -> list[int]:
  return list(range(7, 7 + m)) if m > 1 else [13]


def _planted(modes, seed=0, amp=1.0, snr_symbol=None, snr_context=None, shared=0.0, dim=D):
  """(x_PxD, symbol_P, phi_S) for the representation described in the module docstring."""
  rng = np.random.default_rng(seed)
  phi = rng.permutation(N)
  rounds = [np.stack([np.arange(N), rng.permutation(N)], 1) for _ in range(ROUNDS)]
  sym_RxP = np.concatenate(rounds)  # every symbol once per round and position, as probes.probe_rows
  r_SxD = np.zeros((N, dim))
  for j, k in enumerate(modes):
    ang = 2 * np.pi * k * phi / N
    r_SxD[:, 2 * j] += amp * np.sqrt(2) * np.cos(ang)  # variance a² per mode (cos and sin axes a²/2 each)
    r_SxD[:, 2 * j + 1] += amp * np.sqrt(2) * np.sin(ang)
  signal = len(modes) * amp ** 2
  if snr_symbol:
    r_SxD += np.sqrt(signal / snr_symbol / dim) * rng.normal(size=(N, dim))
  x = r_SxD[sym_RxP]  # (R·n, 2, D)
  if snr_context:
    x = x + np.sqrt(signal / snr_context / dim) * rng.normal(size=x.shape)
  if shared:  # one vector per (round, position), the same for every symbol there
    x = x + shared / np.sqrt(dim) * np.repeat(rng.normal(size=(ROUNDS, 1, 2, dim)), N, axis=1).reshape(x.shape)
  rot = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
  return x.reshape(-1, dim) @ rot.T, sym_RxP.reshape(-1), phi


@pytest.mark.parametrize("m", [1, 3, 20, 30])
@pytest.mark.parametrize("noise", ["clean", "context snr 1", "symbol snr 8 + context snr 1"])
def test_equal_modes_are_counted_exactly(m, noise):
  kw = {"clean": {}, "context snr 1": {"snr_context": 1.0},
        "symbol snr 8 + context snr 1": {"snr_symbol": 8.0, "snr_context": 1.0}}[noise]
  x, sym, phi = _planted(_modes(m), seed=m, **kw)
  got, share = fourier.fourier_modes(x, sym, phi)
  assert got == set(_modes(m)), (sorted(got), m, noise)
  # m equal modes with no other content hold 1/m of the variance each (Parseval).
  if noise == "clean":
    np.testing.assert_allclose(share[np.array(_modes(m)) - 1], 1.0 / m, rtol=1e-9)


@pytest.mark.parametrize("m", [1, 3])
def test_few_modes_survive_symbol_content_as_large_as_themselves(m):
  x, sym, phi = _planted(_modes(m), seed=10 + m, snr_symbol=1.0, snr_context=1.0)
  assert fourier.fourier_modes(x, sym, phi)[0] == set(_modes(m))


def test_the_relative_rule_loses_many_equal_modes():
  # m equal modes hold 1/m of the periodic power each; the relative rule needs > 3/50, so it counts m ≤ 16 only.
  for m, want in [(3, 3), (16, 16), (17, 0), (20, 0), (30, 0)]:
    x, sym, phi = _planted(_modes(m), seed=m)
    r_SxD = probes.symbol_means(x[:, None], sym[:, None], N)
    assert len(fourier.fourier_modes_relative(r_SxD, phi, 3.0)) == want, m


@pytest.mark.parametrize("content", ["symbol", "context", "shared"])
def test_a_lone_tiny_mode_does_not_count(content):
  # Amplitude 1e-3 (variance 1e-6) against unit-scale content of each non-periodic kind.
  kw = {"symbol": {"snr_symbol": 1e-6}, "context": {"snr_context": 1e-6}, "shared": {"shared": 1.0}}[content]
  x, sym, phi = _planted([13], seed=3, amp=1e-3, **kw)
  got, share = fourier.fourier_modes(x, sym, phi)
  assert got == set(), (got, share[12])
  r_SxD = probes.symbol_means(x[:, None], sym[:, None], N)
  if content == "shared":  # averaged out of the symbol means: the relative rule sees only the faint mode
    assert fourier.fourier_modes_relative(r_SxD, phi) == {13}
    assert share[12] < 1e-5


def test_the_count_ignores_the_scale_of_the_representation():
  for modes, kw in [([3, 17, 41], {"snr_symbol": 4.0, "snr_context": 1.0}), (_modes(30), {}),
                    ([13], {"amp": 1e-3, "shared": 1.0})]:
    x, sym, phi = _planted(modes, seed=5, **kw)
    base, share = fourier.fourier_modes(x, sym, phi)
    for scale in (1e-4, 3.7, 1e5):
      got, s = fourier.fourier_modes(scale * x, sym, phi)
      assert got == base
      np.testing.assert_allclose(s, share, rtol=1e-8, atol=1e-15)
  x, sym, phi = _planted([13], seed=5, amp=1e-3)  # nothing else: a pure mode is a pure mode at any scale
  assert fourier.fourier_modes(x, sym, phi)[0] == {13}


def test_unstructured_representations_have_no_modes():
  for seed in range(4):
    rng = np.random.default_rng(100 + seed)
    x, sym, phi = _planted([], seed=seed)
    x = rng.normal(size=(N, D))[sym] + 0.5 * rng.normal(size=x.shape)  # random embeddings plus context noise
    assert fourier.fourier_modes(x, sym, phi)[0] == set()


def test_spectrum_is_parseval_exact_and_the_null_is_reproducible():
  x, sym, phi = _planted([3, 17], seed=7, snr_symbol=2.0)
  power, total, table = fourier.fourier_spectrum(x, sym, phi)
  assert power.shape == (N // 2,)
  np.testing.assert_allclose(power.sum(), np.mean(np.sum((table - table.mean(0)) ** 2, 1)), rtol=1e-10)
  assert total >= power.sum()  # the occurrences vary at least as much as their symbol means
  a, b = fourier.null_max_power(table, 300), fourier.null_max_power(table, 300)
  np.testing.assert_array_equal(a, b)
  # The null only depends on the table through its Gram matrix: rotating the columns changes nothing.
  rot = np.linalg.qr(np.random.default_rng(0).normal(size=(D, D)))[0]
  np.testing.assert_allclose(fourier.null_max_power(table @ rot, 300), a, rtol=1e-8)
  odd = fourier.folded_power(np.random.default_rng(1).normal(size=(7, 3)))  # odd n: every frequency has a pair
  assert odd.shape == (3,)
