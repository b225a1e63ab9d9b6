"""Fourier modes of the T_ADD symbol representations over Z_n (`probe/add/fourier_*`, mechanisms/probes.py).

A representation gives each probe occurrence of a symbol s a vector x (D); the symbol means, written in the
order of the hidden bijection φ (row φ(s) holds s), form an (n, D) table, and the variance of that table splits
exactly over the frequencies k = 1 … n/2 (k and n − k folded; Parseval). Two rules say which k are present:

  "absolute" (default)  k is present when (1) its power is above what a random relabelling of the symbols puts
                        at the strongest frequency (family-wise permutation test at level `probe_fourier_alpha`,
                        `probe_fourier_null_draws` seeded relabellings), and (2) it holds at least
                        `probe_fourier_min_variance` of the total variance of the occurrence vectors (context
                        and non-periodic symbol content included). (1) tells structure that follows φ from the
                        chance projection of unstructured symbol content (random embeddings spread their
                        variance evenly, ≈ 2/n per frequency, and the test is calibrated to that spread);
                        (2) is the scale: a faint exact mode under unit-scale other content is no feature of the
                        representation. Each compares powers inside one representation, so the count does not
                        change when the representation is rescaled, and m equal modes count as m while the
                        modes stand out of the noise. The null spreads the modes' own power over all
                        frequencies, so it grows conservative as the modes fill the spectrum (30 of 50 need
                        less non-periodic symbol content than 3 do; README "Mechanism metrics").
  "relative"            the previous rule: k is present when its share of the symbol means' periodic power
                        exceeds `probe_fourier_threshold` × 1/(n/2). It looks only at the shares, so m equal modes
                        hold 1/m each and more than n/(2·threshold) of them (17 or more at the default 3) count
                        as none, and a lone mode counts at any amplitude against any content outside the symbol
                        means.

The total in (2) is a variance, not a mean squared norm: the mean vector is the same for every occurrence, says
nothing about which symbol is there, and residual streams carry large near-constant directions that would otherwise
swamp every share. Shares reported next to the count (`probe/add/fourier_var`) are fractions of that total.
"""

from __future__ import annotations

import numpy as np

from scaling.core import hashrng

RULES = ("absolute", "relative")
NULL_KEY = hashrng.key("probe", "fourier_null")  # the relabellings of the permutation test (fixed)
BLOCK = 100  # relabellings per vectorised block


def folded_power(m_NxR: np.ndarray) -> np.ndarray:
  """(..., n // 2) variance of rows over Z_n at frequencies k = 1 … n/2 (k and n − k folded), for (..., n, R) rows.

  By Parseval the entries sum to the rows' variance (mean squared distance to the mean row)."""
  n = m_NxR.shape[-2]
  p = np.sum(np.abs(np.fft.rfft(m_NxR, axis=-2)) ** 2, axis=-1)[..., 1:]
  p[..., :(n - 1) // 2] *= 2  # k and n − k; the Nyquist frequency of an even n has no partner
  return p / n ** 2


def fourier_spectrum(x_PxD: np.ndarray, symbol_P: np.ndarray, phi_S: np.ndarray):
  """(variance of the symbol means at each frequency k = 1 … n/2 over Z_n in φ order, total variance of x).

  Row φ(s) of the (n, D) table holds symbol s's mean vector; the total is the variance of the P occurrences
  themselves, so it includes what is not a function of the symbol (context) and what is, but not periodic."""
  x = np.asarray(x_PxD, np.float64)
  n = len(phi_S)
  onehot_NxP = np.zeros((n, len(x)))
  onehot_NxP[symbol_P, np.arange(len(x))] = 1.0
  table = np.empty((n, x.shape[1]))
  table[phi_S] = (onehot_NxP @ x) / np.maximum(onehot_NxP.sum(1), 1.0)[:, None]
  total = float(np.sum((x - x.mean(0)) ** 2) / len(x))
  return folded_power(table), total, table


def null_max_power(table_NxD: np.ndarray, draws: int = 1000) -> np.ndarray:
  """(draws,) largest frequency power of the table under `draws` seeded random relabellings of its rows.

  The power of relabelled rows depends on the table only through its (n, n) Gram matrix, so the relabellings
  permute a factor B with B·Bᵀ = Gram (at most n columns) instead of the table: the cost does not grow with D."""
  n = table_NxD.shape[0]
  c = table_NxD - table_NxD.mean(0)
  lam, u = np.linalg.eigh(c @ c.T)
  b_NxR = u * np.sqrt(np.clip(lam, 0.0, None))
  perms = np.argsort(hashrng.bits(NULL_KEY, np.arange(int(draws))[:, None], np.arange(n)[None]), axis=1,
                     kind="stable")
  return np.concatenate([folded_power(b_NxR[perms[i:i + BLOCK]]).max(axis=1) for i in range(0, len(perms), BLOCK)])


def fourier_modes(x_PxD: np.ndarray, symbol_P: np.ndarray, phi_S: np.ndarray, min_variance: float = 0.01,
                  alpha: float = 0.01, draws: int = 1000) -> tuple[set[int], np.ndarray]:
  """Frequencies k present in the representation (rule "absolute") and every frequency's share of its variance.

  k is present when both hold: (1) its power (variance of the symbol means at k) exceeds the 1 − alpha quantile
  of the largest power over all frequencies when the symbols are relabelled at random (`null_max_power`: a
  family-wise permutation test, so unstructured symbol content, e.g. random embeddings, yields no mode with
  probability 1 − alpha); (2) it holds at least `min_variance` of the total variance of the occurrence vectors,
  context included. (1) says the structure follows φ; (2) says it is a sizeable part of what the token carries,
  so a faint exact mode on top of unit-scale other content does not count. Both compare powers within one
  representation, so rescaling it changes nothing. Returns (modes, (n/2,) variance shares)."""
  power_K, total, table = fourier_spectrum(x_PxD, symbol_P, phi_S)
  if total <= 0:
    return set(), np.zeros_like(power_K)
  share_K = power_K / total
  q = np.quantile(null_max_power(table, draws), 1.0 - float(alpha))
  present = (power_K > q) & (share_K >= float(min_variance))
  return {int(k) + 1 for k in np.flatnonzero(present)}, share_K


def fourier_shares(r_SxD: np.ndarray, phi_S: np.ndarray) -> np.ndarray:
  """Share of the non-constant power at frequencies k = 1 … n/2 (k and n−k folded) of symbol vectors over Z_n."""
  m = np.empty_like(np.asarray(r_SxD, np.float64))
  m[phi_S] = r_SxD  # row φ(s) holds symbol s
  power = folded_power(m)
  total = power.sum()
  return power / total if total > 0 else np.zeros_like(power)


def fourier_modes_relative(r_SxD: np.ndarray, phi_S: np.ndarray, threshold: float = 3.0) -> set[int]:
  """Rule "relative": frequencies whose share of the symbol means' periodic power exceeds threshold × 1/(n/2).

  Scale-free but blind to everything outside the symbol means' spectrum: m equal modes each hold 1/m, so 20 or
  more equal modes count as none at threshold 3, and a lone faint mode counts whatever else the vectors hold."""
  shares = fourier_shares(r_SxD, phi_S)
  return {int(k) + 1 for k in np.flatnonzero(shares > threshold / len(shares))}


def variance_shares(x_PxD: np.ndarray, symbol_P: np.ndarray, phi_S: np.ndarray) -> np.ndarray:
  """(n/2,) each frequency's power as a fraction of the total variance of the occurrence vectors."""
  power_K, total, _ = fourier_spectrum(x_PxD, symbol_P, phi_S)
  return power_K / total if total > 0 else np.zeros_like(power_K)
