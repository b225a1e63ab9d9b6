"""The toy's compiled program: every member (β, seed) of one width stacked on a leading axis M of every array (β only
changes task frequencies, never shapes), trained by ONE jitted step, `train.steps_per_call` steps per call (lax.scan).

`ToyProgram` is what the training loop (scaling/core/loop.py) drives: it draws each batch's task counts on the host
(the mixture machinery of scaling/core/schedules.py) and runs the jitted step or chunk on the device.
Metric definitions: scaling/toy/model.py `measure` (loss_norm uses the model's own decoders; G_F, G_r are the
expected encoder gradients of a frequent-only / rare-only batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from scaling.core import optim
from scaling.toy import config as toy_config
from scaling.toy import data as data_lib
from scaling.toy import model as model_lib
from scaling.toy import theory as tt


class Program:
  """Jitted init / train step / eval for the stacked members (leading axis M)."""

  def __init__(self, config, datas, seeds: Sequence[int]):
    self.config = config
    self.model_cfg = toy_config.model_config(config)
    specs = [dt.spec() for dt in datas]
    self.arrays = data_lib.TaskArrays.build(specs[0])  # basis and λ do not depend on β
    self.tx = optim.make_optimizer(config.train)
    self.schedule = optim.lr_schedule(config.train)
    self.pi_MxK = jnp.asarray(np.stack([s.pi for s in specs]), jnp.float32)
    self.w_F_MxK = jnp.asarray(np.stack([s.pi * tt.frequent_set(s, config.toy.mass) for s in specs]), jnp.float32)
    self.w_r_MxK = jnp.asarray(np.stack([s.pi * toy_config.rare_mask(config, s) for s in specs]), jnp.float32)
    self.lam_KxJ = jnp.asarray(specs[0].lam, jnp.float32)
    variant, d = self.model_cfg.variant, self.model_cfg.d
    arrays, mcfg, tx = self.arrays, self.model_cfg, self.tx
    # Per-parameter learning-rate multipliers (Adam steps every coordinate by ~lr, whatever its scale).
    lr_mult = {"U": float(config.train.lr_mult_encoder), "W": float(config.train.lr_mult_encoder),
               "D": float(config.train.lr_mult_decoder) * toy_config.decoder_lr_factor(config)}
    # Members that share a seed (different β) share their inputs: draw each seed's x once.
    seeds = [int(s) for s in seeds]
    uniq = sorted(set(seeds))
    self.unique_seeds = jnp.asarray(uniq, jnp.uint32)
    x_of_member = np.asarray([uniq.index(s) for s in seeds])
    enc_M = jax.vmap(lambda p: model_lib.encoder(p, variant))
    dec_M = jax.vmap(lambda p, U: model_lib.decoders(p, variant, U, arrays.B_KxDxR, arrays.sqrt_lam_KxR))

    def init(keys_M):
      params = jax.vmap(lambda k: model_lib.init_params(mcfg, k))(keys_M)
      return {"params": params, "opt_state": jax.vmap(tx.init)(params)}

    def loss_all(params, step, counts_MxK, weight, rows):
      x_SxRxD = jax.vmap(lambda s: data_lib.gaussian(s, step, rows, d))(self.unique_seeds)
      U = enc_M(params)
      loss_M = model_lib.dense_loss(U, dec_M(params, U), x_SxRxD, x_of_member, counts_MxK, arrays.B_KxDxR,
                                    arrays.sqrt_lam_KxR, weight)
      return jnp.sum(loss_M), loss_M  # members are independent: d(sum)/d(member params) = own gradient

    def train_step(state, step, counts_MxK, weight, rows):
      (_, loss_M), grads = jax.value_and_grad(loss_all, has_aux=True)(state["params"], step, counts_MxK, weight,
                                                                        rows)
      updates, opt_state = jax.vmap(tx.update)(grads, state["opt_state"], state["params"])
      params = {k: p + lr_mult[k] * updates[k] for k, p in state["params"].items()}
      gnorm_M = jax.vmap(optim.global_norm)(grads)
      return {"params": params, "opt_state": opt_state}, {"loss": loss_M, "grad_norm": gnorm_M}

    def train_chunk(state, steps_L, counts_LxMxK, weights_L, rows):
      def body(st, xs):
        return train_step(st, *xs, rows=rows)
      return jax.lax.scan(body, state, (steps_L, counts_LxMxK, weights_L))

    def evaluate(params):
      def one(p, pi, wF, wr):
        U = model_lib.encoder(p, variant)
        D = model_lib.decoders(p, variant, U, arrays.B_KxDxR, arrays.sqrt_lam_KxR)
        return model_lib.measure(U, D, arrays.B_KxDxR, self.lam_KxJ, pi, wF, wr)
      return jax.vmap(one)(params, self.pi_MxK, self.w_F_MxK, self.w_r_MxK)

    self.init = jax.jit(init)
    self.train_step = jax.jit(train_step, static_argnames=("rows",), donate_argnums=(0,))
    self.train_chunk = jax.jit(train_chunk, static_argnames=("rows",), donate_argnums=(0,))
    self.evaluate = jax.jit(evaluate)

  def abstract_state(self, n_members: int):
    return jax.eval_shape(self.init, jax.ShapeDtypeStruct((n_members,), jax.random.key(0).dtype))

  def keys(self, seeds: Sequence[int]):
    return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


class Batches:
  """Host side of the data: per-step task counts (the mixture machinery) and their running totals."""

  def __init__(self, config, datas, seeds, state: dict | None = None):
    self.datas, self.seeds = datas, seeds
    self.mean_rows = data_lib.mean_rows(datas[0])
    self.average = config.train.loss_average
    self.samples = 0
    self.counts_MxK = np.zeros((len(datas), datas[0].K), np.int64)
    if state:
      self.load(state)

  def load(self, state: dict) -> None:
    self.samples = int(state["samples"])
    self.counts_MxK = np.asarray(state["counts"], np.int64)

  def step(self, step: int) -> tuple[np.ndarray, int, float]:
    """(counts (M, K), rows, loss weight) of batch `step`."""
    counts = np.stack([data_lib.step_counts(dt, s, step) for dt, s in zip(self.datas, self.seeds)])
    rows = int(counts[0].sum())
    if np.any(counts.sum(1) != rows):  # extra rows are deterministic, so every member has the same batch size
      raise AssertionError(f"step {step}: members disagree on the batch size {counts.sum(1)}")
    self.samples += rows
    self.counts_MxK += counts
    return counts, rows, 1.0 / (rows if self.average == "batch" else self.mean_rows)

  def state(self) -> dict:
    return {"samples": self.samples, "counts": self.counts_MxK.tolist()}


def chunk_length(config) -> int:
  """Steps per compiled call: train.steps_per_call, reduced to divide every cadence (so chunks stay whole)."""
  t = config.train
  g = int(t.steps_per_call)
  for c in (t.log_every, t.eval_every, t.retention_every, config.checkpoint.every):
    g = math.gcd(g, int(c))
  return max(g, 1)


class ToyProgram:
  """The loop's view of the toy: segments of updates, the host data state, samples seen."""

  metric_ndim = 1  # one loss per member

  def __init__(self, prog: Program, config, datas, seeds: Sequence[int]):
    self.prog, self.chunk = prog, chunk_length(config)
    self.batches = Batches(config, datas, seeds)
    self.names = data_lib.task_names(config.toy.K)
    self.rows_last = int(config.train.batch_size)

  def set_data_state(self, state: dict) -> None:
    self.batches.load(state)

  def data_state(self) -> dict:
    return self.batches.state()

  def tokens(self, step: int) -> int:
    return self.batches.samples

  def advance(self, state, start: int, stop: int):
    host = [self.batches.step(s) for s in range(start, stop)]
    self.rows_last = host[-1][1]
    if len(host) == self.chunk > 1 and all(h[1] == host[0][1] for h in host):
      state, metrics = self.prog.train_chunk(state, jnp.arange(start, stop, dtype=jnp.int32),
                                             jnp.asarray(np.stack([h[0] for h in host]), jnp.int32),
                                             jnp.asarray([h[2] for h in host], jnp.float32), rows=host[0][1])
      return state, [metrics]
    out = []  # a short segment, or injection steps (more rows): one call per step
    for s, (counts, rows, weight) in zip(range(start, stop), host):
      state, m = self.prog.train_step(state, jnp.int32(s), jnp.asarray(counts, jnp.int32), jnp.float32(weight),
                                      rows=rows)
      out.append(m)
    return state, out

  def count_records(self, step: int) -> list[dict]:
    """data/<task>/count per member: instances seen in batches 0 … step − 1."""
    c = self.batches.counts_MxK
    return [{f"data/{name}/count": int(c[i, k]) for k, name in enumerate(self.names)} for i in range(len(c))]
