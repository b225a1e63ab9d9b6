"""The run-dir lock: one writer per run dir, named when refused, gone with its process; two real trainers."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from scaling.core import rundir, runlock
from scaling.core.errors import ConfigError, RunDirLocked
from tests import helpers
from tests.badinput import harness
from tests.lm.test_resume import _final_params


def test_second_holder_is_refused_naming_host_and_pid(tmp_path):
  run = rundir.RunDir(str(tmp_path / "r"))
  with harness.lock_held_elsewhere(run.path) as pid:
    assert run.lock_holder()["pid"] == pid
    t0 = time.monotonic()
    with pytest.raises(RunDirLocked, match=f"is in use by pid {pid} on elsewhere"):
      with run.lock(wait_s=0.3):
        pass
    assert time.monotonic() - t0 < 5
  assert run.lock_holder() is None  # the holder's death released it


def test_reentrant_within_a_process_and_emptied_on_release(tmp_path):
  run = rundir.RunDir(str(tmp_path / "r"))
  with run.lock():
    run.write_status("running", 0, 1)
    info = run.lock_holder()
    assert info["pid"] == os.getpid() and info["host"]
    with run.lock():  # the loop taking it again inside the command line's hold
      pass
    assert run.lock_holder() is not None
    with open(runlock.lock_path(run.path)) as f:
      assert json.loads(f.read())["pid"] == os.getpid()
  assert run.lock_holder() is None
  with open(runlock.lock_path(run.path)) as f:
    assert f.read() == ""  # no stale holder info to mislead a reader


def test_probe_creates_nothing_and_a_refused_start_leaves_no_folder(tmp_path):
  assert rundir.RunDir(str(tmp_path / "absent")).lock_holder() is None
  assert not (tmp_path / "absent").exists()
  with pytest.raises(ZeroDivisionError):
    with rundir.RunDir(str(tmp_path / "new")).lock():
      1 / 0  # noqa: B018 - a start that fails before writing anything
  assert not (tmp_path / "new").exists()


def test_workdir_that_is_a_file_or_read_only_is_a_config_error(tmp_path):
  (tmp_path / "f").write_text("x")
  with pytest.raises(ConfigError, match="exists and is not a directory"):
    with rundir.RunDir(str(tmp_path / "f")).lock():
      pass
  (tmp_path / "ro").mkdir()
  with harness.read_only(str(tmp_path / "ro")), pytest.raises(ConfigError, match="is not writable"):
    with rundir.RunDir(str(tmp_path / "ro")).lock():
      pass


def test_a_probe_meeting_a_starting_trainer_is_waited_out(tmp_path):
  """The launcher's probe holds a shared lock for a moment; a trainer starting then must not be refused."""
  d = tmp_path / "r"
  d.mkdir()
  code = ("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT)\n"
          "fcntl.flock(fd, fcntl.LOCK_SH)\nprint('probing', flush=True)\ntime.sleep(0.5)\n")
  probe = subprocess.Popen([sys.executable, "-c", code, runlock.lock_path(str(d))], stdout=subprocess.PIPE, text=True)
  assert probe.stdout.readline().strip() == "probing"
  with rundir.RunDir(str(d)).lock(wait_s=5.0):
    assert rundir.RunDir(str(d)).lock_holder()["pid"] == os.getpid()
  probe.wait()


def test_other_process_slots_lock_their_own_file(tmp_path):
  run = rundir.RunDir(str(tmp_path / "r"))
  with run.lock(slot=0), run.lock(slot=1):
    assert os.path.exists(runlock.lock_path(run.path, 1))
    assert run.lock_holder(1) is not None


STEPS = 3000  # long enough for a second trainer to start beside the first, also on a fast, idle machine
ARGS = [*helpers.tiny_flags("50K"), f"--config.train.steps={STEPS}", "--config.checkpoint.every=500",
        "--config.train.eval_every=1000", "--config.train.log_every=10"]


def test_defect_two_trainers_on_one_workdir_both_exit_0(tmp_path):
  """A second trainer started beside a live one exits 2 at once naming it; the first is never disturbed: its
  metrics increase strictly and its final parameters equal an unbroken run's."""
  shared, ref = str(tmp_path / "shared"), str(tmp_path / "ref")
  first = subprocess.Popen([sys.executable, "-m", "scaling.train", *ARGS, f"--workdir={shared}"], cwd=helpers.REPO,
                           env=helpers.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while time.time() < deadline and first.poll() is None:
    try:
      if rundir.RunDir(shared).read_status()["state"] == "running":
        break
    except (TypeError, rundir.RunDirError):
      pass
    time.sleep(0.02)
  assert first.poll() is None, "the first run ended before the second started; make ARGS longer"
  second = helpers.run_train([*ARGS, f"--workdir={shared}"])
  lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
  assert second.returncode == 2 and len(lines) == 1, second.stderr[-2000:]
  assert f"is in use by pid {first.pid} on " in lines[0]
  assert first.poll() is None, "the refused trainer disturbed the first"
  _, err = first.communicate(timeout=300)
  assert first.returncode == 0, err[-2000:]
  steps = [r["step"] for r in helpers.read_jsonl(os.path.join(shared, "metrics.jsonl"))]
  assert steps == sorted(set(steps)) and steps[-1] == STEPS
  assert helpers.run_train([*ARGS, f"--workdir={ref}"]).returncode == 0
  with open(os.path.join(ref, "metrics.jsonl"), "rb") as a, open(os.path.join(shared, "metrics.jsonl"), "rb") as b:
    assert a.read() == b.read()
  for x, y in zip(_final_params(ref, STEPS), _final_params(shared, STEPS), strict=True):
    np.testing.assert_array_equal(x, y)


def test_lock_dies_with_a_sigkilled_holder(tmp_path):
  run = rundir.RunDir(str(tmp_path / "r"))
  with harness.lock_held_elsewhere(run.path) as pid:
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 10
    while run.lock_holder() is not None and time.time() < deadline:
      time.sleep(0.02)
    with run.lock(wait_s=0.1):
      assert run.lock_holder()["pid"] == os.getpid()
