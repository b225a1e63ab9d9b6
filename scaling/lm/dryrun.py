"""`--dry_run` of the language-model trainer: sizes, tokens, FLOPs, mesh, batch layout and per-device memory.

Allocates nothing. `memory.plan_devices=N` plans for N devices analytically (no devices needed: the mesh and the
shardings are resolved on an abstract mesh); `memory.device_gib` states the accelerator memory to fit (else what
the local accelerator reports). A batch that does not divide over data × fsdp, or a model or microbatch that does
not fit, is one `error:` line before any compute.
"""

from __future__ import annotations

import jax
import numpy as np

from scaling.core import distributed
from scaling.lm import config as configlib
from scaling.lm import memory, sharding, trainable
from scaling.lm import model as transformer
from scaling.lm import step as step_lib


def describe(config, n_devices: int, n_processes: int = 1, param_split=None) -> str:
  """The --dry_run report: sizes, tokens, FLOPs, mesh, per-device batch. Allocates nothing."""
  mc = configlib.model_config(config)
  counts = transformer.param_counts(mc)
  _, abs_params, _ = step_lib.abstract_model(mc, config.seed)
  tree_total = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(abs_params))
  if tree_total != counts["total"]:
    raise AssertionError(f"parameter tree has {tree_total} parameters, formula says {counts['total']}")
  trained, held = tree_total, tree_total  # a fine-tune: the trainable tree, and it plus the frozen one
  if param_split is not None:
    trained, frozen = (trainable.count(tree) for tree, _ in param_split)
    held = trained + frozen
  t = config.train
  data, fsdp, tensor = sharding.resolve_mesh_shape(config.mesh, n_devices)
  tokens = t.steps * t.batch_size * config.data.seq_len
  fpt = transformer.flops_per_token(mc, config.data.seq_len)
  lines = [
      f"model       size={config.model.size} d_model={mc.d_model} n_layers={mc.n_layers} n_heads={mc.n_heads} "
      f"d_ff={mc.d_ff} vocab={mc.vocab_size} tied={mc.tie_embeddings} dtype={mc.dtype}",
      f"parameters  total={counts['total']:,} non_embedding={counts['non_embedding']:,} "
      f"(checked against the parameter tree)",
      f"memory      params+adam {(4 * held + 8 * trained) / 2**30:.2f} GiB fp32 in total (all devices)"
      + ("" if param_split is None else f"; Adam moments for the {trained:,} trainable parameters only"),
      f"training    steps={t.steps:,} batch={t.batch_size} seq_len={config.data.seq_len} tokens={tokens:,} "
      f"({tokens / max(counts['non_embedding'], 1):.1f} tokens/param)",
      f"compute     flops/token={fpt:.4g} total_flops={fpt * tokens:.4g}",
      f"optimizer   lr={t.learning_rate:.4g} warmup={t.warmup_steps} schedule={t.schedule} "
      f"grad_accum={t.grad_accum}",
      f"mesh        data={data} fsdp={fsdp} tensor={tensor} ({n_devices} devices, {n_processes} processes) "
      f"preset={config.sharding.preset}",
      f"batch       per_device={t.batch_size // (data * fsdp)} per_process={t.batch_size // n_processes} "
      f"microbatch={t.batch_size // (data * fsdp) // t.grad_accum}",
  ]
  return "\n".join(lines)



def dry_run(config, param_split=None) -> str:
  """The dry-run lines; `param_split` as in memory.plan (a fine-tune's trainable / frozen trees)."""
  config = configlib.resolve(config)
  planned = int(config.get("memory", {}).get("plan_devices", 0) or 0)
  if planned:
    n_devices, n_processes, device_bytes = planned, 1, float(config.memory.get("device_gib", 0) or 0) * memory.GIB
  else:
    distributed.initialize(config.distributed)
    n_devices, n_processes = jax.device_count(), jax.process_count()
    device_bytes = memory.device_memory_bytes(config)
  configlib.validate(config, n_devices, n_processes)
  plan = memory.plan(config, n_devices, device_bytes, param_split)
  memory.check(plan, config)
  lines = [describe(config, n_devices, n_processes, param_split), *memory.describe(plan, config.model.remat)]
  if planned:
    lines.append(f"            (planned for {planned} devices; none were used)")
  return "\n".join(lines)
