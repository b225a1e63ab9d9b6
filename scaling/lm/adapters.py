"""LoRA and DoRA adapters for the stacked weights of scaling/lm/model.py, kept in a parameter tree of their own.

The base model is never changed: its parameter tree, shapes and logical sharding stay as they are. Adapters live
in a second tree that mirrors the paths of the weights they wrap, and `merge(base, adapters, spec)` returns the
effective parameter tree (same structure, shapes, dtypes and logical names as the base) that the loss feeds to
the unchanged model. `WeightAdapter.__call__` is the unmerged forward of one weight (x·W + s·(x·A)·B), which tests
check against the merged form.

A target weight W has shape (layers, *in, *out): `in` are the dims contracted with the layer input (d_model for
q/k/v/gate/up, (heads, head_dim) for o, d_ff for down). Its adapter holds, following nnx.LoRA's conventions
(names lora_a / lora_b, A fan-in x rank with he-uniform init, B rank x fan-out with zero init, type nnx.LoRAParam):

  lora_a     (layers, *in, r)   logical names (layers, *in names of W, lora_rank)
  lora_b     (layers, r, *out)  logical names (layers, lora_rank, *out names of W)
  magnitude  (layers, *out)     DoRA only, initialised to ‖W‖_col; logical names (layers, *out names of W)

  LoRA   W' = W + s·A·B                              s = alpha / r
  DoRA   W' = m ⊙ (W + s·A·B) / ‖W + s·A·B‖_col      (Liu et al. 2024, arXiv 2402.09353)

‖·‖_col is the L2 norm over the input dims: one value per output feature (the DoRA paper's column norm of a
d_out x d_in weight). With B = 0 and m = ‖W‖_col, both leave the model's outputs unchanged. `lora_rank` has no
sharding rule, so rank dims are replicated; the other dims shard like the wrapped weight's under every preset.
DoRA's `detach_norm` (default on, as in the paper §4.3 and PEFT) treats ‖W + s·A·B‖_col as a constant in the
backward pass; the forward is the same either way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.core.errors import ConfigError
from scaling.lm import model as transformer
from scaling.lm import sharding

METHODS = ("full", "lora", "dora", "frozen")
ADAPTER_METHODS = ("lora", "dora")
RANK_AXIS = "lora_rank"


@dataclasses.dataclass(frozen=True)
class Target:
  """A linear map of the model: where its stacked weight sits in the parameter tree and how many of its dims
  (after the leading layers dim) are inputs."""

  path: tuple[str, ...]
  n_in: int


TARGETS: dict[str, Target] = {
    "q": Target(("blocks", "attn", "wq"), 1),
    "k": Target(("blocks", "attn", "wk"), 1),
    "v": Target(("blocks", "attn", "wv"), 1),
    "o": Target(("blocks", "attn", "wo"), 2),
    "gate": Target(("blocks", "mlp", "w_gate"), 1),
    "up": Target(("blocks", "mlp", "w_up"), 1),
    "down": Target(("blocks", "mlp", "w_down"), 1),
}
GROUPS: dict[str, tuple[str, ...]] = {"attn": ("q", "k", "v", "o"), "mlp": ("gate", "up", "down"),
                                      "all": tuple(TARGETS)}


def parse_targets(targets: str | Sequence[str]) -> tuple[str, ...]:
  """'q,v' / ('attn', 'down') / 'all' -> target names in the canonical order of TARGETS."""
  items = targets.split(",") if isinstance(targets, str) else list(targets)
  chosen: set[str] = set()
  for item in (i.strip() for i in items):
    if not item:
      continue
    if item in GROUPS:
      chosen.update(GROUPS[item])
    elif item in TARGETS:
      chosen.add(item)
    else:
      raise ConfigError(f"finetune.targets: unknown target module {item!r} — choose from "
                        f"{', '.join(TARGETS)} or the groups {', '.join(GROUPS)}")
  return tuple(t for t in TARGETS if t in chosen)


@dataclasses.dataclass(frozen=True)
class AdapterSpec:
  """What trains: the method, and for lora/dora the rank, scale and wrapped weights."""

  method: str = "lora"
  rank: int = 8
  alpha: float = 16.0
  targets: tuple[str, ...] = tuple(TARGETS)
  detach_norm: bool = True  # DoRA only

  @property
  def scale(self) -> float:
    return float(self.alpha) / int(self.rank)

  @property
  def adapted(self) -> bool:
    """True when the method trains adapters (lora, dora) rather than base weights or nothing."""
    return self.method in ADAPTER_METHODS

  @property
  def dora(self) -> bool:
    return self.method == "dora"

  def validate(self, model_cfg: transformer.TransformerConfig) -> None:
    """One-line ConfigErrors for a bad method, rank, alpha or target list."""
    if self.method not in METHODS:
      raise ConfigError(f"finetune.method={self.method!r} is not one of {', '.join(METHODS)} — pick one, e.g. "
                        "configs/finetune.py:method=lora")
    if not self.adapted:
      return
    rank = self.rank
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= model_cfg.d_model:
      raise ConfigError(f"finetune.rank={rank!r} must be an integer in [1, d_model={model_cfg.d_model}] — "
                        "lower it (ranks 4-64 are usual)")
    if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not (
        math.isfinite(self.alpha) and self.alpha > 0):
      raise ConfigError(f"finetune.alpha={self.alpha!r} must be a positive number (the LoRA scale is alpha/rank)")
    if not self.targets:
      raise ConfigError(f"finetune.targets is empty but method={self.method!r} needs weights to wrap — "
                        f"set e.g. finetune.targets='all' or 'q,v'")
    parse_targets(self.targets)


# ---------------------------------------------------------------------------------------------------------------
# The math of one stacked weight (leading layers dim everywhere)
# ---------------------------------------------------------------------------------------------------------------
def lora_delta(a, b, n_in: int):
  """(L, *in, r), (L, r, *out) -> A·B of shape (L, *in, *out), in float32."""
  ins, outs = "abcd"[:n_in], "wxyz"[:b.ndim - 2]
  return jnp.einsum(f"l{ins}r,lr{outs}->l{ins}{outs}", a.astype(jnp.float32), b.astype(jnp.float32))


def column_norm(w, n_in: int, keepdims: bool = False):
  """L2 norm over the input dims of a stacked weight (L, *in, *out): one per layer and output feature."""
  w32 = w.astype(jnp.float32)
  return jnp.sqrt(jnp.sum(w32 * w32, axis=tuple(range(1, 1 + n_in)), keepdims=keepdims))


def merged_weight(w, adapter: dict[str, Any], spec: AdapterSpec, n_in: int):
  """The effective weight W' (LoRA or DoRA, see the module docstring), in W's dtype."""
  v = w.astype(jnp.float32) + spec.scale * lora_delta(adapter["lora_a"], adapter["lora_b"], n_in)
  if "magnitude" in adapter:
    norm = column_norm(v, n_in, keepdims=True)
    if spec.detach_norm:
      norm = jax.lax.stop_gradient(norm)
    m = jnp.expand_dims(adapter["magnitude"].astype(jnp.float32), tuple(range(1, 1 + n_in)))
    v = v * (m / norm)  # the ratio first: 1 at init (m is the same reduction of W), so W' == W to rounding
  return v.astype(w.dtype)


def unmerged_apply(x, w, adapter: dict[str, Any], spec: AdapterSpec, n_in: int):
  """Per layer l: x[l] (..., *in) -> (..., *out) without forming W': x·W + s·(x·A)·B, DoRA-rescaled per output.

  x has the layers dim first, like the weights (x[l] is the input of layer l)."""
  def one(x_l, w_l, a_l, b_l):
    x32 = x_l.astype(jnp.float32)
    base = jnp.tensordot(x32, w_l.astype(jnp.float32), n_in)
    low = jnp.tensordot(jnp.tensordot(x32, a_l.astype(jnp.float32), n_in), b_l.astype(jnp.float32), 1)
    return base + spec.scale * low

  y = jax.vmap(one)(x, w, adapter["lora_a"], adapter["lora_b"])
  if "magnitude" in adapter:
    v = w.astype(jnp.float32) + spec.scale * lora_delta(adapter["lora_a"], adapter["lora_b"], n_in)
    ratio = adapter["magnitude"].astype(jnp.float32) / column_norm(v, n_in)  # (L, *out)
    y = y * jnp.expand_dims(ratio, tuple(range(1, y.ndim - ratio.ndim + 1)))
  return y


# ---------------------------------------------------------------------------------------------------------------
# NNX modules: the adapter tree (built like the model, so eval_shape, logical names and sharded init work the same)
# ---------------------------------------------------------------------------------------------------------------
class WeightAdapter(nnx.Module):
  """LoRA/DoRA parameters for one stacked weight W of logical names `names` (W itself is not stored)."""

  def __init__(self, w, names: Sequence[str | None], target: Target, spec: AdapterSpec, rngs: nnx.Rngs):
    n_in = target.n_in
    lead, ins, outs = w.shape[:1], w.shape[1:1 + n_in], w.shape[1 + n_in:]
    lead_n, ins_n, outs_n = tuple(names[:1]), tuple(names[1:1 + n_in]), tuple(names[1 + n_in:])
    self.n_in, self.spec = n_in, spec
    a_init = nnx.initializers.he_uniform(in_axis=tuple(range(1, 1 + n_in)), out_axis=-1, batch_axis=(0,))
    self.lora_a = nnx.LoRAParam(a_init(rngs.params(), (*lead, *ins, spec.rank), jnp.float32),
                                sharding_names=(*lead_n, *ins_n, RANK_AXIS))
    self.lora_b = nnx.LoRAParam(jnp.zeros((*lead, spec.rank, *outs), jnp.float32),
                                sharding_names=(*lead_n, RANK_AXIS, *outs_n))
    if spec.dora:
      self.magnitude = nnx.LoRAParam(column_norm(w, n_in), sharding_names=(*lead_n, *outs_n))

  def params(self) -> dict[str, jax.Array]:
    return nnx.state(self).to_pure_dict()

  def merge(self, w):
    return merged_weight(w, self.params(), self.spec, self.n_in)

  def __call__(self, x, w):
    return unmerged_apply(x, w, self.params(), self.spec, self.n_in)


class _Node(nnx.Module):
  """A path component of the adapter tree (blocks, attn, mlp)."""


class Adapters(nnx.Module):
  """The adapter tree for `spec`: attribute path = the wrapped weight's path in the model (blocks.attn.wq ...).

  `base_params`/`base_names` are the model's pure parameter dict and its logical names
  (scaling/lm/step.py `abstract_model`); base weights are read (DoRA magnitudes), never stored."""

  def __init__(self, spec: AdapterSpec, base_params: dict, base_names: dict, rngs: nnx.Rngs):
    for name in spec.targets:
      target = TARGETS[name]
      node: nnx.Module = self
      for key in target.path[:-1]:
        if not hasattr(node, key):
          setattr(node, key, _Node())
        node = getattr(node, key)
      setattr(node, target.path[-1], WeightAdapter(get_path(base_params, target.path),
                                                   get_path(base_names, target.path), target, spec, rngs))


def get_path(tree: dict, path: Sequence[str]):
  for key in path:
    tree = tree[key]
  return tree


def _with_path(tree: dict, path: Sequence[str], value) -> dict:
  """A copy of `tree` with `value` at `path` (only the dicts along the path are copied)."""
  out = dict(tree)
  out[path[0]] = value if len(path) == 1 else _with_path(tree[path[0]], path[1:], value)
  return out


def init(spec: AdapterSpec, base_params: dict, base_names: dict, seed: int = 0) -> dict:
  """The adapter tree as a pure dict ({} for full/frozen); jittable (wrap in jax.jit with out_shardings)."""
  if not spec.adapted:
    return {}
  return nnx.state(Adapters(spec, base_params, base_names, nnx.Rngs(params=seed))).to_pure_dict()


def abstract(spec: AdapterSpec, abs_base: dict, base_names: dict) -> tuple[dict, dict]:
  """(abstract adapter pure dict, logical names tree) without allocating; both {} for full/frozen."""
  if not spec.adapted:
    return {}, {}
  abs_mod = nnx.eval_shape(lambda base: Adapters(spec, base, base_names, nnx.Rngs(params=0)), abs_base)
  state = nnx.state(abs_mod)
  return state.to_pure_dict(), sharding.logical_names_tree(state)


def merge(base_params: dict, adapter_params: dict, spec: AdapterSpec) -> dict:
  """Effective parameters: the base tree with every target weight replaced by its merged form."""
  out = base_params
  for name in spec.targets if spec.adapted else ():
    target = TARGETS[name]
    w = get_path(base_params, target.path)
    out = _with_path(out, target.path, merged_weight(w, get_path(adapter_params, target.path), spec, target.n_in))
  return out


def param_count(spec: AdapterSpec, model_cfg: transformer.TransformerConfig) -> int:
  """Analytic adapter parameter count: per target L·r·(in + out), plus L·out for DoRA's magnitudes."""
  if not spec.adapted:
    return 0
  d, hk, f, n = model_cfg.d_model, model_cfg.n_heads * model_cfg.head_dim, model_cfg.d_ff, model_cfg.n_layers
  dims = {"q": (d, hk), "k": (d, hk), "v": (d, hk), "o": (hk, d), "gate": (d, f), "up": (d, f), "down": (f, d)}
  total = 0
  for name in spec.targets:
    fan_in, fan_out = dims[name]
    total += n * (spec.rank * (fan_in + fan_out) + (fan_out if spec.dora else 0))
  return total
