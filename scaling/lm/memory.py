"""Per-device memory of a training step, estimated analytically (no devices needed: any device count can be planned).

Fixed part (independent of the batch):
  params      every parameter leaf's shard on one device (its logical sharding under `sharding.preset` on the
              planned mesh; fp32 master weights when model.param_dtype is float32)
  grads       the same again (gradients have the parameters' dtype and sharding); + once more with grad_accum > 1
              (the accumulator)
  optimizer   AdamW's two moments, each like the parameters
  (a fine-tune passes its parameter split: gradients and moments then exist for the trainable tree only, and the
  parameters are the frozen base plus the trainable tree — LoRA/DoRA keep the base once and tiny adapters thrice)
  gathered    FSDP's transient full copies: one layer's weights in the compute dtype (twice: the one in use and
              the next one being gathered) plus that layer's fp32 gradient, and the output projection to the
              vocabulary with its gradient (when the parameters are sharded at all)
Per sequence of the microbatch (batch / (data·fsdp) / grad_accum sequences per device):
  activations what the backward pass keeps per layer at `model.remat` — none: everything; dots: the block input and
              the matmul outputs without batch dims (q, k, v, attention and MLP projections: (6·d + 2·f) per
              token); full: the block input only — plus, recomputed during backward, one layer's activations (dots)
              or the larger of its attention and MLP halves (full: XLA frees the MLP's before the attention's
              backward runs).
              attention keeps heads × L² fp32 probabilities (scaling/lm/attention.py); with attention_impl='xla'
              also the logits and softmax, with 'cudnn' (flash attention) no L² term
  logits      fp32 logits and their gradient (XLA fuses the log-softmax): 2 × 4 bytes × L × vocab
The largest microbatch that fits is the one whose total stays under HEADROOM of the device's memory (the rest is
left to XLA's workspace and fragmentation). benchmarks/accelerator_check.py prints this estimate next to XLA's own
compiled memory analysis.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.sharding import AbstractMesh

from scaling.core.errors import ConfigError
from scaling.lm import config as configlib
from scaling.lm import model as transformer
from scaling.lm import sharding
from scaling.lm import step as step_lib

HEADROOM = 0.9
GIB = 2**30
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  n_devices: int
  mesh: tuple[int, int, int]  # (data, fsdp, tensor)
  params: float  # bytes per device
  grads: float
  optimizer: float
  gathered: float
  per_sequence: dict  # {"activations": bytes, "logits": bytes} per sequence of the microbatch
  microbatch: int  # sequences per device per microbatch
  device_bytes: float  # 0 when unknown

  @property
  def fixed(self) -> float:
    return self.params + self.grads + self.optimizer + self.gathered

  @property
  def per_seq(self) -> float:
    return sum(self.per_sequence.values())

  @property
  def total(self) -> float:
    return self.fixed + self.microbatch * self.per_seq

  @property
  def max_microbatch(self) -> int | None:
    """Largest sequences per device per microbatch that fit the device memory (None: memory unknown)."""
    if not self.device_bytes:
      return None
    return max(int((HEADROOM * self.device_bytes - self.fixed) // self.per_seq), 0)


def device_memory_bytes(config, devices=None) -> float:
  """`memory.device_gib` when set, else what the first device reports (GPU/TPU), else 0 (unknown)."""
  gib = float(config.get("memory", {}).get("device_gib", 0) or 0)
  if gib > 0:
    return gib * GIB
  devices = devices if devices is not None else jax.devices()
  stats = devices[0].memory_stats() if devices and devices[0].platform != "cpu" else None
  return float((stats or {}).get("bytes_limit", 0))


def _shard_bytes(abs_params, names, rules, mesh) -> tuple[float, float]:
  """(bytes of this device's parameter shards, bytes of all parameters)."""
  per_device = total = 0.0
  leaves = zip(jax.tree.leaves(abs_params), jax.tree.leaves(names, is_leaf=lambda x: x is None or
                                                            isinstance(x, tuple)))
  for a, n in leaves:
    nbytes = float(np.prod(a.shape)) * np.dtype(a.dtype).itemsize
    spec = sharding.logical_to_spec(n, a.shape, rules, mesh)
    axes = [x for d in spec if d for x in ((d,) if isinstance(d, str) else d)]
    per_device += nbytes / math.prod(mesh.shape[x] for x in axes)
    total += nbytes
  return per_device, total


def _layer_activations(mc: transformer.TransformerConfig, seq_len: int, tensor: int) -> tuple[float, float]:
  """Bytes one layer keeps per sequence with no remat, as (attention half, MLP half) (see the module docstring)."""
  a = _BYTES[mc.dtype]
  d, f, h, L = mc.d_model, mc.d_ff / tensor, mc.n_heads / tensor, seq_len
  # q, k, v, normed q/k, rotated q/k, attention out, projection, residual (a bytes each) + fp32 norm / rotary
  # intermediates; MLP out, residual + gate, up, silu, product
  attention, mlp = d * 10 * a + d * 4 * 6, 2 * d * a + 4 * f * a
  # scaling/lm/attention.py keeps only the fp32 probabilities for its backward; jax.nn's XLA path keeps the
  # logits and softmax too; cuDNN's flash attention keeps no L x L term.
  scores = {None: h * L * 4, "xla": h * L * (2 * a + 4), "cudnn": 0.0}[mc.attention_impl]
  return L * (attention + scores), L * mlp


def plan(config, n_devices: int, device_bytes: float = 0.0, param_split=None) -> MemoryPlan:
  """The memory plan of a resolved config on `n_devices` (the mesh resolved for that many).

  `param_split`: ((abstract trainable tree, its logical names), (abstract frozen tree, its names)) for a fine-tune
  (scaling/lm/trainable.py); None: every parameter trains."""
  mc = configlib.model_config(config)
  data, fsdp, tensor = sharding.resolve_mesh_shape(config.mesh, n_devices)
  mesh = AbstractMesh((data, fsdp, tensor), sharding.MESH_AXES)
  rules = sharding.get_rules(config.sharding.preset)
  if param_split is None:
    _, abs_params, names = step_lib.abstract_model(mc, config.seed)
    frozen = 0.0
    trained, _ = _shard_bytes(abs_params, names, rules, mesh)
  else:
    (abs_trained, trained_names), (abs_frozen, frozen_names) = param_split
    trained, _ = _shard_bytes(abs_trained, trained_names, rules, mesh)
    frozen, _ = _shard_bytes(abs_frozen, frozen_names, rules, mesh)
  params = trained + frozen
  t, L, a = config.train, config.data.seq_len, _BYTES[mc.dtype]
  pb = _BYTES[mc.param_dtype]
  grads = trained * (2 if t.grad_accum > 1 else 1)
  gathered = 0.0
  if fsdp > 1 or tensor > 1:
    layer = transformer.param_counts(dataclasses.replace(mc, n_layers=1))["non_embedding"] - mc.d_model
    gathered = layer * (2 * a + pb) + mc.d_model * mc.vocab_size * (a + pb)
  attention, mlp = _layer_activations(mc, L, tensor if config.sharding.preset == "fsdp_tp" else 1)
  layer = attention + mlp
  kept = {"none": layer * mc.n_layers,
          "dots": mc.n_layers * L * (6 * mc.d_model + 2 * mc.d_ff) * a + layer,
          "full": mc.n_layers * L * mc.d_model * a + max(attention, mlp)}[mc.remat]
  logits = 2 * 4 * L * mc.vocab_size / (tensor if config.sharding.preset == "fsdp_tp" else 1)
  micro = max(t.batch_size // (data * fsdp) // max(t.grad_accum, 1), 1)
  return MemoryPlan(n_devices, (data, fsdp, tensor), params, grads, 2 * trained, gathered,
                    {"activations": kept, "logits": logits}, micro, float(device_bytes))


def min_grad_accum(per_device: int, max_microbatch: int | None) -> int | None:
  """Smallest grad_accum that divides the per-device batch into microbatches of at most `max_microbatch`."""
  if not max_microbatch:
    return None
  return next(k for k in range(1, per_device + 1) if per_device % k == 0 and per_device // k <= max_microbatch)


def check(p: MemoryPlan, config) -> None:
  """One-line ConfigError when the model or the microbatch does not fit the stated device memory."""
  if not p.device_bytes:
    return
  mem = p.device_bytes / GIB
  if p.fixed > HEADROOM * p.device_bytes:
    raise ConfigError(f"model.size={config.model.size} needs {p.fixed / GIB:.1f} GiB per device for parameters, "
                      f"gradients and optimizer state on {p.n_devices} devices (fsdp={p.mesh[1]}), more than "
                      f"{HEADROOM:.0%} of the {mem:.0f} GiB device memory; shard over more devices "
                      "(sharding.preset='fsdp', mesh.fsdp=-1) or use a smaller model")
  if p.total > HEADROOM * p.device_bytes:
    b = p.max_microbatch
    accum = min_grad_accum(p.microbatch * max(config.train.grad_accum, 1), b)
    fix = (f"set train.grad_accum={accum} (largest microbatch that fits: {b} sequences)" if accum else
           "use a shorter data.seq_len, model.remat='full' or more devices")
    raise ConfigError(f"a microbatch of {p.microbatch} sequences x {config.data.seq_len} tokens needs "
                      f"{p.total / GIB:.1f} GiB per device (remat={config.model.remat}), more than {HEADROOM:.0%} of "
                      f"the {mem:.0f} GiB device memory; {fix}")


def describe(p: MemoryPlan, remat: str) -> list[str]:
  """The --dry_run memory lines."""
  g = lambda x: f"{x / GIB:.2f}"  # noqa: E731
  fit = (f"largest microbatch that fits {p.device_bytes / GIB:.0f} GiB: {p.max_microbatch} sequences"
         if p.device_bytes else "device memory unknown (set memory.device_gib to check the fit)")
  return [
      f"memory      per device (GiB, estimate): params={g(p.params)} grads={g(p.grads)} "
      f"optimizer={g(p.optimizer)} fsdp_gathered={g(p.gathered)}",
      f"            activations={g(p.microbatch * p.per_sequence['activations'])} (remat={remat}) "
      f"logits={g(p.microbatch * p.per_sequence['logits'])} for a microbatch of {p.microbatch} "
      f"({g(p.per_seq)} per sequence); total={g(p.total)}",
      f"            {fit}",
  ]
