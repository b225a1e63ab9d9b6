"""The toy task family (paper §3): K linear-regression tasks on Gaussian inputs.

Task k (label 1..K, name ``t01``..) has frequency π_k ∝ k^-β and owns r orthonormal feature directions b_{k,j}
(block k of one seeded random orthogonal d×d matrix, d = K·r) with variances λ_{k,j} ∝ j^-α_k. A sample of task k
is x ~ N(0, I_d), y = Λ_k^½ B_kᵀ x (an r-vector). Conventions (frequencies, spectra, basis) are exactly those of
``scaling.toy.theory.ToySpec``, which this module builds on, so simulation and theory share one basis.

Batches: a batch is *counts per task*, rows sorted by task. Which task each row holds is drawn by the mixture
machinery (``scaling.core.schedules``, the same code as the transformer's task injection):

  base rows   ``batch_size`` rows shared by the tasks of the base mixture: every row draws its task from π
              (schedule "random", the paper's i.i.d. sampling)
  extra rows  an injected task (``toy.inject``, Fig 4) gets rows *on top of* the base batch, so the other tasks
              keep their ``batch_size`` samples; "withhold" with period G holds it back for G−1 batches and then
              adds G·f rows at once; "interleave" adds f per batch on average, evenly spaced (the no-gap setting)

The inputs are a pure function of (seed, step): x[i, :] is row i of batch ``step`` (rows sorted by task; x is
i.i.d., so the order carries no information). They are drawn on the device by ``scaling.core.hashrng.jax_normal``
(a counter hash, then the inverse normal CDF), keyed by (seed, purpose, step): the toy draws batch·d normals per
step and member, and this is several times cheaper than ``jax.random.normal`` on CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from scaling.core import hashrng, schedules
from scaling.toy import theory as toy_theory

PURPOSE_X = 31  # x draws; distinct from the schedule's purpose constant
INJECT_SCHEDULES = ("withhold", "interleave", "burst")
BASE_SCHEDULES = ("random",)


def task_names(K: int) -> list[str]:
  """Metric names of the tasks: t01..tK (1-based, zero-padded to the width of K, at least 2 digits)."""
  w = max(2, len(str(K)))
  return [f"t{k:0{w}d}" for k in range(1, K + 1)]


@dataclasses.dataclass(frozen=True)
class Inject:
  """A task moved out of the base mixture into extra rows (1-based label; 0: none)."""

  task: int = 0
  schedule: str = "withhold"
  period: int = 1
  frequency: float = 0.0  # instances per batch, long-run

  @property
  def active(self) -> bool:
    return self.task > 0


@dataclasses.dataclass(frozen=True)
class ToyData:
  """Everything that defines one member's stream of batches (hashable)."""

  K: int
  r: int
  beta: float
  alpha: float | tuple[float, ...]
  lam_norm: str
  basis_seed: int
  batch_size: int
  schedule: str = "random"
  inject: Inject = Inject()

  @property
  def d(self) -> int:
    return self.K * self.r

  def spec(self) -> toy_theory.ToySpec:
    return toy_theory.ToySpec(K=self.K, r=self.r, beta=self.beta, alpha=self.alpha, seed=self.basis_seed,
                              lam_norm=self.lam_norm)

  def schedules(self) -> tuple[list[schedules.TaskSchedule], list[schedules.TaskSchedule], np.ndarray]:
    """(base schedules, extra schedules, task index (0-based) of each schedule in base+extra order)."""
    return _schedules(self)

  def _build_schedules(self):
    pi = self.spec().pi
    names = task_names(self.K)
    inj = self.inject.task - 1 if self.inject.active else -1
    base_ids = [k for k in range(self.K) if k != inj]
    mass = float(pi[base_ids].sum())
    # Base frequencies fill the batch exactly: π renormalised over the base tasks (all of π without injection).
    base = [schedules.TaskSchedule(names[k], self.batch_size * float(pi[k]) / mass, self.schedule)
            for k in base_ids]
    extra = []
    if inj >= 0:
      extra = [schedules.TaskSchedule(names[inj], float(self.inject.frequency), self.inject.schedule,
                                      int(self.inject.period))]
    return base, extra, np.asarray(base_ids + ([inj] if inj >= 0 else []), np.int64)

  def validate(self) -> None:
    """Raises schedules.ScheduleError (one line) when the schedules cannot be realised."""
    base, extra, _ = self.schedules()
    if self.schedule not in BASE_SCHEDULES:
      raise schedules.ScheduleError(f"toy.schedule={self.schedule!r} is not one of {BASE_SCHEDULES}")
    schedules.validate(base, self.batch_size, fill=True)
    if extra:
      t = extra[0]
      if t.schedule not in INJECT_SCHEDULES:
        raise schedules.ScheduleError(f"toy.inject.schedule={t.schedule!r} is not one of {INJECT_SCHEDULES}")
      if not t.frequency > 0:
        raise schedules.ScheduleError(f"toy.inject.frequency={t.frequency} must be > 0 (instances per batch)")
      schedules.validate(extra, _peak(t))


@functools.lru_cache(maxsize=256)
def _schedules(data: ToyData):
  # Called every step for every member; building them costs more than drawing the counts.
  return data._build_schedules()  # noqa: SLF001


def _peak(t: schedules.TaskSchedule) -> int:
  if t.schedule == "interleave":
    return max(1, math.ceil(t.frequency - 1e-9))
  return max(1, int(round(t.per_injection())))


def step_counts(data: ToyData, seed: int, step: int) -> np.ndarray:
  """(K,) int: instances of each task in batch `step` (rows sorted by task label). Pure in (data, seed, step)."""
  base, extra, ids = data.schedules()
  c = np.zeros(data.K, np.int64)
  c[ids[:len(base)]] = schedules.counts(base, data.batch_size, seed, step, fill=True)
  for t, k in zip(extra, ids[len(base):]):
    c[k] = schedules.deterministic_count(t, step)
  return c


def extra_peak(data: ToyData) -> int:
  """Largest number of extra rows in any batch (0 without injection)."""
  _, extra, _ = data.schedules()
  return _peak(extra[0]) if extra else 0


def mean_rows(data: ToyData) -> float:
  """Expected rows per batch: batch_size plus the injected task's long-run frequency."""
  return data.batch_size + (float(data.inject.frequency) if data.inject.active else 0.0)


# ---------------------------------------------------------------------------------------------------------------
# Inputs and targets on the device.


def gaussian(seed: jax.Array | int, step: jax.Array | int, rows: int, d: int) -> jax.Array:
  """(rows, d) float32 standard normals: the inputs of batch `step`, a pure function of (seed, step)."""
  return hashrng.jax_normal(jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), PURPOSE_X), step), (rows, d))


def row_tasks(counts_K: np.ndarray) -> np.ndarray:
  """(rows,) task index (0-based) of each sorted row."""
  return np.repeat(np.arange(len(counts_K)), counts_K)


@dataclasses.dataclass(frozen=True)
class TaskArrays:
  """Device constants of the task family: feature blocks and √λ (float32)."""

  B_KxDxR: jax.Array  # [k] = (b_{k,1} … b_{k,r}) as columns
  sqrt_lam_KxR: jax.Array

  @classmethod
  def build(cls, spec: toy_theory.ToySpec) -> TaskArrays:
    B = spec.basis().reshape(spec.d, spec.K, spec.r).transpose(1, 0, 2)
    return cls(jnp.asarray(B, jnp.float32), jnp.asarray(np.sqrt(spec.lam), jnp.float32))


def targets(x_RxD: jax.Array, task_R: jax.Array, arrays: TaskArrays) -> jax.Array:
  """(R, r) y = Λ_k^½ B_kᵀ x per row; the simple per-row reference (the trainer uses the grouped layout)."""
  return jnp.einsum("rd,rdj->rj", x_RxD, arrays.B_KxDxR[task_R]) * arrays.sqrt_lam_KxR[task_R]


def sample(data: ToyData, arrays: TaskArrays, seed: int, step: int):
  """(x (R, d), y (R, r), task (R,)) of batch `step`, rows sorted by task: the reference sampler."""
  c = step_counts(data, seed, step)
  rows = int(c.sum())
  x = gaussian(seed, step, rows, data.d)
  task = jnp.asarray(row_tasks(c))
  return x, targets(x, task, arrays), task
