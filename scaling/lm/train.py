"""The language-model trainer: `python -m scaling.train --config=configs/lm.py:size=1M --workdir=runs/x [--dry_run]`.

A thin user of the one training loop (scaling/core/loop.py): it builds the sharded step (scaling/lm/step.py) and
the data stream (scaling/lm/data/pipeline.py), and hands the loop its callbacks: training-metric windows,
throughput, held-out evaluation, the mechanism measurements, TensorBoard. It writes the run-dir contract
(scaling/core/rundir.py) and resumes from the newest good checkpoint in `--workdir`, bit-identically: metrics.jsonl
after a kill-and-restart equals an unbroken run's.

Exit codes: 0 done (or already done), 1 failed (status.json says why), 2 bad config or flags, 130 stopped by
SIGINT/SIGTERM after saving a checkpoint (rerun the same command to resume; SLURM requeue does this).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax

from scaling.core import callbacks as core_callbacks
from scaling.core import checkpoint as ckpt_lib
from scaling.core import cli, distributed, resume, rundir
from scaling.core.loop import Loop, RunDirs
from scaling.lm import config as configlib
from scaling.lm import dryrun, evaluate, memory
from scaling.lm import step as step_lib
from scaling.lm.data import mixture, pipeline
from scaling.mechanisms import callbacks as mechanism_callbacks

log = logging.getLogger(__name__)

EXPERIMENT = "lm"
# Keys that may differ between a run's stored config and the command resuming it: they do not change the math
# (mechanisms only measure; mesh/sharding changes reshard on restore).
# train.steps has its own rule (scaling/core/resume.py).
RESUMABLE_CHANGES = ("checkpoint.", "distributed.", "mesh.", "sharding.", "mechanisms.", "data.worker_count",
                     "data.prefetch_threads", "data.prepared.verify", "memory.", "tensorboard",
                     "train.steps_per_call")
# XLA:CPU collectives over fake devices abort when many sharded steps are queued without a host sync
# (README, Known traps 1); syncing at least this often avoids it and costs nothing measurable.
CPU_MAX_STEPS_BETWEEN_SYNCS = 16


class LMProgram:
  """Updates on batches from the data iterator: a segment of exactly `steps_per_call` steps runs as one call of
  the K-step scan (`train_steps`), anything shorter one call of the train step per step (both give the same
  bits, so where the loop cuts segments never changes the result)."""

  metric_ndim = 0

  def __init__(self, setup: step_lib.TrainSetup, data_iter: pipeline.BatchIterator, tokens_per_step: int,
               steps_per_call: int = 1):
    self.setup, self.data_iter, self.tokens_per_step = setup, data_iter, tokens_per_step
    self.steps_per_call = int(steps_per_call)

  def advance(self, state, start: int, stop: int):
    if stop - start == self.steps_per_call > 1:
      batches = [next(self.data_iter) for _ in range(start, stop)]
      state, m = self.setup.train_steps(state, self.setup.place_batches(batches))
      return state, [m]
    metrics = []
    for _ in range(start, stop):
      state, m = self.setup.train_step(state, self.setup.place_batch(next(self.data_iter)))
      metrics.append(m)
    return state, metrics

  def data_state(self) -> dict:
    return self.data_iter.get_state()

  def tokens(self, step: int) -> int:
    return step * self.tokens_per_step


def callbacks(config, setup, run: rundir.RunDir, lead: bool, measure: list | None = None) -> list:
  """What runs at which steps: windows of train metrics, throughput, `measure` (default: held-out evals and the
  mechanism measurements), TensorBoard."""
  t = config.train
  summary = configlib.summary(config)
  out = [
      core_callbacks.TrainLog(t.log_every, counts=mixture.RealizedCounts(config).record),
      core_callbacks.Throughput(t.log_every, [run], lambda _: summary["tokens_per_step"], "tokens",
                                summary["flops_per_token"]),
  ]
  if measure is None:
    measure = [evaluate.Eval(setup, evaluate.default_eval_sets(config), t.eval_every)] if t.eval_every else []
    measure.extend(mechanism_callbacks.build(config, setup))
  out.extend(measure)
  if config.tensorboard and lead:
    out.append(core_callbacks.TensorBoard(run.path))
  return out


@dataclasses.dataclass(frozen=True)
class Trainer:
  """What differs between trainers on this loop (pretraining here, fine-tuning in scaling/lm/finetune.py)."""

  experiment: str
  resumable: tuple[str, ...]  # RESUMABLE_CHANGES
  validate: Callable[[Any, int, int], None]  # (resolved config, n_devices, n_processes); raises ConfigError
  build: Callable[[Any, Sequence[jax.Device]], step_lib.TrainSetup]
  fresh_state: Callable[[Any, step_lib.TrainSetup], Any]  # (config, setup) -> the state at step 0
  callbacks: Callable[..., list]  # (config, setup, run, lead) -> the loop's callbacks
  batches: Callable[[Any, pipeline.BatchIterator], Any] = lambda _config, it: it  # the stream the program reads
  param_split: Any = None  # memory.plan's (trainable, frozen) trees of a fine-tune; None: every parameter trains
  checkpointer: Callable[..., Any] = lambda _config, _setup, ckpt: ckpt  # (config, setup, Checkpointer) -> one


PRETRAIN = Trainer(EXPERIMENT, RESUMABLE_CHANGES, lambda c, n, p: configlib.validate(c, n, p), step_lib.build,
                   lambda _config, setup: setup.init(), callbacks)


def train(config, workdir: str, *, devices: Sequence[jax.Device] | None = None, progress: bool = True,
          stop_after: int | None = None, extend: bool = False) -> dict:
  """Trains (or resumes) one run; returns the final status dict. Raises ConfigError before any compute.

  extend: accept a longer train.steps whose learning-rate schedule differs on the steps already trained (recorded
  in config.json's history). stop_after: stop (as if by SIGTERM, checkpoint saved) once this many steps ran in
  this call (tests)."""
  return run_trainer(PRETRAIN, configlib.resolve(config), workdir, devices=devices, progress=progress,
                     stop_after=stop_after, extend=extend)


def run_trainer(trainer: Trainer, config, workdir: str, *, devices: Sequence[jax.Device] | None = None,
                progress: bool = True, stop_after: int | None = None, extend: bool = False) -> dict:
  """`train` for any Trainer, on a resolved config: checks, the memory plan and the run dir's lock, then the loop."""
  distributed.initialize(config.distributed)
  devices = list(devices) if devices is not None else jax.devices()
  trainer.validate(config, len(devices), jax.process_count())
  memory.check(memory.plan(config, len(devices), memory.device_memory_bytes(config, devices), trainer.param_split),
               config)
  run = rundir.RunDir(workdir)
  with run.lock(jax.process_index()):  # re-entrant: the command line already holds it when it knows the slot
    return _train(trainer, config, run, devices, progress, stop_after, extend)


def _train(trainer: Trainer, config, run: rundir.RunDir, devices, progress: bool, stop_after: int | None,
           extend: bool) -> dict:
  t = config.train
  cfg_dict = config.to_dict()
  change = resume.check_config(run, cfg_dict, trainer.resumable, extend=extend)
  if change and change.changed:
    log.warning("resuming with changed settings: %s", change.describe())
  if done := resume.finished(run, t.steps):
    print(f"run in {run.path} already finished at step {done['step']}; nothing to do (use a new --workdir)")
    return done

  pidx, pcount = jax.process_index(), jax.process_count()
  lead = pidx == 0
  setup = trainer.build(config, devices)
  ckpt = trainer.checkpointer(config, setup, ckpt_lib.Checkpointer(
      run.checkpoint_dir, config.checkpoint.every, config.checkpoint.keep, config.checkpoint.async_save))
  restored = ckpt.restore_latest(setup.abstract_state)
  data_iter = trainer.batches(config, pipeline.make_train_iterator(config, pidx, pcount))
  program = LMProgram(setup, data_iter, t.batch_size * config.data.seq_len, t.get("steps_per_call", 1))
  cpu = devices[0].platform == "cpu"
  loop = Loop(program, total_steps=t.steps, dirs=RunDirs([run], [run]), checkpointer=ckpt,
              callbacks=trainer.callbacks(config, setup, run, lead), lead=lead, progress=progress,
              desc="train", status_every=t.log_every,
              sync_every=min(t.log_every, CPU_MAX_STEPS_BETWEEN_SYNCS) if cpu else t.log_every,
              chunk=program.steps_per_call, divergence_factor=t.get("divergence_factor", 0.0), stop_after=stop_after)
  start = restored[0] if restored else None
  if lead:
    resume.check_records([run], start, t.steps, {rundir.METRICS_FILE: loop.record_steps(start or 0)})
  resume.log_resumed(start)
  if restored:
    _, state, saved = restored
    data_iter.set_state(loop.load_saved_state(saved))
  else:
    state = trainer.fresh_state(config, setup)
  if lead:
    resume.prepare_dirs([run], trainer.experiment, [cfg_dict], [configlib.summary(config)], change)
    run.write_status("running", start or 0, t.steps)
  return loop.run(state, start or 0)


def main(argv: Sequence[str] | None = None) -> int:
  return cli.main(argv, example="configs/lm.py:size=1M", describe=dryrun.dry_run, train=train,
                  workdir_help="Run directory (created; resumed if it holds a run).",
                  dry_run_help="Print sizes, tokens, FLOPs, mesh and batch layout, then exit.")


if __name__ == "__main__":
  sys.exit(main())
