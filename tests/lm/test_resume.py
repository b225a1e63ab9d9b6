"""Exact resume: SIGKILL mid-run and restart == unbroken run; a corrupt latest checkpoint falls back."""

import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from scaling.core import rundir
from scaling.lm import train
from tests import helpers

ARGS = [*helpers.tiny_flags("200K"), "--config.train.steps=300",
        "--config.checkpoint.every=50", "--config.train.eval_every=100", "--config.train.log_every=10"]


def _final_params(workdir, step):
  restored = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
  return jax.tree.leaves(restored["params"])


def test_sigkill_and_restart_is_bit_identical(tmp_path):
  ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
  done = helpers.run_train([*ARGS, f"--workdir={ref}"])
  assert done.returncode == 0, done.stderr[-3000:]

  proc = subprocess.Popen([sys.executable, "-m", "scaling.train", *ARGS, f"--workdir={killed}"], cwd=helpers.REPO,
                          env=helpers.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  # Kill once a checkpoint past the first has been committed (orbax renames a finished step to its number).
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(os.path.join(killed, "checkpoints", "100")):
      break
    time.sleep(0.01)
  assert proc.poll() is None, "the run finished before it could be killed; make ARGS longer"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  status = rundir.RunDir(killed).read_status()
  assert status["state"] == "running" and status["step"] < 300  # really killed mid-run

  resumed = helpers.run_train([*ARGS, f"--workdir={killed}"])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from step" in resumed.stderr
  with open(os.path.join(ref, "metrics.jsonl"), "rb") as a, open(os.path.join(killed, "metrics.jsonl"), "rb") as b:
    assert a.read() == b.read()
  for x, y in zip(_final_params(ref, 300), _final_params(killed, 300), strict=True):
    np.testing.assert_array_equal(x, y)


def test_corrupt_latest_checkpoint_falls_back(tmp_path, caplog):
  workdir = str(tmp_path / "run")
  cfg = helpers.tiny_config(steps=30)
  assert train.train(cfg, workdir, devices=jax.devices()[:1], progress=False)["state"] == "done"
  with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
    reference = f.read()
  # Simulate a crash right after the last save: the newest checkpoint is truncated, the run not marked done.
  files = [p for p in glob.glob(os.path.join(workdir, "checkpoints", "30", "state", "**"), recursive=True)
           if os.path.isfile(p)]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.truncate(os.path.getsize(biggest) // 2)
  rundir.RunDir(workdir).write_status("running", 30, 30)

  with caplog.at_level(logging.WARNING, logger="scaling.core.checkpoint"):
    result = train.train(cfg, workdir, devices=jax.devices()[:1], progress=False)
  assert result["state"] == "done" and result["step"] == 30
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert any("checkpoint step 30 is unreadable" in w and "falling back" in w for w in warnings), warnings
  # The bad step is kept for inspection (nothing on disk is destroyed), and step 30 was rewritten from step 20.
  quarantined = os.path.join(workdir, "checkpoints", "corrupt-30-0")
  assert os.path.isdir(quarantined)
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "30"))
  with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
    assert f.read() == reference  # steps 21..30 recomputed bit-identically


def test_checkpoint_with_wrong_fingerprint_is_rejected(tmp_path, caplog):
  """Silent corruption (readable, wrong values) is caught by the fingerprint saved with each step."""
  workdir = str(tmp_path / "run")
  cfg = helpers.tiny_config(steps=20)
  train.train(cfg, workdir, devices=jax.devices()[:1], progress=False)
  fp_dir = os.path.join(workdir, "checkpoints", "20", "fingerprint")
  meta = os.path.join(fp_dir, "metadata")
  with open(meta) as f:
    fp = json.load(f)
  fp["leaves"] = [v * 1.5 + 1.0 for v in fp["leaves"]]
  with open(meta, "w") as f:
    json.dump(fp, f)
  rundir.RunDir(workdir).write_status("running", 20, 20)
  with caplog.at_level(logging.WARNING, logger="scaling.core.checkpoint"):
    train.train(cfg, workdir, devices=jax.devices()[:1], progress=False)
  assert any("do not match the fingerprint" in r.getMessage() for r in caplog.records)
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "corrupt-20-0"))


def test_interrupt_saves_checkpoint_and_resumes(tmp_path):
  """SIGTERM (SLURM preemption) stops at a step boundary with a checkpoint; the rerun finishes identically."""
  ref, stopped = str(tmp_path / "ref"), str(tmp_path / "stopped")
  assert helpers.run_train([*ARGS, f"--workdir={ref}"]).returncode == 0
  proc = subprocess.Popen([sys.executable, "-m", "scaling.train", *ARGS, f"--workdir={stopped}"],
                          cwd=helpers.REPO, env=helpers.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(os.path.join(stopped, "metrics.jsonl")) and os.path.getsize(
        os.path.join(stopped, "metrics.jsonl")) > 0 and os.path.isdir(os.path.join(stopped, "checkpoints", "50")):
      break
    time.sleep(0.01)
  assert proc.poll() is None, "the run finished before it could be stopped; make ARGS longer"
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err[-2000:]
  status = rundir.RunDir(stopped).read_status()
  assert status["state"] == "failed" and status["reason"].startswith("interrupted by SIGTERM")
  assert os.path.isdir(os.path.join(stopped, "checkpoints", str(status["step"])))
  assert helpers.run_train([*ARGS, f"--workdir={stopped}"]).returncode == 0
  with open(os.path.join(ref, "metrics.jsonl"), "rb") as a, open(os.path.join(stopped, "metrics.jsonl"), "rb") as b:
    assert a.read() == b.read()
  shutil.rmtree(tmp_path, ignore_errors=True)
