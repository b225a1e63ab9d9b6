"""Rare-task retention across injections (paper §4, Fig 8): per-injection gain and decay of the task loss.

For every active task with a `burst` or `withhold` schedule and period P >= 2 (P = 1 injects every batch: there is
no window to forget in), L(s) is the task's held-out loss (mean LABEL nats over the first `retention_eval_limit`
test instances, 0 = all 5000; the same rows and numbers as `eval/<task>/loss` at that limit) of the model after s
optimizer steps. If batch i is an injection (the update from step i to i + 1 trains on it):

  record at step i        retention/<task>/loss_before = L(i)
  record at step i + 1    retention/<task>/loss_after  = L(i + 1),  retention/<task>/gain  = L(i) − L(i + 1)
  record at step i + P    retention/<task>/loss_end    = L(i + P),  retention/<task>/decay = L(i + P) − L(i + 1)

gain > 0: the injection lowered the loss; decay > 0: the loss came back over the P − 1 batches without the task;
decay ≈ gain: the injection was forgotten. Step i + P is also the next injection's step, so its record holds that
injection's loss_before as well (equal to loss_end). Nothing is measured at step 0 (the trainer runs no hook
before the first update), so a burst task's first injection (batch 0) has loss_after but no gain.

The values a later record needs (L(i), L(i + 1)) are carried in the callback's checkpointed state, so a resumed run
writes the same records as an unbroken one.
"""

from __future__ import annotations

from scaling.core import schedules
from scaling.core.loop import Callback
from scaling.lm import evaluate
from scaling.mechanisms.settings import INJECTION_SCHEDULES


def tracked(mix) -> list[schedules.TaskSchedule]:
  """The active tasks whose injections are tracked."""
  return [s for s in mix.schedules if s.schedule in INJECTION_SCHEDULES and s.period >= 2]


def is_injection(sched: schedules.TaskSchedule, batch: int) -> bool:
  return batch >= 0 and schedules.deterministic_count(sched, batch) > 0


class Retention(Callback):
  """Loss around injections for the tracked tasks of a Mixture, evaluated with a TrainSetup's eval_step; a
  training-loop callback due at every step where a tracked task has one of the three roles above."""

  name = "retention"
  at_end = False

  def __init__(self, setup, mix, eval_limit: int = 1000):
    self.setup = setup
    self.tasks = tracked(mix)
    names = {s.name for s in self.tasks}
    sets = mix.eval_sets(int(setup.config.train.batch_size), int(eval_limit), 0) if self.tasks else {}
    self.sets = {n: b for n, b in sets.items() if n in names}
    self._before: dict[str, tuple[int, float]] = {}
    self._after: dict[str, tuple[int, float]] = {}

  def _roles(self, sched, step: int) -> tuple[bool, bool, bool]:
    return (is_injection(sched, step), is_injection(sched, step - 1), is_injection(sched, step - sched.period))

  def due(self, step: int, total: int = 0) -> bool:
    return step > 0 and any(any(self._roles(s, step)) for s in self.tasks)

  def __call__(self, loop, step: int) -> dict[str, float]:
    return self.measure(loop.state["params"], step)

  def measure(self, params, step: int) -> dict[str, float]:
    """The retention/<task>/* values of the record at `step` ({} when no tracked task has one there)."""
    out: dict[str, float] = {}
    for s in self.tasks:
      pre, post, end = self._roles(s, step)
      if not (pre or post or end):
        continue
      loss = evaluate.evaluate(self.setup, params, {s.name: self.sets[s.name]})[f"eval/{s.name}/loss"]
      key = f"retention/{s.name}"
      if pre:
        out[f"{key}/loss_before"] = loss
        self._before[s.name] = (step, loss)
      if post:
        out[f"{key}/loss_after"] = loss
        self._after[s.name] = (step, loss)
        before = self._before.get(s.name)
        if before and before[0] == step - 1:
          out[f"{key}/gain"] = before[1] - loss
      if end:
        out[f"{key}/loss_end"] = loss
        after = self._after.get(s.name)
        if after and after[0] == step - s.period + 1:
          out[f"{key}/decay"] = loss - after[1]
    return out

  def state_dict(self) -> dict:
    return {"before": {k: list(v) for k, v in self._before.items()},
            "after": {k: list(v) for k, v in self._after.items()}}

  def load_state_dict(self, state: dict) -> None:
    self._before = {k: (int(v[0]), float(v[1])) for k, v in state.get("before", {}).items()}
    self._after = {k: (int(v[0]), float(v[1])) for k, v in state.get("after", {}).items()}
