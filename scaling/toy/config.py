"""Toy experiment configs (configs/toy.py): validation, members, per-member configs and summaries, theory.json,
and the `--dry_run` report.

One invocation trains one width for every member (β in toy.betas) × (seed in toy.seeds); each member writes its
own run dir whose config.json is the member alone (toy.betas=(), toy.seeds=(), toy.beta=β, seed=s): rerunning it
trains just that member, with the same numbers.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from ml_collections import config_dict

from scaling.core import optim, rundir
from scaling.core.configtools import is_int, is_number, require
from scaling.core.errors import ConfigError, ScheduleError
from scaling.toy import data as data_lib
from scaling.toy import model as model_lib
from scaling.toy import theory as tt

EXPERIMENT = "toy"
THEORY_FILE = "theory.json"
LOSS_AVERAGES = ("batch", "expected")
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


def validate(config) -> None:
  """Raises ConfigError (one line naming the key and the fix) before any compute."""
  require(config.get("experiment") == EXPERIMENT,
          f"experiment={config.get('experiment')!r}: scaling.toy_train runs toy configs (configs/toy.py); "
          "language-model configs run with python -m scaling.train")
  t, m, tr = config.toy, config.model, config.train
  require(isinstance(t.K, int) and t.K >= 1 and isinstance(t.r, int) and t.r >= 1,
          f"toy.K={t.K}, toy.r={t.r} must be integers >= 1")
  d = t.K * t.r
  require(isinstance(t.width, int) and 1 <= t.width <= d,
          f"toy.width={t.width} must be an integer in 1..d={d} (d = toy.K*toy.r); lower the width or raise r")
  require(is_number(t.alpha) and t.alpha >= 0, f"toy.alpha={t.alpha} must be a number >= 0")
  require(len(t.alphas) in (0, t.K) and all(is_number(a) and a >= 0 for a in t.alphas),
          f"toy.alphas has {len(t.alphas)} values; give K={t.K} numbers >= 0, or () for toy.alpha everywhere")
  require(t.lam_norm in tt.LAM_NORMS, f"toy.lam_norm={t.lam_norm!r} is not one of {tt.LAM_NORMS}")
  betas = tuple(t.betas) or (t.beta,)
  seeds = tuple(t.seeds) or (config.seed,)
  require(all(is_number(b) for b in betas), f"toy.betas={tuple(t.betas)} must be numbers")
  require(all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds),
          f"toy.seeds={tuple(t.seeds)} (or seed={config.seed}) must be integers >= 0")
  require(len(set(map(float, betas))) == len(betas) and len(set(seeds)) == len(seeds),
          f"toy.betas={tuple(t.betas)} / toy.seeds={tuple(t.seeds)} repeat a value; members need distinct names")
  require(is_number(t.mass) and 0 < t.mass <= 1, f"toy.mass={t.mass} must be in (0, 1]")
  require(all(isinstance(k, int) and 1 <= k <= t.K for k in t.rare_tasks),
          f"toy.rare_tasks={tuple(t.rare_tasks)} must be 1-based task labels in 1..{t.K}")
  inj = t.inject
  require(isinstance(inj.task, int) and 0 <= inj.task <= t.K,
          f"toy.inject.task={inj.task} must be 0 (none) or a task label in 1..{t.K}")
  require(m.variant in model_lib.VARIANTS, f"model.variant={m.variant!r} is not one of {model_lib.VARIANTS}")
  require(is_number(m.init_scale) and m.init_scale > 0, f"model.init_scale={m.init_scale} must be > 0")
  require(is_number(m.decoder_init_scale) and m.decoder_init_scale >= 0,
          f"model.decoder_init_scale={m.decoder_init_scale} must be >= 0")
  for key in ("steps", "batch_size", "log_every", "steps_per_call"):
    require(isinstance(tr[key], int) and tr[key] >= 1, f"train.{key}={tr[key]} must be an integer >= 1")
  for key in ("eval_every", "retention_every", "warmup_steps"):
    require(isinstance(tr[key], int) and tr[key] >= 0, f"train.{key}={tr[key]} must be an integer >= 0")
  require(is_number(tr.learning_rate) and tr.learning_rate > 0, f"train.learning_rate={tr.learning_rate} must be > 0")
  require(tr.warmup_steps <= tr.steps, f"train.warmup_steps={tr.warmup_steps} exceeds train.steps={tr.steps}")
  require(tr.schedule in optim.SCHEDULES, f"train.schedule={tr.schedule!r} is not one of {optim.SCHEDULES}")
  require(0 <= tr.min_lr_ratio <= 1, f"train.min_lr_ratio={tr.min_lr_ratio} must be in [0, 1]")
  require(0 <= tr.b1 < 1 and 0 <= tr.b2 < 1, f"train.b1={tr.b1}, train.b2={tr.b2} must lie in [0, 1)")
  require(is_number(tr.decoder_lr_ref_width) and tr.decoder_lr_ref_width >= 0,
          f"train.decoder_lr_ref_width={tr.decoder_lr_ref_width} must be >= 0 (0: no width scaling)")
  require(is_number(tr.get("divergence_factor", 0.0)) and tr.get("divergence_factor", 0.0) >= 0,
          f"train.divergence_factor={tr.get('divergence_factor')} must be a number >= 0 (0: off)")
  require(tr.loss_average in LOSS_AVERAGES, f"train.loss_average={tr.loss_average!r} is not one of {LOSS_AVERAGES}")
  require(isinstance(config.checkpoint.every, int) and config.checkpoint.every >= 1,
          f"checkpoint.every={config.checkpoint.every} must be an integer >= 1")
  for b in betas:
    try:
      toy_data(config, b).validate()
    except ScheduleError as e:
      raise ConfigError(f"{e} (β={b})") from None


def toy_data(config, beta: float):
  t = config.toy
  inj = data_lib.Inject(int(t.inject.task), str(t.inject.schedule), int(t.inject.period),
                        float(t.inject.frequency))
  return data_lib.ToyData(K=t.K, r=t.r, beta=float(beta), alpha=tuple(t.alphas) if len(t.alphas) else float(t.alpha),
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


def model_config(config):
  return model_lib.ToyModelConfig(d=config.toy.K * config.toy.r, width=int(config.toy.width), K=config.toy.K,
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
  n = model_lib.param_count(model_config(config))
  base, extra, ids = data.schedules()
  spec = data.spec()
  names = data_lib.task_names(spec.K)
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
  names = data_lib.task_names(spec.K)
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
      "delta_F_entry": {k: tt.delta_F_entry(spec, v, mass) for k, v in n_crit.items()},
      "delta_F_min": float(tt.delta_F_min(spec, width, mass)),
      "lambda1_F": float(tt.mu_F(spec, mass)[0]),
      "grad_F_bound_coef": float(2.0 * np.sqrt(tt.mu_F(spec, mass)[0])),
      "notes": "theorem-4 bound: grad_F_norm <= grad_F_bound_coef * sqrt(delta_F) for orthonormal U with "
               "optimal decoders; critical_width/delta_F_star use each task's first feature (Prop. 6); "
               "delta_F_star sums mu_i^F over i > N_crit (the paper's threshold), delta_F_entry over i >= N_crit",
  }


def resolve(config):
  """A validated, locked copy with tuple fields normalised (flags give ints for floats written as integers)."""
  require(config.get("experiment") == EXPERIMENT,
          f"experiment={config.get('experiment')!r}: scaling.toy_train runs toy configs (configs/toy.py); "
          "language-model configs run with python -m scaling.train")
  c = config_dict.ConfigDict(config.to_dict())
  for key, kind in (("betas", float), ("alphas", float), ("seeds", int), ("rare_tasks", int)):
    values = c.toy[key]
    ok = isinstance(values, (tuple, list)) and all((is_int if kind is int else is_number)(v) for v in values)
    require(ok, f"toy.{key}={values!r} must be a tuple of {'integers' if kind is int else 'numbers'}, e.g. "
                f"--config.toy.{key}='({'1, 2' if kind is int else '0.5, 1.0'})'")
    c.toy[key] = tuple(kind(v) for v in values)
  validate(c)
  c.lock()
  return c


def describe(config) -> str:
  """The --dry_run report: members, sizes, samples, FLOPs, theory at this width."""
  config = resolve(config)
  mems = members(config)
  mcfg = model_config(config)
  t = config.train
  datas = [toy_data(config, m.beta) for m in mems]
  d, N, r = mcfg.d, mcfg.width, config.toy.r
  n_seeds = len({m.seed for m in mems})
  # dense_loss: targets R·d² per distinct seed, 5·R·d·N per member (forward + backward), 2 FLOPs per MAC.
  flops = 2 * t.batch_size * d * (d * n_seeds + 5 * N * len(mems))
  lines = [
      f"toy         K={config.toy.K} r={r} d={d} alpha={config.toy.alpha}{' (per-task)' if len(config.toy.alphas) else ''} "
      f"width={N} variant={mcfg.variant} params/member={model_lib.param_count(mcfg):,}",
      f"members     {len(mems)}: {', '.join(m.name for m in mems)}",
      f"training    steps={t.steps:,} batch={t.batch_size} (+{data_lib.extra_peak(datas[0])} extra rows max) "
      f"samples/member={t.steps * data_lib.mean_rows(datas[0]):,.0f} lr={t.learning_rate:g} {t.schedule} "
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
