"""Causal self-attention pieces of the decoder: rotary tables, the rotation, and the attention product.

`causal_attention` is written out (scores, mask, softmax, weighted values) in a heads-major [B, H, L, K] layout,
so both batched matmuls and their gradients are plain batched GEMMs for XLA; its softmax has a hand-written
backward (dS = P·(dP − rowsum(dP·P))) that keeps only P for the backward pass. `attention_impl="cudnn"` (or
"xla") hands the product to `jax.nn.dot_product_attention` instead (fused kernels on GPU).

Shape suffixes: B batch, L query positions, S key positions, H heads, K head dim.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

IMPLEMENTATIONS = (None, "xla", "cudnn")


@functools.lru_cache(maxsize=32)
def rope_tables(length: int, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
  """(cos, sin), each [L, K/2] float32, for positions 0..L-1: built once per shape, embedded as constants."""
  inv_freq_K2 = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  ang_LxK2 = np.arange(length, dtype=np.float64)[:, None] * inv_freq_K2[None, :]
  return np.cos(ang_LxK2).astype(np.float32), np.sin(ang_LxK2).astype(np.float32)


def rope(x_BxLxHxK, theta: float):
  """Rotary embedding (rotate-half form) at positions 0..L-1, computed in float32."""
  _, length, _, k = x_BxLxHxK.shape
  cos_LxK2, sin_LxK2 = rope_tables(length, k, float(theta))
  cos, sin = cos_LxK2[None, :, None, :], sin_LxK2[None, :, None, :]
  x1, x2 = jnp.split(x_BxLxHxK.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BxLxHxK.dtype)


@jax.custom_vjp
def _softmax(s):
  return jax.nn.softmax(s, axis=-1)


def _softmax_fwd(s):
  p = jax.nn.softmax(s, axis=-1)
  return p, p


def _softmax_bwd(p, dp):
  return (p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True)),)


_softmax.defvjp(_softmax_fwd, _softmax_bwd)


def causal_attention(q_BxLxHxK, k_BxSxHxK, v_BxSxHxK, implementation: str | None = None):
  """softmax(q·kᵀ/√K + causal mask)·v, scores and softmax in float32; returns [B, L, H, K]."""
  if implementation is not None:
    return jax.nn.dot_product_attention(q_BxLxHxK, k_BxSxHxK, v_BxSxHxK, is_causal=True,
                                        implementation=None if implementation == "xla" else implementation)
  dt = q_BxLxHxK.dtype
  length, k = q_BxLxHxK.shape[1], q_BxLxHxK.shape[-1]
  q_BxHxLxK = jnp.swapaxes(q_BxLxHxK * jnp.asarray(k ** -0.5, dt), 1, 2)
  k_BxHxSxK, v_BxHxSxK = jnp.swapaxes(k_BxSxHxK, 1, 2), jnp.swapaxes(v_BxSxHxK, 1, 2)
  s_BxHxLxS = jnp.einsum("bhlk,bhsk->bhls", q_BxHxLxK, k_BxHxSxK, preferred_element_type=jnp.float32)
  causal_LxS = np.tril(np.ones((length, length), dtype=bool))
  s_BxHxLxS = jnp.where(causal_LxS, s_BxHxLxS, jnp.finfo(jnp.float32).min)
  p_BxHxLxS = _softmax(s_BxHxLxS).astype(dt)
  o_BxHxLxK = jnp.einsum("bhls,bhsk->bhlk", p_BxHxLxS, v_BxHxSxK)
  return jnp.swapaxes(o_BxHxLxK, 1, 2)
