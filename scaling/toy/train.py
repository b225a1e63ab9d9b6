"""The toy trainer: `python -m scaling.toy_train --config=configs/toy.py[:arg] --workdir=W [--dry_run]`.

One invocation trains one width for every member (β in toy.betas) × (seed in toy.seeds) as ONE jitted program:
members are stacked on a leading axis of every array (β only changes task frequencies, never shapes), and
train.steps_per_call steps run per call (lax.scan). Widths are separate invocations (the sweep axis).

```
W/status.json              program status ("running"/"done"/"failed"), polled by launch/sweep.py; no config.json
W/checkpoints/             orbax: stacked params + Adam state of all members, data state (JSON)
W/beta=1.0_seed=0/         one complete run dir per member (scaling/rundir.py), experiment "toy":
  config.json              config = this member alone (toy.betas=(), toy.seeds=(), toy.beta=β, seed=s):
                           rerunning it trains just this member, with the same numbers
  metrics.jsonl            every train.log_every: train/loss (batch mean over the window), train/grad_norm,
                           train/lr, data/<task>/count (instances seen so far);
                           every train.eval_every (and steps 0 and last), exact population values:
                           toy/<task>/{loss_norm, signal, signal_norm}, toy/{loss, delta_F, grad_F_norm,
                           grad_r_norm, cos_rF, signal_frequent, signal_rare}
  retention.jsonl          {"step", "retention": K×r nested list of ‖P_U b_{k,j}‖²} every train.retention_every
                           steps and at the last step (kept out of metrics.jsonl: 1024 numbers per record)
  theory.json              toy_theory's predictions for this member at this width (see `theory`)
  perf.jsonl, status.json
```
Tasks are named t01..tK (1-based). "tokens" counts samples (seq_len 1), extra injected rows included.
Metric definitions: scaling/models/toy.py `measure` (loss_norm uses the model's own decoders; G_F, G_r are the
expected encoder gradients of a frequent-only / rare-only batch).

Resume: rerun the same command; it restores the newest checkpoint and rewrites the metrics after it identically.
Exit codes: 0 done, 1 failed, 2 bad config or flags, 130 stopped by SIGINT/SIGTERM after a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from scaling.core import checkpoint as ckpt_lib
from scaling.core import cli, optim, rundir, schedules
from scaling.lm.config import ConfigError
from scaling.toy import data as toy_data
from scaling.toy import model as toy_model
from scaling.toy import theory as tt

log = logging.getLogger(__name__)

EXPERIMENT = "toy"
RETENTION_FILE = "retention.jsonl"
THEORY_FILE = "theory.json"
LOSS_AVERAGES = ("batch", "expected")
LR_SCHEDULES = ("cosine", "wsd", "constant")
# Settings that may change between a run and its resume without changing the numbers it computes.
RESUMABLE_CHANGES = ("checkpoint.",)


# ---------------------------------------------------------------------------------------------------------------
# Config: validation and members.


@dataclasses.dataclass(frozen=True)
class Member:
  index: int
  name: str
  beta: float
  seed: int


def member_name(beta: float, seed: int) -> str:
  return f"beta={float(beta)}_seed={int(seed)}"


def members(config) -> list[Member]:
  betas = tuple(config.toy.betas) or (config.toy.beta,)
  seeds = tuple(config.toy.seeds) or (config.seed,)
  out = []
  for b in betas:
    for s in seeds:
      out.append(Member(len(out), member_name(b, s), float(b), int(s)))
  return out


def _num(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _require(ok: bool, msg: str) -> None:
  if not ok:
    raise ConfigError(msg)


def validate(config) -> None:
  """Raises ConfigError (one line naming the key and the fix) before any compute."""
  _require(config.get("experiment") == EXPERIMENT,
           f"experiment={config.get('experiment')!r}: scaling.toy_train runs toy configs (configs/toy.py); "
           "language-model configs run with python -m scaling.train")
  t, m, tr = config.toy, config.model, config.train
  _require(isinstance(t.K, int) and t.K >= 1 and isinstance(t.r, int) and t.r >= 1,
           f"toy.K={t.K}, toy.r={t.r} must be integers >= 1")
  d = t.K * t.r
  _require(isinstance(t.width, int) and 1 <= t.width <= d,
           f"toy.width={t.width} must be an integer in 1..d={d} (d = toy.K*toy.r); lower the width or raise r")
  _require(_num(t.alpha) and t.alpha >= 0, f"toy.alpha={t.alpha} must be a number >= 0")
  _require(len(t.alphas) in (0, t.K) and all(_num(a) and a >= 0 for a in t.alphas),
           f"toy.alphas has {len(t.alphas)} values; give K={t.K} numbers >= 0, or () for toy.alpha everywhere")
  _require(t.lam_norm in tt.LAM_NORMS, f"toy.lam_norm={t.lam_norm!r} is not one of {tt.LAM_NORMS}")
  betas = tuple(t.betas) or (t.beta,)
  seeds = tuple(t.seeds) or (config.seed,)
  _require(all(_num(b) for b in betas), f"toy.betas={tuple(t.betas)} must be numbers")
  _require(all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds),
           f"toy.seeds={tuple(t.seeds)} (or seed={config.seed}) must be integers >= 0")
  _require(len(set(map(float, betas))) == len(betas) and len(set(seeds)) == len(seeds),
           f"toy.betas={tuple(t.betas)} / toy.seeds={tuple(t.seeds)} repeat a value; members need distinct names")
  _require(_num(t.mass) and 0 < t.mass <= 1, f"toy.mass={t.mass} must be in (0, 1]")
  _require(all(isinstance(k, int) and 1 <= k <= t.K for k in t.rare_tasks),
           f"toy.rare_tasks={tuple(t.rare_tasks)} must be 1-based task labels in 1..{t.K}")
  inj = t.inject
  _require(isinstance(inj.task, int) and 0 <= inj.task <= t.K,
           f"toy.inject.task={inj.task} must be 0 (none) or a task label in 1..{t.K}")
  _require(m.variant in toy_model.VARIANTS, f"model.variant={m.variant!r} is not one of {toy_model.VARIANTS}")
  _require(_num(m.init_scale) and m.init_scale > 0, f"model.init_scale={m.init_scale} must be > 0")
  _require(_num(m.decoder_init_scale) and m.decoder_init_scale >= 0,
           f"model.decoder_init_scale={m.decoder_init_scale} must be >= 0")
  for key in ("steps", "batch_size", "log_every", "steps_per_call"):
    _require(isinstance(tr[key], int) and tr[key] >= 1, f"train.{key}={tr[key]} must be an integer >= 1")
  for key in ("eval_every", "retention_every", "warmup_steps"):
    _require(isinstance(tr[key], int) and tr[key] >= 0, f"train.{key}={tr[key]} must be an integer >= 0")
  _require(_num(tr.learning_rate) and tr.learning_rate > 0, f"train.learning_rate={tr.learning_rate} must be > 0")
  _require(tr.warmup_steps <= tr.steps, f"train.warmup_steps={tr.warmup_steps} exceeds train.steps={tr.steps}")
  _require(tr.schedule in LR_SCHEDULES, f"train.schedule={tr.schedule!r} is not one of {LR_SCHEDULES}")
  _require(0 <= tr.min_lr_ratio <= 1, f"train.min_lr_ratio={tr.min_lr_ratio} must be in [0, 1]")
  _require(0 <= tr.b1 < 1 and 0 <= tr.b2 < 1, f"train.b1={tr.b1}, train.b2={tr.b2} must lie in [0, 1)")
  _require(_num(tr.decoder_lr_ref_width) and tr.decoder_lr_ref_width >= 0,
           f"train.decoder_lr_ref_width={tr.decoder_lr_ref_width} must be >= 0 (0: no width scaling)")
  _require(tr.loss_average in LOSS_AVERAGES, f"train.loss_average={tr.loss_average!r} is not one of {LOSS_AVERAGES}")
  _require(isinstance(config.checkpoint.every, int) and config.checkpoint.every >= 1,
           f"checkpoint.every={config.checkpoint.every} must be an integer >= 1")
  for b in betas:
    try:
      _toy_data(config, b).validate()
    except schedules.ScheduleError as e:
      raise ConfigError(f"{e} (β={b})") from None


def _toy_data(config, beta: float):
  t = config.toy
  inj = toy_data.Inject(int(t.inject.task), str(t.inject.schedule), int(t.inject.period),
                        float(t.inject.frequency))
  return toy_data.ToyData(K=t.K, r=t.r, beta=float(beta), alpha=tuple(t.alphas) if len(t.alphas) else float(t.alpha),
                          lam_norm=t.lam_norm, basis_seed=int(t.basis_seed), batch_size=int(config.train.batch_size),
                          schedule=t.schedule, inject=inj)


def member_config(config, member: Member) -> dict:
  """The member's own config (JSON-ready): the program config narrowed to one (β, seed)."""
  c = json.loads(rundir.dumps(config.to_dict()))
  c["toy"]["betas"], c["toy"]["seeds"] = [], []
  c["toy"]["beta"], c["seed"] = member.beta, member.seed
  return c


def decoder_lr_factor(config) -> float:
  """min(1, train.decoder_lr_ref_width / width): Adam's step on the width-N decoders shrinks as 1/N above the
  reference width (muP's 1/fan-in output-layer rule), else every one of a rare task's r·N decoder weights moves by
  ~lr per appearance and its predictions drift by ~lr·sqrt(N). 0 turns the scaling off."""
  ref = config.train.decoder_lr_ref_width
  return min(1.0, ref / config.toy.width) if ref else 1.0


def _model_config(config):
  return toy_model.ToyModelConfig(d=config.toy.K * config.toy.r, width=int(config.toy.width), K=config.toy.K,
                                  r=config.toy.r, variant=config.model.variant,
                                  init_scale=float(config.model.init_scale),
                                  decoder_init_scale=float(config.model.decoder_init_scale))


def rare_mask(config, spec: tt.ToySpec) -> np.ndarray:
  """(K,) bool: the tasks whose expected gradient is G_r."""
  t = config.toy
  mask = np.zeros(spec.K, bool)
  if len(t.rare_tasks):
    mask[np.asarray(t.rare_tasks) - 1] = True
  elif t.inject.task:
    mask[t.inject.task - 1] = True
  else:
    mask = ~tt.frequent_set(spec, t.mass)
  return mask


def summary(config, member: Member, data) -> dict:
  n = toy_model.param_count(_model_config(config))
  base, extra, ids = data.schedules()
  spec = data.spec()
  names = toy_data.task_names(spec.K)
  tasks = {}
  for s, k in zip(base + extra, ids):
    tasks[names[k]] = {"frequency_per_batch": s.frequency, "frequency_per_token": s.frequency / data.batch_size,
                       "schedule": s.schedule, "period": s.period, "pi": float(spec.pi[k]),
                       "rows": "extra" if s in extra else "base"}
  return {"width": int(config.toy.width), "seed": member.seed, "n_params": n, "n_params_non_embedding": n,
          "total_steps": int(config.train.steps), "batch_size": int(config.train.batch_size), "seq_len": 1,
          "tokens_per_step": int(config.train.batch_size), "tasks": tasks}


def theory(spec: tt.ToySpec, width: int, mass: float, rare: np.ndarray) -> dict:
  """toy_theory's predictions for one member (the dashed lines of Figs 2–3), JSON-ready."""
  names = toy_data.task_names(spec.K)
  F = tt.frequent_set(spec, mass)
  opt = tt.optimal_task_loss(spec, width)
  crit = tt.critical_widths(spec, mass)[:, 0]
  n_crit = {names[k]: (None if not np.isfinite(crit[k]) else int(crit[k])) for k in range(spec.K) if not F[k]}
  return {
      "K": spec.K, "r": spec.r, "d": spec.d, "beta": float(spec.beta), "alpha": spec.alpha,
      "lam_norm": spec.lam_norm, "basis_seed": spec.seed, "mass": mass, "width": width, "tasks": names,
      "pi": spec.pi, "lam": spec.lam, "trace_C": spec.trace_C,
      "frequent": [names[k] for k in range(spec.K) if F[k]],
      "rare": [names[k] for k in range(spec.K) if rare[k]],
      "n_features": tt.n_features(spec, width),
      "optimal_loss": opt.loss, "optimal_loss_norm": opt.normalised,
      "optimal_loss_total": float(np.sum(spec.pi * opt.loss)),
      "top_features": tt.top_features(spec, width),
      "entry_width": tt.feature_entry_width(spec),
      "critical_width": n_crit,
      "delta_F_star": {k: tt.delta_F_star(spec, v, mass) for k, v in n_crit.items()},
      "delta_F_min": float(tt.delta_F_min(spec, width, mass)),
      "lambda1_F": float(tt.mu_F(spec, mass)[0]),
      "grad_F_bound_coef": float(2.0 * np.sqrt(tt.mu_F(spec, mass)[0])),
      "notes": "theorem-4 bound: grad_F_norm <= grad_F_bound_coef * sqrt(delta_F) for orthonormal U with "
               "optimal decoders; critical_width/delta_F_star use each task's first feature (Prop. 6)",
  }


# ---------------------------------------------------------------------------------------------------------------
# The program: all members of one width.


class Program:
  """Jitted init / train step / eval for the stacked members (leading axis M)."""

  def __init__(self, config, datas, seeds: Sequence[int]):
    self.config = config
    self.model_cfg = _model_config(config)
    specs = [dt.spec() for dt in datas]
    self.arrays = toy_data.TaskArrays.build(specs[0])  # basis and λ do not depend on β
    self.tx = optim.make_optimizer(config.train)
    self.schedule = optim.lr_schedule(config.train)
    self.pi_MxK = jnp.asarray(np.stack([s.pi for s in specs]), jnp.float32)
    self.w_F_MxK = jnp.asarray(np.stack([s.pi * tt.frequent_set(s, config.toy.mass) for s in specs]), jnp.float32)
    self.w_r_MxK = jnp.asarray(np.stack([s.pi * rare_mask(config, s) for s in specs]), jnp.float32)
    self.lam_KxJ = jnp.asarray(specs[0].lam, jnp.float32)
    variant, d = self.model_cfg.variant, self.model_cfg.d
    arrays, mcfg, tx = self.arrays, self.model_cfg, self.tx
    # Per-parameter learning-rate multipliers (Adam steps every coordinate by ~lr, whatever its scale).
    lr_mult = {"U": float(config.train.lr_mult_encoder), "W": float(config.train.lr_mult_encoder),
               "D": float(config.train.lr_mult_decoder) * decoder_lr_factor(config)}
    # Members that share a seed (different β) share their inputs: draw each seed's x once.
    seeds = [int(s) for s in seeds]
    uniq = sorted(set(seeds))
    self.unique_seeds = jnp.asarray(uniq, jnp.uint32)
    x_of_member = np.asarray([uniq.index(s) for s in seeds])
    enc_M = jax.vmap(lambda p: toy_model.encoder(p, variant))
    dec_M = jax.vmap(lambda p, U: toy_model.decoders(p, variant, U, arrays.B_KxDxR, arrays.sqrt_lam_KxR))

    def init(keys_M):
      params = jax.vmap(lambda k: toy_model.init_params(mcfg, k))(keys_M)
      return {"params": params, "opt_state": jax.vmap(tx.init)(params)}

    def loss_all(params, step, counts_MxK, weight, rows):
      x_SxRxD = jax.vmap(lambda s: toy_data.gaussian(s, step, rows, d))(self.unique_seeds)
      U = enc_M(params)
      loss_M = toy_model.dense_loss(U, dec_M(params, U), x_SxRxD, x_of_member, counts_MxK, arrays.B_KxDxR,
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
        U = toy_model.encoder(p, variant)
        D = toy_model.decoders(p, variant, U, arrays.B_KxDxR, arrays.sqrt_lam_KxR)
        return toy_model.measure(U, D, arrays.B_KxDxR, self.lam_KxJ, pi, wF, wr)
      return jax.vmap(one)(params, self.pi_MxK, self.w_F_MxK, self.w_r_MxK)

    self.init = jax.jit(init)
    self.train_step = jax.jit(train_step, static_argnames=("rows",), donate_argnums=(0,))
    self.train_chunk = jax.jit(train_chunk, static_argnames=("rows",), donate_argnums=(0,))
    self.evaluate = jax.jit(evaluate)

  def abstract_state(self, n_members: int):
    return jax.eval_shape(self.init, jax.ShapeDtypeStruct((n_members,), jax.random.key(0).dtype))

  def keys(self, seeds: Sequence[int]):
    return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


# ---------------------------------------------------------------------------------------------------------------
# Training loop.


class _Batches:
  """Host side of the data: per-step task counts (the mixture machinery) and their running totals."""

  def __init__(self, config, datas, seeds, state: dict | None):
    self.datas, self.seeds = datas, seeds
    self.mean_rows = toy_data.mean_rows(datas[0])
    self.average = config.train.loss_average
    self.samples = int(state["samples"]) if state else 0
    self.counts_MxK = np.asarray(state["counts"], np.int64) if state else np.zeros((len(datas), datas[0].K),
                                                                                    np.int64)

  def step(self, step: int) -> tuple[np.ndarray, int, float]:
    """(counts (M, K), rows, loss weight) of batch `step`."""
    counts = np.stack([toy_data.step_counts(dt, s, step) for dt, s in zip(self.datas, self.seeds)])
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


def next_cut(config, step: int, chunk: int) -> int:
  """The first segment end after `step`: a multiple of the chunk or of a cadence, or the last step."""
  t = config.train
  cuts = [t.steps, (step // chunk + 1) * chunk]
  for c in (t.log_every, t.eval_every, t.retention_every, config.checkpoint.every):
    if c:
      cuts.append((step // c + 1) * c)
  return min(cuts)


def _check_resume(run: rundir.RunDir, new: dict) -> None:
  from scaling.lm.train import config_changes, flatten  # noqa: PLC0415
  if not os.path.exists(run.file(rundir.CONFIG_FILE)):
    return
  old = run.read_config()["config"]
  changed = [k for k in config_changes(old, new) if not k.startswith(RESUMABLE_CHANGES)]
  if changed:
    a, b = flatten(old), flatten(new)
    diff = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed[:4])
    raise ConfigError(f"--workdir holds a toy run with a different config ({diff}); use a new --workdir or the "
                      "original config")


def _resolve(config):
  from ml_collections import config_dict  # noqa: PLC0415
  c = config_dict.ConfigDict(config.to_dict())
  # Flags give ints for float fields written as integers ("(1,2)"): normalise so config.json is stable.
  c.toy.betas = tuple(float(b) for b in c.toy.betas)
  c.toy.alphas = tuple(float(a) for a in c.toy.alphas)
  c.toy.seeds = tuple(int(s) for s in c.toy.seeds)
  c.toy.rare_tasks = tuple(int(k) for k in c.toy.rare_tasks)
  validate(c)
  c.lock()
  return c


def train(config, workdir: str, *, progress: bool = True, stop_after: int | None = None) -> dict:
  """Trains (or resumes) every member of one width; returns the program's final status dict.

  stop_after: stop (as if by SIGTERM, checkpoint saved) once this many steps ran in this call (tests).
  """
  config = _resolve(config)
  from scaling.lm.train import StopRequested, stop_signals  # noqa: PLC0415

  t = config.train
  mems = members(config)
  datas = [_toy_data(config, m.beta) for m in mems]
  names = toy_data.task_names(config.toy.K)
  program_dir = rundir.RunDir(workdir)
  runs = [rundir.RunDir(os.path.join(program_dir.path, m.name)) for m in mems]
  mcfgs = [member_config(config, m) for m in mems]
  for run, mc in zip(runs, mcfgs):
    _check_resume(run, mc)
  status = program_dir.read_status()
  if status and status["state"] == "done" and status["step"] >= t.steps:
    print(f"toy run in {program_dir.path} already finished at step {status['step']}; nothing to do")
    return status

  prog = Program(config, datas, [m.seed for m in mems])
  ckpt = ckpt_lib.Checkpointer(program_dir.checkpoint_dir, config.checkpoint.every, config.checkpoint.keep,
                               config.checkpoint.async_save)
  restored = ckpt.restore_latest(prog.abstract_state(len(mems)))
  if restored:
    start, state, data_state = restored
    log.info("resumed from step %d", start)
  else:
    start, state, data_state = 0, prog.init(prog.keys([m.seed for m in mems])), None
  batches = _Batches(config, datas, [m.seed for m in mems], data_state)
  window = {"loss": np.asarray(data_state["window_loss"]) if data_state else np.zeros(len(mems)),
            "grad_norm": np.asarray(data_state["window_gn"]) if data_state else np.zeros(len(mems)),
            "n": int(data_state["window_n"]) if data_state else 0}

  for run, mem, mc, dt in zip(runs, mems, mcfgs, datas):
    spec = dt.spec()
    run.write_config(EXPERIMENT, mc, summary(config, mem, dt))
    th = theory(spec, int(config.toy.width), float(config.toy.mass), rare_mask(config, spec))
    rundir.atomic_write_text(run.file(THEORY_FILE), json.dumps(json.loads(rundir.dumps(th)), indent=1) + "\n")
    for name in (rundir.METRICS_FILE, rundir.PERF_FILE, RETENTION_FILE):
      run.truncate_metrics(start if restored else -1, name=name)
    run.write_status("running", start, t.steps)
  program_dir.write_status("running", start, t.steps, members=[m.name for m in mems])

  def write_eval(step: int, records: list[dict], retention: bool) -> None:
    out = jax.device_get(prog.evaluate(state["params"]))
    for i, rec in enumerate(records):
      for k, name in enumerate(names):
        rec[f"toy/{name}/loss_norm"] = float(out["loss_norm_K"][i, k])
        rec[f"toy/{name}/signal"] = float(out["signal_K"][i, k])
        rec[f"toy/{name}/signal_norm"] = float(out["signal_norm_K"][i, k])
      for key in ("loss", "delta_F", "grad_F_norm", "grad_r_norm", "cos_rF", "signal_frequent", "signal_rare"):
        rec[f"toy/{key}"] = float(out[key][i])
      if retention:
        runs[i].append_metrics([{"step": step, "retention": np.round(out["retention_KxJ"][i].astype(np.float64),
                                                                       6).tolist()}], name=RETENTION_FILE)

  def new_records(step: int) -> list[dict]:
    return [{"step": step, "tokens": batches.samples} for _ in mems]

  if start == 0:
    recs = new_records(0)
    write_eval(0, recs, retention=False)
    for run, rec in zip(runs, recs):
      run.append_metrics([rec])

  bar = _progress(progress, start, t.steps, f"toy N={config.toy.width} x{len(mems)}")
  step, final_state, reason = start, "done", None
  t_last, step_last, pending = time.perf_counter(), start, []
  chunk = chunk_length(config)
  try:
    with stop_signals() as stop:
      while step < t.steps:
        # Segments end at every multiple of `chunk` and of every cadence, so a resumed run (which starts at
        # one of them) cuts the steps exactly as an unbroken run does and computes identical numbers.
        end = next_cut(config, step, chunk)
        host = [batches.step(s) for s in range(step, end)]
        if len(host) == chunk > 1 and all(h[1] == host[0][1] for h in host):
          state, metrics = prog.train_chunk(state, jnp.arange(step, end, dtype=jnp.int32),
                                            jnp.asarray(np.stack([h[0] for h in host]), jnp.int32),
                                            jnp.asarray([h[2] for h in host], jnp.float32), rows=host[0][1])
          pending.append(metrics)
        else:  # a short segment, or injection steps (more rows): one call per step
          for s_, (counts, rows, weight) in zip(range(step, end), host):
            state, metrics = prog.train_step(state, jnp.int32(s_), jnp.asarray(counts, jnp.int32),
                                             jnp.float32(weight), rows=rows)
            pending.append(jax.tree.map(lambda a: a[None], metrics))
        rows = host[-1][1]
        step = end
        is_log = step % t.log_every == 0 or step == t.steps
        is_eval = (bool(t.eval_every) and step % t.eval_every == 0) or step == t.steps
        is_ret = (bool(t.retention_every) and step % t.retention_every == 0) or step == t.steps
        is_ckpt = ckpt.should_save(step, final=step == t.steps)
        halt = stop["signal"] or (stop_after is not None and step - start >= stop_after)
        if not (is_log or is_eval or is_ckpt or halt or len(pending) >= 64):
          continue
        values = jax.device_get(pending)
        pending = []
        losses = np.concatenate([v["loss"] for v in values])  # (steps, M)
        if not np.all(np.isfinite(losses)):
          bad = step - len(losses) + int(np.argmax(~np.all(np.isfinite(losses), axis=1))) + 1
          final_state, reason = "failed", (f"non-finite training loss at step {bad}; lower train.learning_rate "
                                           "or raise train.warmup_steps")
          break
        window["loss"] = window["loss"] + losses.sum(0)
        window["grad_norm"] = window["grad_norm"] + np.concatenate([v["grad_norm"] for v in values]).sum(0)
        window["n"] += len(losses)
        bar.update(len(losses))
        recs = new_records(step) if (is_log or is_eval) else None
        if is_log:
          lr = float(prog.schedule(step - 1))
          for i, rec in enumerate(recs):
            rec["train/loss"] = float(window["loss"][i] / window["n"])
            rec["train/grad_norm"] = float(window["grad_norm"][i] / window["n"])
            rec["train/lr"] = lr
            for k, name in enumerate(names):
              rec[f"data/{name}/count"] = int(batches.counts_MxK[i, k])
          now = time.perf_counter()
          sps = (step - step_last) / max(now - t_last, 1e-9)
          perf = {"step": step, "seconds": now - t_last, "steps_per_s": sps, "samples_per_s": sps * rows * len(mems),
                  "members": len(mems)}
          t_last, step_last = now, step
          for run in runs:
            run.append_metrics([perf], name=rundir.PERF_FILE)
          bar.set_postfix(loss=f"{float(np.mean(window['loss'] / window['n'])):.4f}", step_s=f"{sps:.1f}")
          window = {"loss": np.zeros(len(mems)), "grad_norm": np.zeros(len(mems)), "n": 0}
        if is_eval:
          write_eval(step, recs, retention=is_ret)
        elif is_ret:
          write_eval(step, new_records(step), retention=True)
        if recs:
          for run, rec in zip(runs, recs):
            run.append_metrics([rec])
        if is_ckpt or halt:
          ckpt.save(step, state, {"step": step, **batches.state(), "window_loss": window["loss"].tolist(),
                                  "window_gn": window["grad_norm"].tolist(), "window_n": window["n"]})
        if is_log:
          program_dir.write_status("running", step, t.steps, members=[m.name for m in mems])
        if halt and step < t.steps:
          raise StopRequested(stop["signal"] or f"stop_after={stop_after}")
  except StopRequested as e:
    ckpt.close()
    bar.close()
    msg = f"interrupted by {e} at step {step} (checkpoint saved); rerun to resume"
    for run in [program_dir, *runs]:
      run.write_status("failed", step, t.steps, reason=msg)
    print(f"stopped by {e} at step {step}; checkpoint saved, rerun the same command to resume")
    return {"state": "failed", "step": step, "interrupted": True, "total_steps": t.steps}
  except BaseException as e:
    bar.close()
    first = (str(e).splitlines() or [""])[0][:500]
    for run in [program_dir, *runs]:
      run.write_status("failed", step, t.steps, reason=f"{type(e).__name__}: {first}")
    try:
      ckpt.close()
    except Exception:  # noqa: BLE001
      pass
    raise
  bar.close()
  ckpt.close()
  for run in [*runs, program_dir]:
    run.write_status(final_state, step, t.steps, reason=reason)
  if final_state == "failed":
    log.error("%s", reason)
  return {"state": final_state, "step": step, "reason": reason, "total_steps": t.steps,
          "members": [m.name for m in mems]}


def _progress(enabled: bool, start: int, total: int, desc: str):
  from tqdm.auto import tqdm  # noqa: PLC0415
  return tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True,
              mininterval=0.5 if sys.stderr.isatty() else 30.0, desc=desc)


def describe(config) -> str:
  """The --dry_run report: members, sizes, samples, FLOPs, theory at this width."""
  config = _resolve(config)
  mems = members(config)
  mcfg = _model_config(config)
  t = config.train
  datas = [_toy_data(config, m.beta) for m in mems]
  d, N, r = mcfg.d, mcfg.width, config.toy.r
  n_seeds = len({m.seed for m in mems})
  # dense_loss: targets R·d² per distinct seed, 5·R·d·N per member (forward + backward), 2 FLOPs per MAC.
  flops = 2 * t.batch_size * d * (d * n_seeds + 5 * N * len(mems))
  lines = [
      f"toy         K={config.toy.K} r={r} d={d} alpha={config.toy.alpha}{' (per-task)' if len(config.toy.alphas) else ''} "
      f"width={N} variant={mcfg.variant} params/member={toy_model.param_count(mcfg):,}",
      f"members     {len(mems)}: {', '.join(m.name for m in mems)}",
      f"training    steps={t.steps:,} batch={t.batch_size} (+{toy_data.extra_peak(datas[0])} extra rows max) "
      f"samples/member={t.steps * toy_data.mean_rows(datas[0]):,.0f} lr={t.learning_rate:g} {t.schedule} "
      f"warmup={t.warmup_steps}",
      f"compute     ~{flops:.3g} FLOPs/step for all members, ~{flops * t.steps:.3g} in total",
  ]
  for m, dt in zip(mems, datas):
    spec = dt.spec()
    th = theory(spec, N, float(config.toy.mass), rare_mask(config, spec))
    learned = int(np.sum(np.asarray(th["n_features"]) > 0))
    lines.append(f"theory      {m.name}: |F|={len(th['frequent'])} tasks with a feature at N={N}: {learned}/"
                 f"{spec.K}, optimal loss {th['optimal_loss_total']:.4g}")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  return cli.main(argv, example="configs/toy.py:width=64", describe=describe, train=train,
                  workdir_help="Program directory: one run dir per member is created inside.",
                  dry_run_help="Print members, sizes, FLOPs and theory, then exit.")


if __name__ == "__main__":
  sys.exit(main())
