"""Callbacks every trainer uses: training-metric windows, throughput, TensorBoard (scaling/core/loop.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from scaling.core import rundir
from scaling.core.errors import ConfigError
from scaling.core.loop import Callback, Loop, RecordSink

try:  # optional extra `tb`
  from tensorboardX import SummaryWriter
except ImportError:  # pragma: no cover - depends on the install
  SummaryWriter = None


class TrainLog(Callback):
  """Every `every` steps: train/loss and train/grad_norm averaged over the steps since the previous record,
  train/lr, and `counts(step)` (e.g. data/<task>/count). Members (metrics with a leading member axis) get one
  dict each. Per-step values are added one at a time in float64, so the averages do not depend on where the
  loop synced, and the running sums are checkpointed: a resumed run writes the same numbers."""

  name = "train_log"
  records = True

  def __init__(self, every: int, lr: Callable[[int], float] | None = None,
               counts: Callable[[int], dict | list] | None = None):
    self.every, self.lr_fn, self.counts_fn = int(every), lr, counts
    self.sums: dict[str, np.ndarray] = {}
    self.n = 0
    self.last_lr: float | None = None

  def on_sync(self, loop: Loop, first_step: int, values: dict[str, np.ndarray]) -> None:
    for i in range(len(values["loss"])):
      for key in ("loss", "grad_norm"):
        v = np.atleast_1d(values[key][i].astype(np.float64))
        self.sums[key] = self.sums[key] + v if key in self.sums else v
      self.n += 1
    if "lr" in values:
      self.last_lr = float(values["lr"][-1])

  def __call__(self, loop: Loop, step: int):
    if not self.n:
      return None
    mean = {k: v / self.n for k, v in self.sums.items()}
    lr = self.last_lr if self.last_lr is not None else float(self.lr_fn(step - 1))
    counts = self.counts_fn(step) if self.counts_fn else {}
    members = len(mean["loss"])
    out = []
    for i in range(members):
      rec = {"train/loss": float(mean["loss"][i]), "train/grad_norm": float(mean["grad_norm"][i]), "train/lr": lr}
      rec.update(counts[i] if isinstance(counts, list) else counts)
      out.append(rec)
    loop.set_postfix(loss=f"{float(np.mean(mean['loss'])):.4g}")
    self.sums, self.n = {}, 0
    return out if loop.program.metric_ndim else out[0]

  def state_dict(self) -> dict:
    return {"n": self.n, "sums": {k: v.tolist() for k, v in self.sums.items()}, "last_lr": self.last_lr}

  def load_state_dict(self, state: dict) -> None:
    self.n = int(state["n"])
    self.sums = {k: np.asarray(v, np.float64) for k, v in state["sums"].items()}
    self.last_lr = state.get("last_lr")


class Throughput(Callback):
  """Every `every` steps: wall-clock speed into each member's perf.jsonl (kept out of metrics.jsonl: timings are
  not reproducible). `units` names what a step consumes ("tokens" or "samples"), `per_step(step)` how many."""

  def __init__(self, every: int, runs: Sequence[rundir.RunDir], per_step: Callable[[int], float], units: str,
               flops_per_unit: float = 0.0, extra: dict | None = None):
    self.every, self.runs, self.per_step, self.units = int(every), list(runs), per_step, units
    self.flops_per_unit, self.extra = float(flops_per_unit), dict(extra or {})
    self._t, self._step = None, None

  def on_start(self, loop: Loop, start: int) -> None:
    self._t, self._step = time.perf_counter(), start

  def __call__(self, loop: Loop, step: int):
    if self._t is None or step == 0:
      return None
    now = time.perf_counter()
    steps_per_s = (step - self._step) / max(now - self._t, 1e-9)
    rate = steps_per_s * self.per_step(step)
    perf = {"step": step, "seconds": now - self._t, "steps_per_s": steps_per_s, f"{self.units}_per_s": rate,
            **self.extra}
    if self.flops_per_unit:
      perf["model_flops_per_s"] = rate * self.flops_per_unit
    if loop.lead:
      for run in self.runs:
        run.append_metrics([perf], name=rundir.PERF_FILE)
    loop.set_postfix(**{f"{self.units[:3]}_s": f"{rate:,.0f}"})
    self._t, self._step = now, step
    return None


class TensorBoard(RecordSink):
  """Writes every numeric entry of member 0's records as a TensorBoard scalar (needs the `tb` extra)."""

  def __init__(self, path: str):
    if SummaryWriter is None:
      raise ConfigError("tensorboard=True needs the tensorboardX package: pip install -e '.[tb]'")
    self.writer = SummaryWriter(os.path.join(path, "tensorboard"))

  def write(self, records: list[dict]) -> None:
    rec = records[0]
    for k, v in rec.items():
      if k not in ("step", "tokens") and isinstance(v, (int, float)) and not isinstance(v, bool):
        self.writer.add_scalar(k, v, rec["step"])

  def close(self) -> None:
    self.writer.close()
