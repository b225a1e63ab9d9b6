"""The toy trainer: `python -m scaling.toy_train --config=configs/toy.py[:arg] --workdir=W [--dry_run]`.

One invocation trains one width for every member (β in toy.betas) × (seed in toy.seeds) as ONE jitted program
(scaling/toy/program.py), driven by the one training loop (scaling/core/loop.py). Widths are separate invocations
(the sweep axis).

```
W/status.json              program status ("running"/"done"/"failed", members), polled by launch/sweep.py
W/checkpoints/             orbax: stacked params + Adam state of all members, data and window state (JSON)
W/beta=1.0_seed=0/         one complete run dir per member (scaling/core/rundir.py), experiment "toy":
  config.json              config = this member alone (scaling/toy/config.py member_config)
  metrics.jsonl            every train.log_every: train/loss (batch mean over the window), train/grad_norm,
                           train/lr, data/<task>/count (instances seen so far);
                           every train.eval_every (and steps 0 and last), exact population values:
                           toy/<task>/{loss_norm, signal, signal_norm}, toy/{loss, delta_F, grad_F_norm,
                           grad_r_norm, cos_rF, signal_frequent, signal_rare}
  retention.jsonl          {"step", "retention": K×r nested list of ‖P_U b_{k,j}‖²} every train.retention_every
                           steps and at the last step (kept out of metrics.jsonl: 1024 numbers per record)
  theory.json              scaling/toy/theory.py's predictions for this member at this width
  perf.jsonl, status.json
```
Tasks are named t01..tK (1-based). "tokens" counts samples (seq_len 1), extra injected rows included.

Resume: rerun the same command; it restores the newest checkpoint and rewrites the metrics after it identically.
Exit codes: 0 done, 1 failed, 2 bad config or flags, 130 stopped by SIGINT/SIGTERM after a checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import jax
import numpy as np

from scaling.core import callbacks as core_callbacks
from scaling.core import checkpoint as ckpt_lib
from scaling.core import cli, resume, rundir
from scaling.core.loop import Callback, Loop, RunDirs
from scaling.toy import config as toy_config
from scaling.toy import data as data_lib
from scaling.toy.program import Program, ToyProgram

RETENTION_FILE = "retention.jsonl"
GLOBAL_METRICS = ("loss", "delta_F", "grad_F_norm", "grad_r_norm", "cos_rF", "signal_frequent", "signal_rare")


class Population(Callback):
  """Exact population metrics (toy/*) every `eval_every` steps, at step 0 and at the end; the feature retention
  table into each member's retention.jsonl every `retention_every` steps and at the end. One evaluation serves
  both when they fall on the same step."""

  at_start = True

  def __init__(self, prog: Program, runs: Sequence[rundir.RunDir], names: Sequence[str], eval_every: int,
               retention_every: int):
    self.prog, self.runs, self.names = prog, list(runs), list(names)
    self.eval_every, self.retention_every = int(eval_every), int(retention_every)

  def _eval_due(self, step: int, total: int) -> bool:
    return step == 0 or step == total or bool(self.eval_every and step % self.eval_every == 0)

  def _retention_due(self, step: int, total: int) -> bool:
    return step > 0 and (step == total or bool(self.retention_every and step % self.retention_every == 0))

  def due(self, step: int, total: int) -> bool:
    return self._eval_due(step, total) or self._retention_due(step, total)

  def writes_record(self, step: int, total: int) -> bool:
    return self._eval_due(step, total)

  def retention_steps(self, upto: int, total: int) -> list[int]:
    return [s for s in range(1, upto + 1) if self._retention_due(s, total)]

  def __call__(self, loop: Loop, step: int):
    out = jax.device_get(self.prog.evaluate(loop.state["params"]))
    if self._retention_due(step, loop.total) and loop.lead:
      for i, run in enumerate(self.runs):
        table = np.round(out["retention_KxJ"][i].astype(np.float64), 6).tolist()
        run.append_metrics([{"step": step, "retention": table}], name=RETENTION_FILE)
    if not self._eval_due(step, loop.total):
      return None
    records = []
    for i in range(len(self.runs)):
      rec = {}
      for k, name in enumerate(self.names):
        for key in ("loss_norm", "signal", "signal_norm"):
          rec[f"toy/{name}/{key}"] = float(out[f"{key}_K"][i, k])
      rec.update({f"toy/{key}": float(out[key][i]) for key in GLOBAL_METRICS})
      records.append(rec)
    return records


def write_theory(run: rundir.RunDir, config, data) -> None:
  spec = data.spec()
  th = toy_config.theory(spec, int(config.toy.width), float(config.toy.mass), toy_config.rare_mask(config, spec))
  rundir.atomic_write_text(run.file(toy_config.THEORY_FILE), json.dumps(json.loads(rundir.dumps(th)), indent=1) + "\n")


def train(config, workdir: str, *, progress: bool = True, stop_after: int | None = None,
          extend: bool = False) -> dict:
  """Trains (or resumes) every member of one width; returns the program's final status dict.

  extend: accept a longer train.steps whose learning-rate schedule differs on the steps already trained.
  stop_after: stop (as if by SIGTERM, checkpoint saved) once this many steps ran in this call (tests)."""
  config = toy_config.resolve(config)
  program_dir = rundir.RunDir(workdir)
  with program_dir.lock():
    return _train(config, program_dir, progress, stop_after, extend)


def _train(config, program_dir: rundir.RunDir, progress: bool, stop_after: int | None, extend: bool) -> dict:
  t = config.train
  mems = toy_config.members(config)
  seeds, names = [m.seed for m in mems], [m.name for m in mems]
  datas = [toy_config.toy_data(config, m.beta) for m in mems]
  runs = [rundir.RunDir(os.path.join(program_dir.path, m.name)) for m in mems]
  mcfgs = [toy_config.member_config(config, m) for m in mems]
  changes = [resume.check_config(run, mc, toy_config.RESUMABLE_CHANGES, extend=extend) for run, mc in zip(runs, mcfgs)]
  if done := resume.finished(program_dir, t.steps):
    print(f"toy run in {program_dir.path} already finished at step {done['step']}; nothing to do")
    return done

  prog = Program(config, datas, seeds)
  ckpt = ckpt_lib.Checkpointer(program_dir.checkpoint_dir, config.checkpoint.every, config.checkpoint.keep,
                               config.checkpoint.async_save)
  restored = ckpt.restore_latest(prog.abstract_state(len(mems)))
  program = ToyProgram(prog, config, datas, seeds)
  population = Population(prog, runs, data_lib.task_names(config.toy.K), t.eval_every, t.retention_every)
  callbacks = [
      core_callbacks.TrainLog(t.log_every, lr=lambda s: float(prog.schedule(s)), counts=program.count_records),
      core_callbacks.Throughput(t.log_every, runs, lambda _: program.rows_last * len(mems), "samples",
                                extra={"members": len(mems)}),
      population,
  ]
  dirs = RunDirs(runs, [program_dir], {"members": names})
  loop = Loop(program, total_steps=t.steps, dirs=dirs, checkpointer=ckpt, callbacks=callbacks, progress=progress,
              desc=f"toy N={config.toy.width} x{len(mems)}", status_every=t.log_every, sync_every=64 * program.chunk,
              chunk=program.chunk, divergence_factor=t.get("divergence_factor", 0.0), stop_after=stop_after)
  start = restored[0] if restored else None
  resume.check_records(runs, start, t.steps, {rundir.METRICS_FILE: loop.record_steps(start or 0),
                                              RETENTION_FILE: population.retention_steps(start or 0, t.steps)})
  resume.log_resumed(start)
  if restored:
    _, state, saved = restored
    program.set_data_state(loop.load_saved_state(saved))
  else:
    state = prog.init(prog.keys(seeds))
  summaries = [toy_config.summary(config, m, d) for m, d in zip(mems, datas)]
  resume.prepare_dirs(runs, toy_config.EXPERIMENT, mcfgs, summaries, changes[0])
  for run, data in zip(runs, datas):
    write_theory(run, config, data)
  dirs.write_status("running", start or 0, t.steps)
  return {**loop.run(state, start or 0), "members": names}


def main(argv: Sequence[str] | None = None) -> int:
  return cli.main(argv, example="configs/toy.py:width=64", describe=toy_config.describe, train=train,
                  workdir_help="Program directory: one run dir per member is created inside.",
                  dry_run_help="Print members, sizes, FLOPs and theory, then exit.")


if __name__ == "__main__":
  sys.exit(main())
