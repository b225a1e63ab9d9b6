"""The trainer: `python -m scaling.train --config=configs/lm.py:size=1M --workdir=runs/x [--dry_run]`.

One loop for every size and mesh. It writes the run-dir contract (scaling/rundir.py), checkpoints the train state
together with the data-iterator state (scaling/checkpoint.py), and resumes automatically from the newest good
checkpoint in `--workdir`, bit-identically: metrics.jsonl after a kill-and-restart equals an unbroken run's.

Exit codes: 0 done (or already done), 1 failed (status.json says why), 2 bad config or flags, 130 stopped by
SIGINT/SIGTERM after saving a checkpoint (rerun the same command to resume; SLURM requeue does this).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from scaling.core import checkpoint as ckpt_lib
from scaling.core import cli, distributed, rundir
from scaling.lm import config as configlib
from scaling.lm import dryrun, evaluate

log = logging.getLogger(__name__)

# Keys that may differ between a run's stored config and the command resuming it: they do not change the math
# (mechanisms only measure; mesh/sharding changes reshard on restore).
RESUMABLE_CHANGES = ("checkpoint.", "distributed.", "mesh.", "sharding.", "mechanisms.", "data.worker_count",
                     "data.prefetch_threads", "tensorboard", "train.steps")
# XLA:CPU collectives over fake devices abort when many sharded steps are queued without a host sync
# (../shared/STACK.md trap 1); syncing at least this often avoids it and costs nothing measurable.
CPU_MAX_STEPS_BETWEEN_SYNCS = 16


class StopRequested(Exception):
  pass


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


def config_changes(old: dict, new: dict) -> list[str]:
  a, b = flatten(old), flatten(new)
  return sorted(k for k in set(a) | set(b) if a.get(k, "<missing>") != b.get(k, "<missing>"))


@contextlib.contextmanager
def stop_signals() -> Iterator[dict]:
  """SIGINT/SIGTERM set a flag checked between steps (a second SIGINT interrupts at once)."""
  flag = {"signal": None}
  if threading.current_thread() is not threading.main_thread():
    yield flag
    return

  def handler(signum, _frame):
    if flag["signal"] is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    flag["signal"] = signal.Signals(signum).name

  old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield flag
  finally:
    for s, h in old.items():
      signal.signal(s, h)


def _check_resume(run: rundir.RunDir, config_dict: dict) -> None:
  if not os.path.exists(run.file(rundir.CONFIG_FILE)):
    return
  old = run.read_config()["config"]
  changed = config_changes(old, config_dict)
  blocking = [k for k in changed if not k.startswith(RESUMABLE_CHANGES)]
  if blocking:
    a, b = flatten(old), flatten(config_dict)
    diff = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in blocking[:4])
    raise configlib.ConfigError(f"--workdir {run.path} holds a run with a different config ({diff}); "
                                "use a new --workdir or the original config")
  if changed:
    log.warning("resuming with changed settings: %s", ", ".join(changed))


def train(config, workdir: str, *, devices: Sequence[jax.Device] | None = None, progress: bool = True) -> dict:
  """Trains (or resumes) one run; returns the final status dict. Raises ConfigError before any compute."""
  config = configlib.resolve(config)
  distributed.initialize(config.distributed)
  devices = list(devices) if devices is not None else jax.devices()
  pidx, pcount = jax.process_index(), jax.process_count()
  configlib.validate(config, len(devices), pcount)
  t = config.train
  run = rundir.RunDir(workdir)
  cfg_dict = config.to_dict()
  _check_resume(run, cfg_dict)
  status = run.read_status()
  if status and status["state"] == "done" and status["step"] >= t.steps:
    msg = f"run in {run.path} already finished at step {status['step']}; nothing to do (use a new --workdir)"
    print(msg)
    return status

  from scaling.lm import sharding  # noqa: PLC0415
  from scaling.lm import step as step_lib  # noqa: PLC0415 - keep `--help`/config errors fast
  from scaling.lm.data import mixture, pipeline
  try:
    setup = step_lib.build(config, devices)
  except sharding.ShardingError as e:
    raise configlib.ConfigError(str(e)) from None
  ckpt = ckpt_lib.Checkpointer(run.checkpoint_dir, config.checkpoint.every, config.checkpoint.keep,
                               config.checkpoint.async_save)
  restored = ckpt.restore_latest(setup.abstract_state)
  data_iter = pipeline.make_train_iterator(config, pidx, pcount)
  if restored:
    start, state, data_state = restored
    data_iter.set_state(data_state)
    log.info("resumed from step %d", start)
  else:
    start, state = 0, setup.init()
  lead = pidx == 0
  if lead:
    run.write_config("lm", cfg_dict, configlib.summary(config))
    run.truncate_metrics(start if restored else -1)
    run.truncate_metrics(start if restored else -1, name=rundir.PERF_FILE)
    run.write_status("running", start, t.steps)
  eval_sets = evaluate.default_eval_sets(config) if t.eval_every else {}
  # ---- mechanisms hook (scaling/mechanisms.py): interference, probes, retention; None when all are off. -------
  from scaling.mechanisms import hook as mechanisms  # noqa: PLC0415
  mech = mechanisms.Mechanisms.create(config, setup, run, start)
  # ---------------------------------------------------------------------------------------------------------
  task_counts = mixture.RealizedCounts(config)  # data/<task>/count in log records (pure function of the step)
  tb = _tensorboard(config, run) if lead else None
  tokens_per_step = t.batch_size * config.data.seq_len
  flops_per_token = configlib.summary(config)["flops_per_token"]
  cpu = devices[0].platform == "cpu"
  sync_every = min(t.log_every, CPU_MAX_STEPS_BETWEEN_SYNCS) if cpu else t.log_every

  def write(record: dict, perf: dict | None = None) -> None:
    if lead:
      run.append_metrics([record])
      if perf:
        run.append_metrics([perf], name=rundir.PERF_FILE)
      if tb is not None:
        for k, v in record.items():
          if k not in ("step", "tokens") and isinstance(v, (int, float)):
            tb.add_scalar(k, v, record["step"])

  if start == 0 and t.eval_every:
    write({"step": 0, "tokens": 0, **evaluate.evaluate(setup, state["params"], eval_sets)})

  pending: list[dict] = []  # device metrics of steps not yet synced
  window: list[dict] = []  # host metrics since the last log record
  step = start
  t_last, step_last = time.perf_counter(), start
  bar = _progress(progress and lead, start, t.steps)
  final_state = "done"
  reason = None
  try:
    with stop_signals() as stop:
      while step < t.steps:
        batch = setup.place_batch(next(data_iter))
        state, metrics = setup.train_step(state, batch)
        step += 1
        pending.append(metrics)
        is_log = step % t.log_every == 0 or step == t.steps
        is_eval = bool(t.eval_every) and (step % t.eval_every == 0 or step == t.steps)
        is_ckpt = ckpt.should_save(step, final=step == t.steps)
        # ---- mechanisms hook: {} unless a measurement is due at this step; a non-empty dict forces a record. ---
        extra = mech.measure(state, step) if mech is not None else {}
        # -------------------------------------------------------------------------------------------------------
        if not (is_log or is_eval or is_ckpt or extra or step % sync_every == 0 or stop["signal"]):
          continue
        values = jax.device_get(pending)
        first = step - len(values) + 1
        pending = []
        bad = [first + i for i, v in enumerate(values) if not math.isfinite(float(v["loss"]))]
        if bad:
          final_state = "failed"
          reason = (f"non-finite training loss at step {bad[0]}; lower train.learning_rate, raise "
                    "train.warmup_steps or check the data")
          step = bad[0]
          break
        window.extend(values)
        bar.update(len(values))
        record = None
        if is_log or is_eval or extra:  # extra: mechanisms hook
          record = {"step": step, "tokens": step * tokens_per_step}
        perf = None
        if is_log:
          record.update({
              "train/loss": float(np.mean([float(v["loss"]) for v in window])),
              "train/grad_norm": float(np.mean([float(v["grad_norm"]) for v in window])),
              "train/lr": float(window[-1]["lr"]),
          })
          record.update(task_counts.record(step))
          now = time.perf_counter()
          steps_per_s = (step - step_last) / max(now - t_last, 1e-9)
          perf = {"step": step, "seconds": now - t_last, "steps_per_s": steps_per_s,
                  "tokens_per_s": steps_per_s * tokens_per_step,
                  "model_flops_per_s": steps_per_s * tokens_per_step * flops_per_token}
          t_last, step_last = now, step
          bar.set_postfix(loss=f"{record['train/loss']:.3f}", tok_s=f"{perf['tokens_per_s']:,.0f}")
          window = []
        if is_eval:
          record.update(evaluate.evaluate(setup, state["params"], eval_sets))
        if extra:  # mechanisms hook
          record.update(extra)
        if record:
          write(record, perf)
        if is_ckpt or stop["signal"]:
          ckpt.save(step, state, data_iter.get_state())
        if lead and is_log:
          run.write_status("running", step, t.steps)
        if stop["signal"] and step < t.steps:
          raise StopRequested(stop["signal"])
  except StopRequested as e:
    ckpt.close()
    bar.close()
    if lead:
      run.write_status("failed", step, t.steps,
                       reason=f"interrupted by {e} at step {step} (checkpoint saved); rerun to resume")
    print(f"stopped by {e} at step {step}; checkpoint saved, rerun the same command to resume")
    return {"state": "failed", "step": step, "interrupted": True}
  except BaseException as e:
    bar.close()
    if lead:
      first_line = (str(e).splitlines() or [""])[0][:500]
      run.write_status("failed", step, t.steps, reason=f"{type(e).__name__}: {first_line}")
    with contextlib.suppress(Exception):
      ckpt.close()
    raise
  bar.close()
  ckpt.close()
  if tb is not None:
    tb.close()
  if lead:
    run.write_status(final_state, step, t.steps, reason=reason)
  if final_state == "failed":
    log.error("%s", reason)
  return {"state": final_state, "step": step, "reason": reason, "total_steps": t.steps}


def _progress(enabled: bool, start: int, total: int):
  from tqdm.auto import tqdm
  interactive = sys.stderr.isatty()
  return tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True,
              mininterval=0.5 if interactive else 30.0, desc="train")


def _tensorboard(config, run: rundir.RunDir):
  if not config.tensorboard:
    return None
  try:
    from tensorboardX import SummaryWriter  # noqa: PLC0415
  except ImportError:
    raise configlib.ConfigError("tensorboard=True needs the tensorboardX package: pip install tensorboardX") \
        from None
  return SummaryWriter(os.path.join(run.path, "tensorboard"))


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
  return cli.main(argv, example="configs/lm.py:size=1M", describe=dryrun.dry_run, train=train,
                  workdir_help="Run directory (created; resumed if it holds a run).",
                  dry_run_help="Print sizes, tokens, FLOPs, mesh and batch layout, then exit.")


if __name__ == "__main__":
  sys.exit(main())
