"""OLMo-2 style decoder-only transformer (Flax NNX).

RMSNorm, SwiGLU MLP, rotary position embeddings, QK-norm, optional tied embeddings, bf16/fp32 compute,
optional rematerialisation. Layer parameters are stacked along a leading 'layers' axis; `scan_layers` applies
them with `nnx.scan` (one compiled block) or unrolled over the stacked slices (one straight-line program).
Every matmul is a 2-D (tokens x features) product (`dense`), and attention (scaling/lm/attention.py) runs
heads-major, so the backward pass is plain GEMMs without transposed copies of activations. Every parameter
carries logical axis names (`sharding_names`); the rules in `scaling/lm/sharding.py` map them to mesh axes.
Logical parameter axes:

  vocab, embed, heads, kv (head dim), mlp, norm, layers

Activation axes (`act_*`) are constrained with `sharding.constrain` at block boundaries.

Shape suffixes: B batch, L sequence, D d_model, H heads, K head dim, F d_ff, V vocab.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.lm import attention, sharding

# Variables are created unsharded and placed by a jitted init with explicit out_shardings (scaling/lm/sharding.py),
# which works the same with and without a mesh, and for abstract (eval_shape) builds of 4B models.
nnx.use_eager_sharding(False)

NORM_STYLES = ("olmo2", "pre")
SCAN_LAYERS = ("auto", "scan", "unroll")
# "auto" unrolls models up to this depth (the whole ladder); deeper ones scan, so compile time stays bounded.
AUTO_UNROLL_MAX_LAYERS = 16
REMAT_POLICIES = ("none", "full", "dots")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  d_ff: int
  tie_embeddings: bool = False
  qk_norm: bool = True
  # "olmo2": x + norm(f(x)) (OLMo-2's reordered norm); "pre": x + f(norm(x)) (GPT-2/Llama pre-norm).
  norm_style: str = "olmo2"
  rope_theta: float = 10_000.0
  norm_eps: float = 1e-6
  init_std: float = 0.02
  dtype: str = "float32"  # compute dtype
  param_dtype: str = "float32"
  remat: str = "none"  # none | full | dots (save matmul outputs, recompute the rest)
  # None: scaling/lm/attention.py's causal attention; "xla" | "cudnn": jax.nn.dot_product_attention's.
  attention_impl: str | None = None
  # How the stacked layers are applied: "scan" (nnx.scan: one compiled block, a loop at run time), "unroll"
  # (a Python loop over the stacked slices: one program), or "auto" (unroll up to AUTO_UNROLL_MAX_LAYERS, scan
  # whenever remat is on: unrolled, XLA:CPU keeps every activation anyway).
  # True / False mean "scan" / "unroll". The parameter tree is the same either way.
  scan_layers: Any = "auto"

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads

  @classmethod
  def from_config(cls, model_cfg: Any) -> TransformerConfig:
    """Builds from the `config.model` ConfigDict, ignoring bookkeeping keys such as `size`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(model_cfg).items() if k in names})


def param_counts(cfg: TransformerConfig) -> dict[str, int]:
  """Analytic parameter counts; tests check them against the built parameter tree for every ladder entry."""
  d, h, k, f, v, n = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.d_ff, cfg.vocab_size, cfg.n_layers
  attn = 4 * d * h * k + (2 * h * k if cfg.qk_norm else 0)
  mlp = 3 * d * f
  per_layer = attn + mlp + 2 * d
  embedding = v * d
  unembedding = 0 if cfg.tie_embeddings else d * v
  non_embedding = n * per_layer + d  # + final norm
  return {"total": embedding + unembedding + non_embedding, "non_embedding": non_embedding,
          "embedding": embedding, "unembedding": unembedding}


def flops_per_token(cfg: TransformerConfig, seq_len: int) -> float:
  """Training FLOPs per token, PaLM convention: 6·N_matmul + 12·n_layers·seq_len·(heads·head_dim).

  N_matmul counts weights used in matmuls (all but norms and the embedding lookup; the output projection to the
  vocabulary is included even when tied). Causal masking is not discounted, as in PaLM's MFU definition.
  """
  d, h, k, f, v, n = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.d_ff, cfg.vocab_size, cfg.n_layers
  n_matmul = n * (4 * d * h * k + 3 * d * f) + d * v
  return 6.0 * n_matmul + 12.0 * n * seq_len * h * k


def dense(x, w, n_in: int = 1, preferred_element_type=None):
  """Contracts the trailing `n_in` axes of x with the leading `n_in` axes of w, as one 2-D matmul.

  Flattening batch and length into one token axis keeps every weight-gradient matmul a plain
  (tokens x in)^T (tokens x out) product, which XLA:CPU runs without transposed copies of the activations.
  """
  d_in = math.prod(w.shape[:n_in])
  y = jnp.dot(x.reshape(-1, d_in), w.reshape(d_in, -1), preferred_element_type=preferred_element_type)
  return y.reshape(*x.shape[:x.ndim - n_in], *w.shape[n_in:])


@jax.custom_vjp
def swiglu(gate, up):
  """silu(gate) · up, with a backward that computes the sigmoid once and both input gradients in one pass."""
  return jax.nn.silu(gate) * up


def _swiglu_fwd(gate, up):
  return swiglu(gate, up), (gate, up)


def _swiglu_bwd(res, d_out):
  gate, up = res
  sig = jax.nn.sigmoid(gate)
  silu = gate * sig
  d_gate = d_out * up * (sig + silu * (1 - sig))
  return d_gate, d_out * silu


swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


def _init(cfg: TransformerConfig):
  return nnx.initializers.normal(stddev=cfg.init_std)


class RMSNorm(nnx.Module):
  """RMS normalisation over the trailing `len(shape)` axes, with a learned scale of that shape."""

  def __init__(self, shape: tuple[int, ...], names: tuple[str, ...], cfg: TransformerConfig):
    self.eps = cfg.norm_eps
    self.scale = nnx.Param(jnp.ones(shape, DTYPES[cfg.param_dtype]), sharding_names=names)

  def __call__(self, x):
    axes = tuple(range(-self.scale.ndim, 0))
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=axes, keepdims=True) + self.eps)
    return (y * self.scale[...].astype(jnp.float32)).astype(x.dtype)


class Attention(nnx.Module):

  def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    d, h, k = cfg.d_model, cfg.n_heads, cfg.head_dim
    pd = DTYPES[cfg.param_dtype]
    init = _init(cfg)
    self.wq = nnx.Param(init(rngs.params(), (d, h, k), pd), sharding_names=("embed", "heads", "kv"))
    self.wk = nnx.Param(init(rngs.params(), (d, h, k), pd), sharding_names=("embed", "heads", "kv"))
    self.wv = nnx.Param(init(rngs.params(), (d, h, k), pd), sharding_names=("embed", "heads", "kv"))
    self.wo = nnx.Param(init(rngs.params(), (h, k, d), pd), sharding_names=("heads", "kv", "embed"))
    if cfg.qk_norm:
      # OLMo-2 normalises the whole query/key vector (all heads together), not each head separately.
      self.q_norm = RMSNorm((h, k), ("heads", "kv"), cfg)
      self.k_norm = RMSNorm((h, k), ("heads", "kv"), cfg)

  def __call__(self, x_BxLxD):
    cfg = self.cfg
    dt = DTYPES[cfg.dtype]
    x = x_BxLxD.astype(dt)
    q_BxLxHxK = dense(x, self.wq[...].astype(dt))
    k_BxLxHxK = dense(x, self.wk[...].astype(dt))
    v_BxLxHxK = dense(x, self.wv[...].astype(dt))
    if cfg.qk_norm:
      q_BxLxHxK, k_BxLxHxK = self.q_norm(q_BxLxHxK), self.k_norm(k_BxLxHxK)
    q_BxLxHxK = attention.rope(q_BxLxHxK, cfg.rope_theta)
    k_BxLxHxK = attention.rope(k_BxLxHxK, cfg.rope_theta)
    names = ("act_batch", "act_len", "act_heads", None)
    q_BxLxHxK, k_BxLxHxK, v_BxLxHxK = (sharding.constrain(t, names) for t in (q_BxLxHxK, k_BxLxHxK, v_BxLxHxK))
    o_BxLxHxK = attention.causal_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, cfg.attention_impl)
    return dense(o_BxLxHxK, self.wo[...].astype(dt), n_in=2)


class MLP(nnx.Module):
  """SwiGLU: down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    d, f = cfg.d_model, cfg.d_ff
    pd = DTYPES[cfg.param_dtype]
    init = _init(cfg)
    self.w_gate = nnx.Param(init(rngs.params(), (d, f), pd), sharding_names=("embed", "mlp"))
    self.w_up = nnx.Param(init(rngs.params(), (d, f), pd), sharding_names=("embed", "mlp"))
    self.w_down = nnx.Param(init(rngs.params(), (f, d), pd), sharding_names=("mlp", "embed"))

  def hidden(self, x_BxLxD):
    """The MLP's hidden activations (the 'neurons' interference and probes look at)."""
    dt = DTYPES[self.cfg.dtype]
    x = x_BxLxD.astype(dt)
    gate_BxLxF = dense(x, self.w_gate[...].astype(dt))
    up_BxLxF = dense(x, self.w_up[...].astype(dt))
    return sharding.constrain(swiglu(gate_BxLxF, up_BxLxF), ("act_batch", "act_len", "act_mlp"))

  def __call__(self, x_BxLxD):
    dt = DTYPES[self.cfg.dtype]
    return dense(self.hidden(x_BxLxD), self.w_down[...].astype(dt))


class Block(nnx.Module):

  def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    self.attn = Attention(cfg, rngs)
    self.mlp = MLP(cfg, rngs)
    self.attn_norm = RMSNorm((cfg.d_model,), ("norm",), cfg)
    self.mlp_norm = RMSNorm((cfg.d_model,), ("norm",), cfg)

  def __call__(self, x_BxLxD):
    if self.cfg.norm_style == "olmo2":
      h_BxLxD = x_BxLxD + self.attn_norm(self.attn(x_BxLxD)).astype(x_BxLxD.dtype)
      out_BxLxD = h_BxLxD + self.mlp_norm(self.mlp(h_BxLxD)).astype(x_BxLxD.dtype)
    else:
      h_BxLxD = x_BxLxD + self.attn(self.attn_norm(x_BxLxD)).astype(x_BxLxD.dtype)
      out_BxLxD = h_BxLxD + self.mlp(self.mlp_norm(h_BxLxD)).astype(x_BxLxD.dtype)
    return sharding.constrain(out_BxLxD, ("act_batch", "act_len", "act_embed"))


_REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Transformer(nnx.Module):
  """Tokens (B, L) int32 -> logits (B, L, V) float32."""

  def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs):
    validate(cfg)
    self.cfg = cfg
    pd = DTYPES[cfg.param_dtype]
    init = _init(cfg)
    self.embed = nnx.Param(init(rngs.params(), (cfg.vocab_size, cfg.d_model), pd),
                           sharding_names=("vocab", "embed"))

    @nnx.split_rngs(splits=cfg.n_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make_blocks(rngs):
      return Block(cfg, rngs)

    self.blocks = make_blocks(rngs)
    self.final_norm = RMSNorm((cfg.d_model,), ("norm",), cfg)
    if not cfg.tie_embeddings:
      self.unembed = nnx.Param(init(rngs.params(), (cfg.d_model, cfg.vocab_size), pd),
                               sharding_names=("embed", "vocab"))

  def embed_tokens(self, tokens_BxL):
    x_BxLxD = jnp.take(self.embed[...], tokens_BxL, axis=0).astype(DTYPES[self.cfg.dtype])
    return sharding.constrain(x_BxLxD, ("act_batch", "act_len", "act_embed"))

  def run_blocks(self, x_BxLxD, n_layers: int | None = None):
    """Applies the first `n_layers` blocks (all by default); probes read intermediate residual streams."""
    cfg = self.cfg
    step = lambda block, x: block(x)  # noqa: E731
    scans = scans_layers(cfg)
    if cfg.remat != "none":
      # Inside a scan XLA cannot merge the recomputation with the forward pass; unrolled it would (and the
      # remat would silently save nothing) unless CSE is prevented.
      step = nnx.remat(step, policy=_REMAT[cfg.remat], prevent_cse=not scans)
    graphdef, state = nnx.split(self.blocks)
    if n_layers is not None and n_layers != cfg.n_layers:
      state = jax.tree.map(lambda a: a[:n_layers], state)  # a view of the first n stacked layers
    if not scans:
      # Unrolled: one block per stacked slice, so XLA sees the whole step (no while loop, no stacked
      # activation buffers to zero-fill and slice in the backward pass).
      x_BxLxD_out = x_BxLxD
      for i in range(jax.tree.leaves(state)[0].shape[0]):
        x_BxLxD_out = step(nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state)), x_BxLxD_out)
      return x_BxLxD_out

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry,
              transform_metadata={nnx.PARTITION_NAME: "layers"})
    def scan_blocks(x, block):
      return step(block, x)

    return scan_blocks(x_BxLxD, nnx.merge(graphdef, state))

  def logits(self, x_BxLxD):
    dt = DTYPES[self.cfg.dtype]
    x = self.final_norm(x_BxLxD).astype(dt)
    w_DxV = self.embed[...].T if self.cfg.tie_embeddings else self.unembed[...]
    logits_BxLxV = dense(x, w_DxV.astype(dt), preferred_element_type=jnp.float32)
    return sharding.constrain(logits_BxLxV, ("act_batch", "act_len", "act_vocab"))

  def __call__(self, tokens_BxL):
    return self.logits(self.run_blocks(self.embed_tokens(tokens_BxL)))


def scans_layers(cfg: TransformerConfig) -> bool:
  """Whether `run_blocks` applies the layers with nnx.scan (True) or unrolled (False)."""
  mode = cfg.scan_layers
  if isinstance(mode, bool):
    mode = "scan" if mode else "unroll"
  if mode == "auto":  # remat is a memory tool, and only a scan makes XLA:CPU keep the saving
    return cfg.n_layers > AUTO_UNROLL_MAX_LAYERS or cfg.remat != "none"
  return mode == "scan"


def validate(cfg: TransformerConfig) -> None:
  """Shape/option checks with one clear line each (also called from config validation before any compute)."""
  for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff"):
    if int(getattr(cfg, name)) <= 0:
      raise ValueError(f"model.{name} must be positive, got {getattr(cfg, name)}")
  if cfg.d_model % cfg.n_heads:
    raise ValueError(f"model.d_model={cfg.d_model} is not divisible by model.n_heads={cfg.n_heads}; "
                     "pick heads that divide the width")
  if cfg.head_dim % 2:
    raise ValueError(f"head dim d_model/n_heads={cfg.head_dim} must be even for rotary embeddings")
  if cfg.norm_style not in NORM_STYLES:
    raise ValueError(f"model.norm_style={cfg.norm_style!r} is not one of {NORM_STYLES}")
  if cfg.remat not in REMAT_POLICIES:
    raise ValueError(f"model.remat={cfg.remat!r} is not one of {REMAT_POLICIES}")
  if not isinstance(cfg.scan_layers, bool) and cfg.scan_layers not in SCAN_LAYERS:
    raise ValueError(f"model.scan_layers={cfg.scan_layers!r} is not one of {SCAN_LAYERS} (or True/False)")
  if cfg.attention_impl not in attention.IMPLEMENTATIONS:
    raise ValueError(f"model.attention_impl={cfg.attention_impl!r} is not one of {attention.IMPLEMENTATIONS}")
  for name in ("dtype", "param_dtype"):
    if getattr(cfg, name) not in DTYPES:
      raise ValueError(f"model.{name}={getattr(cfg, name)!r} is not one of {tuple(DTYPES)}")
