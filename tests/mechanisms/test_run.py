"""A small CPU run with a burst-scheduled task: retention and interference records, exact resume, probes CLI."""

import json
import os

import jax
import numpy as np
import pytest

from scaling.core import rundir
from scaling.lm import train
from scaling.mechanisms import probes
from tests import helpers

PERIOD, STEPS = 3, 24
INJECTIONS = list(range(0, STEPS + 1, PERIOD))  # batches 0, 3, ..., 24 (burst: every PERIOD-th batch)
INTERFERENCE = ("cos_g_gr", "cos_gt_gr", "cos_gnt_gr", "norm_g", "norm_gt", "norm_gnt", "norm_gr", "k")


def _config(steps=STEPS):
  c = helpers.tiny_config(steps=steps, schedule="constant", log_every=5, eval_every=10)
  c.data.tasks.cmp.frequency = 2 / PERIOD  # 2 instances every 3rd batch
  c.data.tasks.cmp.schedule = "burst"
  c.data.tasks.cmp.period = PERIOD
  c.data.task_eval_limit = 64
  c.data.task_train_probe = 0
  m = c.mechanisms
  m.interference_at_injections = True
  m.interference_task_instances = 128
  m.interference_top_k = 32
  m.probe_every = 10
  m.probe_contexts = 4
  m.retention_eval_limit = 64
  return c


def _train(config, workdir):
  result = train.train(config, workdir, devices=jax.devices()[:1], progress=False)
  assert result["state"] == "done", result


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("burst"))
  _train(_config(), workdir)
  return workdir


def test_burst_run_logs_retention_and_interference_at_injections(run_dir):
  recs = {r["step"]: r for r in rundir.RunDir(run_dir).read_metrics()}
  for i in INJECTIONS[1:]:  # batch 0 would be measured at step 0, before any update: no hook runs there
    r = recs[i]
    for key in INTERFERENCE:
      assert f"interference/cmp/{key}" in r, (i, key)
    assert r["interference/cmp/k"] == 32 and r["interference/cmp/norm_gt"] > 0
    assert -1 <= r["interference/cmp/cos_g_gr"] <= 1
    assert r["interference/cmp/norm_g"] <= r["interference/cmp/norm_gt"] + r["interference/cmp/norm_gnt"] + 1e-6
    assert r["retention/cmp/loss_end"] == r["retention/cmp/loss_before"]  # the same parameters
    after = recs[i - PERIOD + 1]
    assert r["retention/cmp/decay"] == r["retention/cmp/loss_end"] - after["retention/cmp/loss_after"]
  for i in INJECTIONS[:-1]:
    r = recs[i + 1]
    assert "retention/cmp/loss_after" in r and not any(k.startswith("interference/") for k in r)
    if i > 0:
      assert r["retention/cmp/gain"] == recs[i]["retention/cmp/loss_before"] - r["retention/cmp/loss_after"]
  assert "retention/cmp/gain" not in recs[1]  # nothing was measured before the first update
  # No measurement between injections; the trainer's own records are untouched.
  assert set(recs) == {0, 1, 5, 10, 15, 20} | set(INJECTIONS[1:]) | {i + 1 for i in INJECTIONS[:-1]}
  assert not any(k.startswith(("retention/", "interference/")) for k in recs[5])
  assert "train/loss" in recs[5] and "eval/cmp/loss" in recs[10]
  for s in (10, 20):
    assert -1 < recs[s]["probe/cmp/order_r2"] < 1 and "probe/cmp/order_r2_l2" in recs[s]


def test_resume_mid_window_writes_identical_metrics(run_dir, tmp_path):
  workdir = str(tmp_path / "split")
  _train(_config(steps=10), workdir)  # stops at step 10: injection 9's loss_after is carried to step 12
  _train(_config(), workdir)
  with open(os.path.join(run_dir, "metrics.jsonl"), "rb") as a, open(os.path.join(workdir, "metrics.jsonl"),
                                                                      "rb") as b:
    assert a.read() == b.read()


def test_probes_cli_on_a_checkpoint(run_dir, tmp_path, capsys):
  assert probes.main(["--workdir", run_dir, "--step", "20"]) == 0
  got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  logged = {r["step"]: r for r in rundir.RunDir(run_dir).read_metrics()}[20]
  assert got["step"] == 20
  keys = [k for k in logged if k.startswith("probe/")]
  assert keys and sorted(keys) == sorted(k for k in got if k != "step")
  for k in keys:
    np.testing.assert_allclose(got[k], logged[k], rtol=1e-6, atol=1e-9)

  for argv, needle in ((["--workdir", str(tmp_path / "nope")], "config.json: missing"),
                       (["--workdir", run_dir, "--step", "7"], "--step 7 has no checkpoint")):
    assert probes.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
