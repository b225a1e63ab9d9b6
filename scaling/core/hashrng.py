"""Counter-based random numbers: every draw is a hash of its coordinates (key, index, position, ...).

Two implementations of one idea, for the two places numbers are drawn: on the host in numpy (64-bit SplitMix64:
`key`, `bits`, `uniform`, `integers`, `permutation`; data pipelines, task splits) and on the device in JAX
(`jax_normal`: 32-bit lowbias32 keyed by a JAX key, because JAX computes in 32-bit integers by default; the toy's
inputs and initialisation).

Why not `np.random.default_rng([seed, i])` per sequence: creating a Generator costs ~10 µs, which alone caps a
pipeline at ~100K rows/s, and numpy does not promise identical Generator streams across versions. A SplitMix64
finaliser over integer coordinates is vectorised, platform-independent (pure uint64 arithmetic) and stateless, so
element i of anything is a pure function of (seed, purpose, i) and task splits hash the same on every machine.
"""

from __future__ import annotations

import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np

_MASK = (1 << 64) - 1
_M1, _M2, _GAMMA = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0x9E3779B97F4A7C15
_U_M1, _U_M2, _U_GAMMA = np.uint64(_M1), np.uint64(_M2), np.uint64(_GAMMA)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def _mix_int(x: int) -> int:
  x &= _MASK
  x = ((x ^ (x >> 30)) * _M1) & _MASK
  x = ((x ^ (x >> 27)) * _M2) & _MASK
  return x ^ (x >> 31)


def _as_int(part) -> int:
  if isinstance(part, str):  # names (tasks, regimes) hash by content, never by Python's salted hash()
    return int.from_bytes(hashlib.blake2b(part.encode(), digest_size=8).digest(), "little")
  return int(part) & _MASK


def key(*parts) -> int:
  """A 64-bit key from ints and strings, e.g. key(seed, PURPOSE, "cmp")."""
  h = 0x243F6A8885A308D3
  for p in parts:
    h = _mix_int(h ^ _mix_int(_as_int(p) + _GAMMA))
  return h


def mix64(x: np.ndarray) -> np.ndarray:
  """SplitMix64 finaliser on a uint64 array (wrapping arithmetic is intended)."""
  x = (x ^ (x >> _S30)) * _U_M1
  x = (x ^ (x >> _S27)) * _U_M2
  return x ^ (x >> _S31)


def bits(k: int, *coords) -> np.ndarray:
  """uint64 hashes of `k` and the coordinate arrays, broadcast together (one mix per coordinate)."""
  h = np.full(1, k & _MASK, np.uint64)
  for c in coords:
    c = np.atleast_1d(np.asarray(c)).astype(np.uint64)  # >= 1-d: numpy warns on scalar overflow, not arrays
    h = mix64(h ^ (c * _U_GAMMA + _U_GAMMA))
  return h


def uniform(k: int, *coords) -> np.ndarray:
  """Floats in [0, 1) with 53 random bits, one per broadcast coordinate tuple."""
  return (bits(k, *coords) >> _S11).astype(np.float64) * (1.0 / (1 << 53))


def integers(k: int, high: int, *coords) -> np.ndarray:
  """Integers in [0, high) (bias below 2^-40 for high < 2^24)."""
  return (bits(k, *coords) % np.uint64(high)).astype(np.int64)


def permutation(k: int, n: int) -> np.ndarray:
  """A permutation of range(n): argsort of per-element hashes (stable, so defined even on a tie)."""
  return np.argsort(bits(k, np.arange(n)), kind="stable")


# ---------------------------------------------------------------------------------------------------------------
# On the device (JAX, 32-bit).


def _jax_mix32(x: jax.Array) -> jax.Array:
  """lowbias32 (C. Wellons' hash prospector): a bijection on uint32 with strong avalanche."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x21F0AAAD)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0xD35A2D97)
  return x ^ (x >> 15)


def jax_normal(key: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> jax.Array:
  """Standard normals from a JAX key (same signature as a Flax initializer); jit/vmap friendly.

  Element (i, j) is sqrt(2)·erfinv(u) with u from 23 bits of a hash of the counter i·cols + j keyed by the two
  words of `key` (|x| < 5.3). ~5× faster than jax.random.normal on CPU, and ~5× faster to compile.
  """
  rows, d = shape
  if rows * d >= 2 ** 32:
    raise ValueError(f"{rows}x{d} normals exceed the 32-bit counter; lower the batch or d")
  k0, k1 = jax.random.key_data(key)
  c = jax.lax.broadcasted_iota(jnp.uint32, (rows, d), 0) * jnp.uint32(d) + \
      jax.lax.broadcasted_iota(jnp.uint32, (rows, d), 1)
  bits = _jax_mix32(_jax_mix32(c ^ k0) + k1)
  # 23 bits so that (m + 0.5) is exact in float32: u stays strictly inside (−1, 1) and erfinv finite.
  u = ((bits >> 9).astype(jnp.float32) + 0.5) * (2.0 ** -22) - 1.0
  return (jnp.float32(math.sqrt(2.0)) * jax.lax.erf_inv(u)).astype(dtype)
