"""The trainers' command line: config loading and overrides, --extend, the lock slot, exit codes."""

import errno
import gc
import sys
import weakref

import pytest
from ml_collections import config_dict

from scaling.core import cli
from scaling.core.errors import Interrupted, UsageError

KW = {"example": "configs/lm.py", "workdir_help": "w", "dry_run_help": "d"}


def test_overrides_apply_in_any_order_and_the_space_form_works():
  fv = cli.parse_flags(["prog", "--config.train.steps=7", "--config", "configs/lm.py:size=50K", "--workdir=w",
                        "--noprogress", "--extend"], **KW)
  assert fv.config.train.steps == 7 and fv.config.model.size == "50K"
  assert fv.workdir == "w" and not fv.progress and fv.extend


def test_a_group_given_a_value_and_a_tuple_of_words_are_refused():
  with pytest.raises(UsageError, match="--config.train is a group of settings"):
    cli.parse_flags(["prog", "--config=configs/lm.py", "--config.train=3"], **KW)
  with pytest.raises(UsageError, match=r"--config.toy.betas: '\(1.0, x\)' is not a number"):
    cli.parse_flags(["prog", "--config=configs/toy.py", "--config.toy.betas=(1.0, x)"], **KW)


def test_extend_reaches_only_a_trainer_that_takes_it():
  fv = cli.parse_flags(["prog", "--config=configs/lm.py", "--extend"], **KW)
  assert cli._train_kwargs(lambda config, workdir, *, progress, extend=False: None, fv)["extend"] is True
  with pytest.raises(UsageError, match="--extend: this trainer does not support it yet"):
    cli._train_kwargs(lambda config, workdir, *, progress: None, fv)


def _dist(**kw):
  c = config_dict.ConfigDict({"distributed": {"mode": "auto", "coordinator_address": "", "num_processes": 0,
                                              "process_id": -1, "local_device_count": 0}})
  c.distributed.update(kw)
  return c


def test_lock_slot_is_the_process_index_when_it_is_known(monkeypatch):
  for var in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "TPU_WORKER_HOSTNAMES"):
    monkeypatch.delenv(var, raising=False)
  assert cli.process_slot(_dist()) == 0
  assert cli.process_slot(config_dict.ConfigDict({"toy": {}})) == 0
  assert cli.process_slot(_dist(coordinator_address="h:1", num_processes=2, process_id=1)) == 1
  assert cli.process_slot(_dist(mode="on")) is None  # only jax.distributed can tell: the loop locks then
  monkeypatch.setenv("SLURM_JOB_ID", "5")
  monkeypatch.setenv("SLURM_NTASKS", "4")
  monkeypatch.setenv("SLURM_PROCID", "3")
  assert cli.process_slot(_dist()) == 3
  assert cli.process_slot(_dist(mode="off")) == 0
  monkeypatch.delenv("SLURM_JOB_ID")
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "a,b")
  assert cli.process_slot(_dist()) is None


@pytest.mark.parametrize("error,code,needle", [
    (PermissionError(errno.EACCES, "Permission denied", "/x"), 2, "permission denied"),
    (OSError(errno.ENOSPC, "No space left on device", "/x"), 1, "disk full: No space left on device (/x)"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"), 2, "No such file or directory (/x)"),
])
def test_guarded_commands_say_machine_and_path_failures_in_one_line(error, code, needle, capsys):
  def body():
    raise error
  assert cli.guarded(body, bad_input=(UsageError,), then="go on") == code
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: ") and needle in err


def test_a_stop_raised_inside_a_weakref_callback_is_not_lost(monkeypatch):
  """Python swallows an exception raised in a weakref callback (importlib's module-lock callback during an
  import): the stop handler's Interrupted must still stop the command, without a printed traceback."""
  printed = []
  monkeypatch.setattr(sys, "unraisablehook", cli._unraisable_stop(printed.append))
  monkeypatch.setattr(cli, "_RECEIVED", [])

  class Thing:
    pass

  thing = Thing()
  ref = weakref.ref(thing, lambda _: cli._raise_interrupted(15, None))  # what the handler does on SIGTERM
  del thing
  gc.collect()
  assert ref() is None and not printed  # swallowed by Python, and kept quiet by the hook
  with pytest.raises(Interrupted, match="SIGTERM"):
    cli.raise_received()
  assert cli.stopped_line(Interrupted("SIGTERM")).startswith("stopped by SIGTERM") and not cli._RECEIVED
  cli.raise_received()  # handled: nothing pending any more
