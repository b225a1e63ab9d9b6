"""Gradient interference between the training batch and a rare task (paper §4, Fig 9).

Measured on the first layer's MLP neurons. Neuron j of layer 0 owns three weight slices, its gate and up input
columns `blocks.mlp.w_gate[0][:, j]`, `w_up[0][:, j]` (D each) and its output row `w_down[0][j, :]` (D); its
gradient vector is their concatenation (3·D). The top-K neurons by the norm of that vector (K =
`mechanisms.interference_top_k`; ranked by the task gradient g_r, or the batch gradient g with
`interference_rank_by="batch"`) give a K·3·D vector on which, per active task t:

  g_r     gradient of the task loss: mean LABEL-token cross-entropy over the task's train instances (all 5000 by
          default, as in the paper, or `interference_task_instances` of them), each a row TOK1 TOK2 (all the
          LABEL's causal context). LABEL only, because TOK2 is random given TOK1 and EOD is trivial: the LABEL is
          what the task asks the model to learn.
  g       the batch gradient of the training objective (CE + z-loss, mean over weighted tokens, before clipping),
          i.e. the gradient the optimizer is about to use.
  g_t     the part of g from task t's tokens, by `interference_split`:
            "label" (default)  the LABEL targets of task t's instances only (`task_mask == t + 1` at target
                               index LABEL_POS): the same loss as g_r, on the batch's instances, so g_t ∝ g_r
                               when the batch held every train instance once;
            "instance"         all of the instance's targets (`task_mask == t + 1`: TOK2, LABEL, EOD), the
                               definition before the split was an option.
  g_nt    the rest of g: background tokens, other tasks' tokens and (split "label") task t's TOK2/EOD targets.
          g = g_t + g_nt exactly: every part shares the denominator, and the non-task part is the complement of
          the union of the measured tasks' masks.

and records interference/<task>/{cos_g_gr, cos_gt_gr, cos_gnt_gr, norm_g, norm_gt, norm_gnt, norm_gr, k}
(the names are the same under both splits; the run's config says which one was used). cos_gt_gr is left out when
the batch holds no token of the task in the split (g_t = 0 has no direction).

Cost: the split takes one forward pass and one backward pass whose cotangent carries 1 + T masks at once (`vmap` of
the VJP of the per-token loss: the forward and its residuals are shared, only the backward is batched), instead of
a backward pass per mask; both splits cost the same. Only layer 0's MLP weights are differentiated: layers 1… run
as constants, so their weight gradients are never formed. g_r is a scan over chunks of instance rows (2 positions
each, 10,000 positions per task for all 5000 instances); `benchmarks/interference_overhead.py` prints what it costs
next to a train step. Everything runs under the training mesh and sharding rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scaling.core.errors import ConfigError
from scaling.lm import evaluate, losses, sharding
from scaling.lm.data.tasks.base import LABEL_POS

MLP_KEYS = ("w_gate", "w_up", "w_down")
METRICS = ("cos_g_gr", "cos_gt_gr", "cos_gnt_gr", "norm_g", "norm_gt", "norm_gnt", "norm_gr", "k")
RANK_BY = ("task", "batch")
SPLITS = ("label", "instance")


def layer_slice(params, start: int, stop: int | None):
  """params with every stacked block parameter cut to layers [start, stop) (a model of those layers)."""
  return {**params, "blocks": jax.tree.map(lambda a: a[start:stop], params["blocks"])}


def _with_mlp0(params, mlp0):
  """Layer-0 parameters (one stacked layer) with its MLP weights replaced by `mlp0`."""
  first = layer_slice(params, 0, 1)
  mlp = {**first["blocks"]["mlp"], **{k: mlp0[k][None] for k in MLP_KEYS}}
  return {**first, "blocks": {**first["blocks"], "mlp": mlp}}


def mlp0_of(params):
  return {k: params["blocks"]["mlp"][k][0] for k in MLP_KEYS}


def logits_via_mlp0(graphdef, params, mlp0, inputs_BxL):
  """The model's logits with layer 0's MLP weights taken from `mlp0` (the only differentiated input)."""
  first = nnx.merge(graphdef, _with_mlp0(params, mlp0))
  x_BxLxD = first.run_blocks(first.embed_tokens(inputs_BxL))
  n_layers = params["blocks"]["mlp"]["w_gate"].shape[0]
  rest = nnx.merge(graphdef, layer_slice(params, 1, None))
  if n_layers > 1:
    x_BxLxD = rest.run_blocks(x_BxLxD)
  return rest.logits(x_BxLxD)


def neuron_vectors(g):
  """{w_gate (D,F), w_up (D,F), w_down (F,D)} -> (F, 3D): row j is neuron j's gradient."""
  return jnp.concatenate([g["w_gate"].T, g["w_up"].T, g["w_down"]], axis=1)


def _cos(a, b):
  # NaN when either vector is zero: the caller drops such cosines.
  return jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


def summarize(g_FxE, gt_FxE, gr_FxE, top_k: int, rank_by: str = "task") -> dict[str, jax.Array]:
  """Cosines and norms on the top-k neurons (rows) of per-neuron gradients g, g_t, g_r (g_nt = g − g_t)."""
  score_F = jnp.linalg.norm(gr_FxE if rank_by == "task" else g_FxE, axis=1)
  k = min(int(top_k), g_FxE.shape[0])
  _, idx_K = jax.lax.top_k(score_F, k)
  g, gt, gr = (x[idx_K].reshape(-1) for x in (g_FxE, gt_FxE, gr_FxE))
  gnt = g - gt
  return {"cos_g_gr": _cos(g, gr), "cos_gt_gr": _cos(gt, gr), "cos_gnt_gr": _cos(gnt, gr),
          "norm_g": jnp.linalg.norm(g), "norm_gt": jnp.linalg.norm(gt), "norm_gnt": jnp.linalg.norm(gnt),
          "norm_gr": jnp.linalg.norm(gr), "k": jnp.asarray(k, jnp.int32)}


def task_rows(task, limit: int = 0) -> dict[str, np.ndarray]:
  """The task's train instances (all, or a fixed seeded subset of `limit`) as LABEL-weighted rows.

  A row stops at the LABEL's target (TOK1 TOK2 -> TOK2 LABEL for LABEL_POS 1): the model is causal, so the
  positions after it (EOD, padding) cannot change the LABEL loss or its gradient, and cutting them makes g_r
  several times cheaper than the 8-position rows of the eval sets."""
  inst = task.instances(task.split_ids("train", limit))
  n = task.label_pos + 1
  weights = np.zeros((len(inst), n), np.float32)
  weights[:, task.label_pos] = 1.0
  return {"inputs": inst[:, :n].astype(np.int32), "targets": inst[:, 1:n + 1].astype(np.int32), "weights": weights}


def put_global(tree, sharding_):
  """Identical host arrays on every process -> global arrays with `sharding_` (multi-process safe)."""
  return jax.tree.map(lambda a: jax.make_array_from_callback(a.shape, sharding_, lambda idx: a[idx]), tree)


def chunk_rows(rows: dict[str, np.ndarray], chunk: int) -> dict[str, np.ndarray]:
  """(n, L) rows -> (C, chunk, L), padded with zero-weight copies of row 0."""
  n = rows["inputs"].shape[0]
  c = -(-n // chunk)
  return {k: v.reshape(c, chunk, *v.shape[1:]) for k, v in evaluate.pad_batch(rows, c * chunk).items()}


class Interference:
  """Jitted interference metrics for a TrainSetup (`scaling/lm/step.py`) and a list of task ids."""

  def __init__(self, setup, task_ids: Sequence[int], task_names: Sequence[str],
               gr_rows: Sequence[dict[str, np.ndarray]], top_k: int = 64, rank_by: str = "task",
               chunk: int = 1024, split: str = "label", label_pos: int = LABEL_POS):
    """gr_rows[i]: task_ids[i]'s g_r rows (`task_rows`), any count; chunked here to `chunk` rows (rounded up to
    the data-parallel size). split: "label" or "instance" (module docstring); label_pos: the LABEL's target index."""
    if split not in SPLITS or rank_by not in RANK_BY:
      raise ConfigError(f"interference split={split!r}, rank_by={rank_by!r}: use split in {SPLITS}, rank_by in "
                        f"{RANK_BY}")
    self.setup = setup
    self.split, self.label_pos = split, int(label_pos)
    self.names = tuple(task_names)
    self.ids = tuple(int(t) for t in task_ids)
    mesh = setup.mesh
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    chunk = -(-max(int(chunk), 1) // dp) * dp
    self.top_k, self.rank_by = int(top_k), rank_by
    row_sh = NamedSharding(mesh, P(None, sharding.BATCH_AXES))
    self.gr_rows = [put_global(chunk_rows(r, min(chunk, -(-len(r["inputs"]) // dp) * dp)), row_sh)
                    for r in gr_rows]
    param_sh = setup.state_shardings["params"]
    rep = sharding.replicated(mesh)
    self._fn = jax.jit(self._metrics, in_shardings=(param_sh, setup.batch_sharding, row_sh), out_shardings=rep)

  # ---- gradients (traced) --------------------------------------------------------------------------------------
  def _token_objective(self, params, mlp0, batch):
    """Per-token training objective (B, L): CE (+ z-loss) times the loss weights, as in step.make_loss_sums."""
    logits_BxLxV = logits_via_mlp0(self.setup.graphdef, params, mlp0, batch["inputs"])
    obj_BxL, _ = losses.token_objective(logits_BxLxV, batch["targets"], self.setup.config.train.z_loss)
    return obj_BxL * batch["weights"].astype(jnp.float32)

  def task_masks(self, task_mask_BxL):
    """(T, B, L) bool: the targets whose loss makes up g_t of each measured task (module docstring)."""
    masks = jnp.stack([task_mask_BxL == t + 1 for t in self.ids])
    if self.split == "label":
      masks = masks & (jnp.arange(task_mask_BxL.shape[-1]) == self.label_pos)
    return masks

  def split_grads(self, params, batch):
    """Layer-0 MLP gradients of the batch objective restricted to M masks, in one pass: (M, ...) per weight.

    Mask 1 + i is task `ids[i]`'s tokens under the split (`task_masks`), mask 0 everything else; all share the
    denominator Σ weights, so they sum to the full batch gradient."""
    mlp0 = mlp0_of(params)
    task_TxBxL = self.task_masks(batch["task_mask"])
    masks_MxBxL = jnp.concatenate([~jnp.any(task_TxBxL, axis=0, keepdims=True), task_TxBxL]).astype(jnp.float32)
    denom = jnp.maximum(jnp.sum(batch["weights"].astype(jnp.float32)), 1.0)
    accum = int(self.setup.config.train.grad_accum)

    def grads_of(mb, cot_MxBxL):
      _, vjp = jax.vjp(lambda m0: self._token_objective(params, m0, mb), mlp0)
      return jax.vmap(lambda c: vjp(c)[0])(cot_MxBxL)

    if accum == 1:
      return grads_of(batch, masks_MxBxL / denom)
    # Same microbatch layout as the train step (rows a, a+A, ...), so memory matches training.
    split = lambda x, ax: jnp.moveaxis(x.reshape(*x.shape[:ax], x.shape[ax] // accum, accum, *x.shape[ax + 1:]),
                                       ax + 1, 0)  # noqa: E731
    micro = {k: split(batch[k], 0) for k in ("inputs", "targets", "weights")}
    cots = split(masks_MxBxL / denom, 1)

    def body(acc, xs):
      mb, cot = xs
      return jax.tree.map(jnp.add, acc, grads_of(mb, cot)), None

    zeros = jax.tree.map(lambda a: jnp.zeros((masks_MxBxL.shape[0], *a.shape), a.dtype), mlp0)
    return jax.lax.scan(body, zeros, (micro, cots))[0]

  def task_grad(self, params, rows_CxRxL):
    """Layer-0 MLP gradient of the mean LABEL loss over chunked rows (C, R, L)."""
    mlp0 = mlp0_of(params)

    def loss_sum(m0, chunk):
      logits = logits_via_mlp0(self.setup.graphdef, params, m0, chunk["inputs"])
      ce = losses.token_losses(logits, chunk["targets"])
      return jnp.sum(ce * chunk["weights"])

    def body(acc, chunk):
      return jax.tree.map(jnp.add, acc, jax.grad(loss_sum)(mlp0, chunk)), None

    total = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, mlp0), rows_CxRxL)[0]
    n = jnp.maximum(jnp.sum(rows_CxRxL["weights"]), 1.0)
    return jax.tree.map(lambda g: g / n, total)

  def _metrics(self, params, batch, gr_rows):
    with sharding.use_rules(self.setup.rules, self.setup.mesh):
      split = self.split_grads(params, batch)
      g_FxE = neuron_vectors(jax.tree.map(lambda a: jnp.sum(a, 0), split))
      out = {}
      for i, name in enumerate(self.names):
        gt_FxE = neuron_vectors(jax.tree.map(lambda a, i=i: a[1 + i], split))
        gr_FxE = neuron_vectors(self.task_grad(params, gr_rows[i]))
        out[name] = summarize(g_FxE, gt_FxE, gr_FxE, self.top_k, self.rank_by)
      return out

  # ---- host API ------------------------------------------------------------------------------------------------
  def measure_device(self, params, batch) -> dict[str, dict[str, jax.Array]]:
    """Per-task metric arrays on device (no host sync)."""
    return self._fn(params, batch, self.gr_rows)

  def measure(self, params, batch) -> dict[str, Any]:
    """interference/<task>/<metric> floats (one host sync)."""
    return to_record(jax.device_get(self.measure_device(params, batch)))


def from_settings(setup, mix, s: dict[str, Any]) -> Interference:
  """The measurement for every active task of mixture `mix` with the `interference_*` settings `s` (the
  mechanisms settings dict, scaling/mechanisms/settings.py settings(config))."""
  names = mix.active_names
  rows = [task_rows(mix.task(n), s["interference_task_instances"]) for n in names]
  return Interference(setup, mix.active, names, rows, s["interference_top_k"], s["interference_rank_by"],
                      s["interference_chunk"], s["interference_split"])


def to_record(values: dict[str, dict[str, Any]]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for name, m in values.items():
    for key in METRICS:
      v = m[key]
      if key == "k":
        out[f"interference/{name}/k"] = int(v)
      elif np.isfinite(v):  # a cosine with a zero vector has no value
        out[f"interference/{name}/{key}"] = float(v)
  return out
