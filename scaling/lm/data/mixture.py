"""The training mixture: background rows with task instances written over their first tokens.

Batch `step` (global, `batch_size` rows) is built in three pure steps:
  1. `schedules.allocate` says which rows hold which task (a function of (seed, step) only; configs/lm.py
     `data.tasks.<name>.{frequency, schedule, period}`, frequency = instances per batch, zero-frequency tasks
     dropped);
  2. every row r is background sequence `step · batch_size + r` of the source;
  3. a task row gets an instance TOK1 TOK2 LABEL EOD (scaling/lm/data/tasks/base.py) over its first four tokens,
     the train pair drawn from (seed, task, step, row).
Each process builds only its own rows of the global batch, so the batch is the same for any process count and the
ratios hold on every host in the long run (each host holds a uniformly random share of every batch's instances).

Batch format (numpy, this process's b = batch_size / process_count rows, L = seq_len):
  inputs     (b, L) int32    row[:-1]
  targets    (b, L) int32    row[1:]
  weights    (b, L) float32  1 everywhere: the model trains on task tokens too, including the EOD target
  task_mask  (b, L) int32    aligned with targets: t + 1 where the target is a token of task t's instance (target
                             indices 0, 1, 2 = TOK2, LABEL, EOD; LABEL at `tasks.LABEL_POS`), else 0
  task_ids   (b,)   int32    t for a row holding task t's instance, −1 for a background row
Task id t indexes `Mixture.names`, the configured task names sorted (stable when frequencies change).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from scaling.core import schedules
from scaling.core.errors import MixtureError, SourceError
from scaling.lm.data import sources
from scaling.lm.data import tasks as tasks_lib
from scaling.lm.data.vocab import Vocabulary

TASK_FIELDS = ("frequency", "schedule", "period")
EVAL_ROW_LEN = 8  # positions per task-eval row




def _task_dict(data_cfg) -> dict[str, Any]:
  t = data_cfg.get("tasks", None) if hasattr(data_cfg, "get") else None
  if t is None:
    return {}
  return t.to_dict() if hasattr(t, "to_dict") else dict(t)


def task_schedules(data_cfg) -> list[schedules.TaskSchedule]:
  """Every configured task's schedule (zero frequency included), sorted by name. Checks field names/types."""
  out = []
  for name, spec in sorted(_task_dict(data_cfg).items()):
    if name not in tasks_lib.REGISTRY:
      raise MixtureError(f"data.tasks.{name}: unknown task; registered tasks: {', '.join(tasks_lib.names())}")
    if not isinstance(spec, dict):
      raise MixtureError(f"data.tasks.{name} must be a dict with keys {TASK_FIELDS}, got {spec!r}")
    extra = set(spec) - set(TASK_FIELDS)
    if extra:
      raise MixtureError(f"data.tasks.{name} has unknown key(s) {sorted(extra)}; allowed: {', '.join(TASK_FIELDS)}")
    freq = spec.get("frequency", 0.0)
    if isinstance(freq, bool) or not isinstance(freq, (int, float)) or not math.isfinite(freq) or freq < 0:
      raise MixtureError(f"data.tasks.{name}.frequency={freq!r} must be a finite number >= 0 (instances per batch; "
                         "0.1 = one every 10 batches)")
    period = spec.get("period", 1)
    if isinstance(period, bool) or not isinstance(period, int):
      raise MixtureError(f"data.tasks.{name}.period={period!r} must be an integer number of batches")
    out.append(schedules.TaskSchedule(name, float(freq), spec.get("schedule", "random"), period))
  return out


@dataclasses.dataclass
class Mixture:
  """The configured tasks, their schedules and (built lazily) their instances, for one config."""

  names: tuple[str, ...]  # all configured tasks, sorted: task id t <-> names[t]
  active: tuple[int, ...]  # task ids with frequency > 0
  schedules: tuple[schedules.TaskSchedule, ...]  # of the active tasks, in `active` order
  batch_size: int
  seq_len: int
  seed: int
  vocab: Vocabulary  # the source's ids: task symbol pool, PAD and EOD (vocab.py)
  _tasks: dict = dataclasses.field(default_factory=dict)

  @classmethod
  def from_config(cls, config) -> Mixture:
    all_sched = task_schedules(config.data)
    active = tuple(i for i, s in enumerate(all_sched) if s.frequency > 0)
    return cls(names=tuple(s.name for s in all_sched), active=active,
               schedules=tuple(all_sched[i] for i in active), batch_size=int(config.train.batch_size),
               seq_len=int(config.data.seq_len), seed=int(config.seed),
               vocab=sources.vocabulary(config.data, int(config.seed)))

  @property
  def active_names(self) -> tuple[str, ...]:
    return tuple(self.names[i] for i in self.active)

  def task(self, name: str) -> tasks_lib.PairTask:
    if name not in self._tasks:
      self._tasks[name] = tasks_lib.build(name, self.seed, self.vocab)
    return self._tasks[name]

  def allocation(self, step: int) -> np.ndarray:
    """(batch_size,) task id per global row of batch `step` (−1 background)."""
    if not self.active:
      return np.full(self.batch_size, schedules.BACKGROUND, np.int32)
    rows = schedules.allocate(self.schedules, self.batch_size, self.seed, step)
    ids = np.asarray(self.active + (schedules.BACKGROUND,), np.int32)
    return ids[rows]  # rows == −1 picks the appended BACKGROUND

  def counts(self, step: int) -> np.ndarray:
    """Instances per active task in batch `step`."""
    if not self.active:
      return np.zeros(0, np.int64)
    return schedules.counts(self.schedules, self.batch_size, self.seed, step)

  def batch(self, source, step: int, rows: range) -> dict[str, np.ndarray]:
    """This process's rows of global batch `step` (see the module docstring for the format)."""
    rows_np = np.arange(rows.start, rows.stop)
    seqs = source.sequences(step * self.batch_size + rows_np, "train")
    L = seqs.shape[1] - 1
    task_ids = self.allocation(step)[rows_np]
    task_mask = np.zeros((len(rows_np), L), np.int32)
    for t in self.active:
      sel = np.flatnonzero(task_ids == t)
      if len(sel):
        task = self.task(self.names[t])
        k = task.tokens_per_instance
        seqs[sel, :k] = task.train_instances(step, rows_np[sel])
        task_mask[sel, :k - 1] = t + 1
    return {"inputs": seqs[:, :-1], "targets": seqs[:, 1:], "weights": np.ones((len(rows_np), L), np.float32),
            "task_mask": task_mask, "task_ids": task_ids}

  # ---- evaluation ----------------------------------------------------------------------------------------------
  def eval_sets(self, batch_size: int, test_limit: int = 0, train_probe: int = 0) -> dict[str, list[dict]]:
    """Per active task: `<task>` = its test split (all of it unless `test_limit`), and `<task>_train` = a fixed
    subset of `train_probe` train instances. A row is one instance padded to EVAL_ROW_LEN positions (in training
    a LABEL's whole context is TOK1 TOK2, and the model is causal, so nothing else is needed; 8 rather than 3 keeps
    accelerator-friendly shapes); `weights` is 1 only at the LABEL's target."""
    out = {}
    for name in self.active_names:
      task = self.task(name)
      specs = [(name, task.split_ids("test", test_limit))]
      if train_probe:
        specs.append((f"{name}_train", task.split_ids("train", train_probe)))
      for set_name, ids in specs:
        inst = task.instances(ids)
        seqs = np.full((len(ids), max(EVAL_ROW_LEN, inst.shape[1] - 1) + 1), self.vocab.pad_id, np.int32)
        seqs[:, :inst.shape[1]] = inst
        weights = np.zeros((len(ids), seqs.shape[1] - 1), np.float32)
        weights[:, task.label_pos] = 1.0
        out[set_name] = [{"inputs": seqs[i:i + batch_size, :-1], "targets": seqs[i:i + batch_size, 1:],
                          "weights": weights[i:i + batch_size]} for i in range(0, len(ids), batch_size)]
    return out

  # ---- reporting -----------------------------------------------------------------------------------------------
  def summary(self) -> dict[str, dict]:
    """Run-dir summary["tasks"]: per configured task its frequencies, schedule and split digest."""
    out = {}
    by_name = dict(zip(self.active_names, self.schedules))
    for name in self.names:
      s = by_name.get(name)
      freq = s.frequency if s else 0.0
      task = self.task(name) if s else None
      out[name] = {
          "frequency_per_batch": freq,
          "frequency_per_token": freq * tasks_lib.TOKENS_PER_INSTANCE / (self.batch_size * self.seq_len),
          "schedule": s.schedule if s else None,
          "period": s.period if s else None,
          "test_split_sha256": task.split_sha256("test") if task else None,
          "n_train": len(task.train_ids) if task else None,
      }
    return out


class RealizedCounts:
  """`data/<task>/count`: cumulative instances of each active task in batches 0 … step−1.

  A pure function of (config, step) from the schedules, advanced incrementally (one allocation per batch since the
  previous call), so logging costs O(log interval) and a resumed run writes the same values.
  """

  def __init__(self, config):
    self._mix = Mixture.from_config(config)
    self._step = 0
    self._total = np.zeros(len(self._mix.active), np.int64)

  def record(self, step: int) -> dict[str, int]:
    if step < self._step:
      self._step, self._total = 0, np.zeros_like(self._total)
    while self._step < step:
      self._total += self._mix.counts(self._step)
      self._step += 1
    return {f"data/{n}/count": int(c) for n, c in zip(self._mix.active_names, self._total)}


# ---------------------------------------------------------------------------------------------------------------
# Validation (called from scaling/lm/config.py validate, before anything is built)
# ---------------------------------------------------------------------------------------------------------------
def validate_config(config) -> None:
  """Raises MixtureError (a ValueError) with one line on the first problem in `config.data`."""
  d = config.data
  try:
    sources.validate(d, config.seed)
  except SourceError as e:
    raise MixtureError(str(e)) from None
  for key, zero in (("task_eval_limit", "the whole test split"), ("task_train_probe", "off")):
    v = d.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
      raise MixtureError(f"data.{key}={v!r} must be an integer >= 0 (0: {zero})")
  scheds = task_schedules(d)
  for s in scheds:
    if s.schedule in ("burst", "withhold") and s.frequency == 0:
      raise MixtureError(f"data.tasks.{s.name}: schedule={s.schedule!r} with frequency 0 has nothing to "
                         f"{'withhold and inject' if s.schedule == 'withhold' else 'inject'}; set "
                         f"data.tasks.{s.name}.frequency > 0 or schedule='random'")
  active = [s for s in scheds if s.frequency > 0]
  try:
    schedules.validate(active, config.train.batch_size)
  except schedules.ScheduleError as e:
    raise MixtureError(f"data.tasks: {e}") from None
  if active and d.seq_len < tasks_lib.TOKENS_PER_INSTANCE:
    raise MixtureError(f"data.seq_len={d.seq_len} is shorter than a task instance "
                       f"({tasks_lib.TOKENS_PER_INSTANCE} tokens); raise it")
  for s in active:
    try:
      tasks_lib.build(s.name, config.seed, sources.vocabulary(d, config.seed))
    except tasks_lib.TaskError as e:
      raise MixtureError(f"data.tasks.{s.name}: {e}") from None
