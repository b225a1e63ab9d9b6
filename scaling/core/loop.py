"""The one training loop. Trainers (language model, toy, fine-tuning) are thin users: they build a `Program`
(what one segment of updates does) and a list of `Callback`s (what happens at which steps), and call `Loop.run`.

The loop owns step counting, segmentation, host-sync cadence, stop requests, divergence detection, progress,
status and checkpoint cadence. Everything else is a callback with a trigger: `every=N` (plus `at_start` /
`at_end`), or its own `due(step)`. At a step where callbacks are due, their record entries are merged into one
metrics record per member run dir (`{"step", "tokens", ...}`) and written once.

Segments. Updates run in segments [step, end) handed to `Program.advance` (one jitted call per step, or several
steps in one call). A segment ends at the next multiple of `chunk`, at any step where a callback or a checkpoint is
due, and at the last step. These cut points depend on the step alone, so a run resumed from a checkpoint (always a
cut point) cuts, computes and records exactly what an unbroken run does.

Host syncs happen where something is due, at a stop request, and at least every `sync_every` steps (XLA:CPU
collectives over fake devices abort when many sharded steps queue without a sync: README, Known traps 1).
At each sync the per-step training metrics are checked: a non-finite loss or gradient norm, or a loss above
`divergence_factor` × the first step's loss, stops the run as failed at that step; parameters are checked for
non-finite values before every checkpoint, so a diverged state is never saved.

Checkpoints hold the train state and one JSON item: the program's data state, every callback's `state_dict()`
and the loop's own state, so a resumed run continues window averages and carried values exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any, Protocol

import jax
import numpy as np
from tqdm.auto import tqdm

from scaling.core import checkpoint as ckpt_lib
from scaling.core import divergence, failure, rundir
from scaling.core.signals import FLAG, StopRequested, handle_stop_signals

log = logging.getLogger(__name__)

Record = dict | list  # entries for every member, or a list with one dict per member


class Program(Protocol):
  """What a trainer gives the loop."""

  metric_ndim: int  # ndim of one step's "loss": 0 (one model) or 1 (members stacked on a leading axis)

  def advance(self, state: Any, start: int, stop: int) -> tuple[Any, list]:
    """Runs updates start … stop−1; returns the new state and device metrics: a list of trees, each holding one
    step's metrics or several steps stacked on a leading axis ("loss" and "grad_norm" required)."""

  def data_state(self) -> dict:
    """JSON state of the data stream after the last update (restored with `set_data_state`)."""

  def tokens(self, step: int) -> int:
    """Training tokens (or samples) consumed by the first `step` updates."""


class Callback:
  """Work at some steps. Set `every` (0: never by cadence), `at_start` (step 0 of a fresh run, before any update)
  and `at_end` (the last step), or override `due`/`next_due`. `__call__` returns record entries or None."""

  name = ""  # key of the checkpointed state_dict (required when state_dict returns something)
  records = False  # True: returns entries at every step where it is due (resume checks those records exist)
  every = 0
  at_start = False
  at_end = True

  def due(self, step: int, total: int) -> bool:
    if step == 0:
      return self.at_start
    return bool(self.every and step % self.every == 0) or (self.at_end and step == total)

  def next_due(self, step: int, limit: int, total: int) -> int:
    """The first step in (step, limit] at which this is due, else `limit`."""
    if type(self).due is Callback.due:  # cadence only: arithmetic
      return min((step // self.every + 1) * self.every, limit) if self.every else limit
    return next((s for s in range(step + 1, limit) if self.due(s, total)), limit)

  def writes_record(self, step: int, total: int) -> bool:
    """Whether the metrics record at `step` certainly holds entries of this callback."""
    return self.records and self.due(step, total)

  def on_start(self, loop: Loop, start: int) -> None:
    """Called once when the loop starts (fresh or resumed at `start`), before any update."""

  def on_sync(self, loop: Loop, first_step: int, values: dict[str, np.ndarray]) -> None:
    """Host values of the training metrics of steps first_step … first_step + n − 1 (leading axis n)."""

  def __call__(self, loop: Loop, step: int) -> Record | None:
    return None

  def state_dict(self) -> dict | None:
    return None

  def load_state_dict(self, state: dict) -> None:
    pass

  def close(self) -> None:
    pass


class Diverged(Exception):

  def __init__(self, step: int, reason: str):
    super().__init__(reason)
    self.step = step


@dataclasses.dataclass
class RunDirs:
  """Where the loop writes: `members` get metrics records (one per member, in order); `status` get status.json."""

  members: Sequence[rundir.RunDir]
  status: Sequence[rundir.RunDir]
  status_extra: dict = dataclasses.field(default_factory=dict)

  def write_status(self, state: str, step: int, total: int, reason: str | None = None) -> None:
    seen = set()
    for run in [*self.members, *self.status]:
      if run.path not in seen:
        seen.add(run.path)
        extra = self.status_extra if run in self.status else {}
        run.write_status(state, step, total, reason=reason, **extra)


class Loop:
  """Runs a Program from `start` to `total_steps`; see the module docstring."""

  def __init__(self, program: Program, *, total_steps: int, dirs: RunDirs, checkpointer: ckpt_lib.Checkpointer,
               callbacks: Sequence[Callback], lead: bool = True, progress: bool = True, desc: str = "train",
               status_every: int = 10, sync_every: int = 16, chunk: int = 1, divergence_factor: float = 0.0,
               stop_after: int | None = None):
    self.program, self.total, self.dirs, self.ckpt = program, int(total_steps), dirs, checkpointer
    self.callbacks = list(callbacks)
    names = [c.name for c in self.callbacks if c.name]
    if len(set(names)) != len(names):
      raise ValueError(f"callback names repeat: {names}")
    self.lead, self.progress, self.desc = lead, progress, desc
    self.status_every, self.sync_every, self.chunk = max(int(status_every), 1), max(int(sync_every), 1), chunk
    self.divergence_factor, self.stop_after = float(divergence_factor), stop_after
    self.state: Any = None
    self.step = 0
    self.first_loss: np.ndarray | None = None
    self.bar = None

  # ---- checkpoint payload ------------------------------------------------------------------------------------
  def saved_state(self) -> dict:
    cbs = {c.name: s for c in self.callbacks if c.name and (s := c.state_dict()) is not None}
    loop = {"first_loss": None if self.first_loss is None else self.first_loss.tolist()}
    return {"program": self.program.data_state(), "callbacks": cbs, "loop": loop}

  def load_saved_state(self, saved: dict) -> dict:
    """Restores callbacks and loop state from a checkpoint's JSON item; returns the program's data state."""
    for c in self.callbacks:
      if c.name in saved.get("callbacks", {}):
        c.load_state_dict(saved["callbacks"][c.name])
    first = saved.get("loop", {}).get("first_loss")
    self.first_loss = None if first is None else np.asarray(first, np.float64)
    return saved["program"] if "program" in saved else saved  # checkpoints before the loop held only that

  # ---- the loop ------------------------------------------------------------------------------------------------
  def run(self, state: Any, start: int) -> dict:
    """Trains from `start`; returns {"state", "step", "reason", "total_steps"} (+ "interrupted": True)."""
    self.state, self.step = state, start
    self.bar = tqdm(total=self.total, initial=start, disable=not (self.progress and self.lead), unit="step",
                    dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0, desc=self.desc)
    final, reason = "done", None
    try:
      with handle_stop_signals():
        for c in self.callbacks:
          c.on_start(self, start)
        if start == 0:
          self._emit(0, [c for c in self.callbacks if c.due(0, self.total)])
        self._train(start)
    except Diverged as d:
      final, reason, self.step = "failed", str(d), d.step
    except StopRequested as e:
      self._close()
      msg = f"interrupted by {e} at step {self.step} (checkpoint saved); rerun to resume"
      if self.lead:
        self.dirs.write_status("failed", self.step, self.total, reason=msg)
      print(f"stopped by {e} at step {self.step}; checkpoint saved, rerun the same command to resume")
      return {"state": "failed", "step": self.step, "interrupted": True, "reason": msg, "total_steps": self.total}
    except BaseException as e:
      if self.lead:
        reason = failure.describe(e) if failure.is_environmental(e) else \
            f"{type(e).__name__}: {failure.first_line(e, 500)}"
        with contextlib.suppress(OSError):  # a full disk: the original error must reach the command line
          self.dirs.write_status("failed", self.step, self.total, reason=reason)
      self._close(quiet=True)
      raise
    self._close()
    if self.lead:
      self.dirs.write_status(final, self.step, self.total, reason=reason)
    if final == "failed":
      log.error("%s", reason)
    return {"state": final, "step": self.step, "reason": reason, "total_steps": self.total}

  def record_steps(self, upto: int) -> list[int]:
    """The steps <= upto whose metrics record a run from step 0 certainly wrote (checked on resume)."""
    return [s for s in range(upto + 1) if any(c.writes_record(s, self.total) for c in self.callbacks)]

  def _train(self, start: int) -> None:
    step, pending, unsynced = start, [], 0
    while step < self.total:
      end = self._next_cut(step)
      self.state, metrics = self.program.advance(self.state, step, end)
      pending.extend(metrics)
      unsynced += end - step
      step = end
      due = [c for c in self.callbacks if c.due(step, self.total)]
      save = self.ckpt.should_save(step, final=step == self.total)
      if self.stop_after is not None and step - start >= self.stop_after and FLAG.reason is None:
        FLAG.request(f"stop_after={self.stop_after}")
      stop = FLAG.reason
      if due or save or stop or unsynced >= self.sync_every:
        self._sync(pending, step - unsynced + 1)
        pending, unsynced = [], 0
      self.step = step
      if due:
        self._emit(step, due)
      if save or stop:
        self._save(step)
      if self.lead and step % self.status_every == 0 and step < self.total:
        self.dirs.write_status("running", step, self.total)
      if stop and step < self.total:
        FLAG.clear()
        raise StopRequested(stop)

  def _next_cut(self, step: int) -> int:
    limit = min((step // self.chunk + 1) * self.chunk, self.total)
    if self.ckpt.every:
      limit = min(limit, (step // self.ckpt.every + 1) * self.ckpt.every)
    for c in self.callbacks:
      limit = min(limit, c.next_due(step, limit, self.total))
    return limit

  def _sync(self, pending: list, first_step: int) -> None:
    if not pending:
      return
    values = _stack(jax.device_get(pending), self.program.metric_ndim)
    self._check_divergence(first_step, values)
    for c in self.callbacks:
      c.on_sync(self, first_step, values)
    self.bar.update(len(values["loss"]))

  def _check_divergence(self, first_step: int, values: dict[str, np.ndarray]) -> None:
    loss = values["loss"].astype(np.float64)
    if self.first_loss is None and first_step == 1:
      self.first_loss = loss[0]
    factor = self.divergence_factor if self.divergence_factor > 0 else np.inf
    bad = divergence.first_divergence(first_step, loss, values["grad_norm"], reference_loss=self.first_loss,
                                      factor=factor)
    if bad is not None:
      raise Diverged(bad.step, bad.reason)

  def _emit(self, step: int, due: Sequence[Callback]) -> None:
    members = self.dirs.members
    records = [{"step": step, "tokens": int(self.program.tokens(step))} for _ in members]
    added = False
    for c in due:
      out = c(self, step)
      if not out:
        continue
      added = True
      for rec, entries in zip(records, out if isinstance(out, list) else [out] * len(members)):
        rec.update(entries)
    if added and self.lead:
      for run, rec in zip(members, records):
        run.append_metrics([rec])
      for c in self.callbacks:
        if isinstance(c, RecordSink):
          c.write(records)

  def _save(self, step: int) -> None:
    if not all(math.isfinite(s) for s in ckpt_lib.fingerprint(self.state)):
      bad = divergence.first_divergence(step, np.zeros(1), params_finite=False)
      raise Diverged(bad.step, bad.reason)
    self.ckpt.save(step, self.state, self.saved_state())

  def _close(self, quiet: bool = False) -> None:
    if self.bar is not None:
      self.bar.close()
    for c in self.callbacks:
      c.close()
    try:
      self.ckpt.close()
    except Exception:  # noqa: BLE001 - already failing: keep the original error
      if not quiet:
        raise

  def set_postfix(self, **values) -> None:
    if self.bar is not None:
      self.bar.set_postfix(**values)


class RecordSink(Callback):
  """A callback that also receives every written record list (e.g. TensorBoard); never due itself."""

  at_end = False

  def write(self, records: list[dict]) -> None:
    raise NotImplementedError


def _stack(trees: list, ndim: int) -> dict[str, np.ndarray]:
  """Host metric trees (one step each, or steps stacked on axis 0) -> {key: (n_steps, ...)}."""
  out: dict[str, list] = {}
  for tree in trees:
    for k, v in tree.items():
      a = np.asarray(v)
      out.setdefault(k, []).append(a[None] if a.ndim == ndim else a)
  return {k: np.concatenate(v) for k, v in out.items()}
