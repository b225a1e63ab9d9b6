"""The fine-tuning trainer: `python -m scaling.finetune --config=configs/finetune.py:method=lora --init_from=RUN_DIR
--workdir=runs/ft [--dry_run]` (issue 13).

It runs on the one training loop through scaling/lm/train.py's `run_trainer` (same checks, lock, memory plan,
checkpoints, resume and exit codes as pretraining); only these pieces differ:

  start       the pretrained run's parameters, read from the newest checkpoint of --init_from (only `params`: its
              optimizer state is not read), onto this run's mesh and sharding preset, whatever mesh wrote them;
              the model section, seed and data vocabulary must match its config.json
              (scaling/lm/finetune_config.py check_pretrained). The pretrained run dir is only read.
  state       {"params": trainable, "frozen": frozen base, "opt_state": of the trainable tree only, "step"}
              (scaling/lm/trainable.py; scaling/lm/step.py build_finetune). Checkpoints hold all of it but the
              frozen base, which a resume reads back from the --init_from checkpoint step it came from
              (scaling/lm/finetune_checkpoint.py; finetune.save_frozen=True keeps it in the fine-tune's own
              checkpoints); either way a resumed fine-tune continues bit-identically after SIGKILL.
  batches     the fine-tune config's `data.tasks` mixture with finetune.loss_tokens applied
              (scaling/lm/finetune_data.py loss_weights). The stream starts at batch index
              DATA_OFFSET · (1 + finetune.seed) of that mixture, not at 0, so a fine-tune never replays the
              pretraining stream's batches (batch i is a pure function of (config, seed, i), and the seed must stay
              the pretrained one: it defines the tasks), and fine-tune seeds see different batches.
  evaluation  the fixed held-out sets of finetune_data.held_out_sets (background, every configured task's test split
              and train probe, the k-shot sets) at step 0 (the pretrained model), every train.eval_every steps and
              at the end, as eval/<set>/{loss,loss_bits,accuracy,n}; the final record adds the before/after deltas
              of scaling/lm/forgetting.py (forget/...) and every eval record finetune/trainable_params.

The mechanism measurements of pretraining are not run. method=frozen trains nothing (an empty trainable tree):
its records are the pretrained model's, before equal to after, the baseline row of a comparison.

`--init_from=DIR` is shorthand for `--config.finetune.init_from=<DIR as an absolute path>`; config.json records it.

Exit codes: as scaling/lm/train.py (0 done, 1 failed, 2 bad config, flags, run dir or --init_from, 130 stopped).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import jax
import numpy as np

from scaling.core import checkpoint as ckpt_lib
from scaling.core import cli, rundir
from scaling.core.errors import ConfigError
from scaling.lm import config as configlib
from scaling.lm import (
  dryrun,
  evaluate,
  finetune_checkpoint,
  finetune_config,
  finetune_data,
  forgetting,
  sharding,
  trainable,
)
from scaling.lm import step as step_lib
from scaling.lm import train as lm_train

log = logging.getLogger(__name__)

EXPERIMENT = finetune_config.EXPERIMENT
RESUMABLE_CHANGES = lm_train.RESUMABLE_CHANGES
# Fine-tune batches start at this global batch index times (1 + finetune.seed); no pretraining run gets near it.
DATA_OFFSET = 1 << 30
INIT_FLAG = "--init_from"


def data_start(config) -> int:
  return DATA_OFFSET * (1 + int(config.finetune.seed))


class WeightedBatches:
  """The training stream with finetune.loss_tokens applied, started at `data_start` (its state stays the
  underlying iterator's absolute {"next_index"}, so resume restores it exactly)."""

  def __init__(self, config, inner):
    self.inner, self.mode = inner, config.finetune.loss_tokens
    inner.set_state({"next_index": data_start(config)})

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return finetune_data.loss_weights(next(self.inner), self.mode)

  def get_state(self) -> dict:
    return self.inner.get_state()

  def set_state(self, state: dict) -> None:
    self.inner.set_state(state)


class FinetuneEval(evaluate.Eval):
  """evaluate.Eval of the effective model, keeping the step-0 (pretrained) result to add the forgetting deltas to
  the last step's record (kept in checkpoints, so a resumed run adds the same deltas)."""

  name = "finetune_eval"

  def __init__(self, setup, eval_sets, every: int, target: str, n_trainable: int):
    super().__init__(setup, eval_sets, every)
    self.target, self.n_trainable, self.before = target, int(n_trainable), None

  def params(self, state):
    return state["params"], state["frozen"]

  def __call__(self, loop, step: int) -> dict:
    out = super().__call__(loop, step)
    if step == 0:
      self.before = dict(out)
    extra = {"finetune/trainable_params": self.n_trainable}
    if step == loop.total and self.before is not None:
      extra.update(forgetting.deltas(self.before, out, self.target))
    return {**out, **extra}

  def state_dict(self) -> dict:
    return {"before": self.before}

  def load_state_dict(self, state: dict) -> None:
    self.before = state.get("before")


# ---- the pretrained run -------------------------------------------------------------------------------------
def pretrained_run(config) -> tuple[rundir.RunDir, dict]:
  """(run dir, its resolved config dict) of finetune.init_from, checked against `config`; raises ConfigError or
  RunDirError (exit 2) with one line. Reads only."""
  path = str(config.finetune.get("init_from", "") or "")
  if not path:
    raise ConfigError(f"{INIT_FLAG} is required — the run dir of a pretraining run (python -m scaling.train "
                      "--workdir=DIR)")
  if not os.path.isdir(path):
    what = "a file, not a run dir" if os.path.exists(path) else "no such directory"
    raise ConfigError(f"{INIT_FLAG}={path}: {what} — give the --workdir of a pretraining run")
  if not rundir.is_run_dir(path):
    raise ConfigError(f"{INIT_FLAG}={path}: not a run dir (no {rundir.CONFIG_FILE}) — give the --workdir of a "
                      "pretraining run")
  run = rundir.RunDir(path)
  stored = run.read_config()
  if stored["experiment"] != "lm":
    raise ConfigError(f"{INIT_FLAG}={path} is a {stored['experiment']!r} run — fine-tune a pretraining run "
                      "(python -m scaling.train)")
  finetune_config.check_pretrained(stored["config"], config, path)
  if not ckpt_lib.saved_steps(run.checkpoint_dir):
    raise ConfigError(f"{INIT_FLAG}={path} holds no checkpoint — let the pretraining run save one (rerun it to "
                      "resume) or point at a finished run")
  return run, stored["config"]


def validate(config, n_devices: int | None = None, n_processes: int = 1) -> None:
  finetune_config.validate(config, n_devices, n_processes)
  pretrained_run(config)


def _plan(config) -> trainable.Plan:
  return trainable.plan(finetune_config.adapter_spec(config), configlib.model_config(config), config.finetune.seed)


def _fresh_state(plan: trainable.Plan, source: finetune_checkpoint.BaseSource):
  def fresh_state(config, setup: step_lib.TrainSetup):
    run, _ = pretrained_run(config)
    base_sh = sharding.param_shardings(plan.abstract_base, plan.base_names, setup.rules, setup.mesh)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), plan.abstract_base,
                            base_sh)
    step, base = ckpt_lib.restore_subtree(run.checkpoint_dir, abstract)
    source.step = step  # the checkpoints record it: a restore reads the frozen base back from this step
    log.info("initialised from %s, step %d (%s)", run.path, step, plan.describe())
    return setup.init(base)

  return fresh_state


def _checkpointer(plan: trainable.Plan, source: finetune_checkpoint.BaseSource):
  """The run's Checkpointer, without the frozen base unless finetune.save_frozen (scaling/lm/finetune_checkpoint.py)."""

  def checkpointer(config, setup: step_lib.TrainSetup, ckpt: ckpt_lib.Checkpointer):
    if config.finetune.get("save_frozen", False) or not jax.tree.leaves(plan.abstract_frozen):
      return ckpt
    return finetune_checkpoint.WithoutFrozen(ckpt, source, setup.abstract_state["frozen"])

  return checkpointer


def _callbacks(plan: trainable.Plan):
  def callbacks(config, setup, run, lead) -> list:
    ev = FinetuneEval(setup, finetune_data.held_out_sets(config), config.train.eval_every, config.finetune.target,
                      plan.n_trainable)
    return lm_train.callbacks(config, setup, run, lead, measure=[ev])

  return callbacks


def trainer(config) -> lm_train.Trainer:
  """The fine-tuning Trainer of a resolved config (scaling/lm/train.py run_trainer runs it)."""
  plan = _plan(config)
  source = finetune_checkpoint.BaseSource(rundir.RunDir(str(config.finetune.get("init_from", "") or "")).checkpoint_dir)
  return lm_train.Trainer(EXPERIMENT, RESUMABLE_CHANGES, validate,
                          lambda c, devices: step_lib.build_finetune(c, plan, devices), _fresh_state(plan, source),
                          _callbacks(plan), WeightedBatches, plan.abstract_split, _checkpointer(plan, source))


def train(config, workdir: str, *, devices: Sequence[jax.Device] | None = None, progress: bool = True,
          stop_after: int | None = None, extend: bool = False) -> dict:
  """Fine-tunes (or resumes) one run; returns the final status dict. Raises ConfigError before any compute."""
  config = finetune_config.resolve(config)
  finetune_config.validate(config)
  check_workdir(workdir, str(config.finetune.get("init_from", "") or ""))
  return lm_train.run_trainer(trainer(config), config, workdir, devices=devices, progress=progress,
                              stop_after=stop_after, extend=extend)


def dry_run(config) -> str:
  """--dry_run: the pretraining dry run's lines for the model and mesh, then the exact trainable count, the data and
  the eval sets, and the checked --init_from. Allocates nothing."""
  config = finetune_config.resolve(config)
  finetune_config.validate(config)
  split = _plan(config).abstract_split
  lines = [dryrun.dry_run(finetune_config.lm_view(config), split).replace("training    ", "finetune    ", 1)]
  lines.append(finetune_config.describe(config))
  if config.finetune.get("init_from"):
    run, _ = pretrained_run(config)
    lines.append(f"init_from   {run.path} (step {ckpt_lib.saved_steps(run.checkpoint_dir)[-1]}; params only)")
  lines.append(f"data        fine-tune batches from index {data_start(config):,} of the mixture (pretraining reads "
               "from 0)")
  return "\n".join(lines)


def check_workdir(workdir: str, init_from: str) -> None:
  """ConfigError when the fine-tune's run dir would lie in the pretrained run's (which is only ever read)."""
  src, dst = os.path.abspath(init_from), os.path.abspath(workdir)
  if init_from and (dst == src or dst.startswith(src + os.sep)):
    raise ConfigError(f"--workdir={workdir} lies in {INIT_FLAG}={src}: the pretrained run is never written to — "
                      "give the fine-tune its own --workdir")


def _flag_value(args: Sequence[str], name: str) -> str | None:
  for i, a in enumerate(args):
    if a.startswith(name + "="):
      return a.split("=", 1)[1]
    if a == name and i + 1 < len(args):
      return args[i + 1]
  return None


def init_from_flag(args: Sequence[str]) -> list[str]:
  """`--init_from=DIR` / `--init_from DIR` -> `--config.finetune.init_from=<absolute DIR>`; other args unchanged."""
  out, i = [], 0
  while i < len(args):
    a = args[i]
    if a == INIT_FLAG or a.startswith(INIT_FLAG + "="):
      if a == INIT_FLAG:
        if i + 1 >= len(args) or args[i + 1].startswith("-"):
          raise ConfigError(f"{INIT_FLAG} needs a value — write {INIT_FLAG}=RUN_DIR")
        i += 1
        value = args[i]
      else:
        value = a.split("=", 1)[1]
      a = f"--config.finetune.init_from={os.path.abspath(value) if value else ''}"
    out.append(a)
    i += 1
  workdir, init_from = _flag_value(out, "--workdir"), _flag_value(out, "--config.finetune.init_from")
  if workdir and init_from:
    check_workdir(workdir, init_from)  # before the command line creates (and locks) the workdir
  return out


def main(argv: Sequence[str] | None = None) -> int:
  try:
    if argv is None:
      sys.argv[1:] = init_from_flag(sys.argv[1:])
    else:
      argv = [argv[0], *init_from_flag(argv[1:])] if argv else []
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return cli.EXIT_USAGE
  return cli.main(argv, example="configs/finetune.py:method=lora --init_from=RUN_DIR", describe=dry_run,
                  train=train, workdir_help="Fine-tune run directory (created; resumed if it holds a run).",
                  dry_run_help="Print sizes, exact trainable parameters, data and eval sets, then exit.")


if __name__ == "__main__":
  sys.exit(main())
