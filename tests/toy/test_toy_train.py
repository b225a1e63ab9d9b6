"""The toy trainer (scaling/toy/train.py): run-dir contract, members vs separate runs, resume, config errors."""

import json
import os

import numpy as np
import pytest
from ml_collections import config_dict

from configs import toy as toy_configs
from scaling.core import rundir
from scaling.core.errors import ConfigError
from scaling.toy import config as toy_config
from scaling.toy import train as toy_train
from tests.helpers import set_keys


def tiny(**over):
  """K=4 tasks, r=4 (d=16), width 4: a step costs well under a millisecond."""
  c = toy_configs.get_config("width=4")
  c.toy.K, c.toy.r = 4, 4
  c.toy.betas, c.toy.seeds = (1.0, 2.0), (0,)
  c.train.steps, c.train.batch_size, c.train.warmup_steps = 40, 32, 5
  c.train.log_every, c.train.eval_every, c.train.retention_every, c.train.steps_per_call = 10, 20, 20, 10
  c.checkpoint.every = 20
  return set_keys(c, over)


def _floats(records):
  return [{k: v for k, v in r.items() if isinstance(v, float)} for r in records]


def test_run_dir_contract(tmp_path):
  w = str(tmp_path / "N4")
  result = toy_train.train(tiny(), w, progress=False)
  assert result["state"] == "done" and result["step"] == 40
  # The program dir: status for the launcher, no config.json (analysis finds runs by their config.json).
  top = rundir.RunDir(w)
  assert top.read_status()["state"] == "done" and not rundir.is_run_dir(w)
  found = sorted(root for root, _, files in os.walk(w) if rundir.CONFIG_FILE in files)
  assert [os.path.basename(f) for f in found] == ["beta=1.0_seed=0", "beta=2.0_seed=0"]
  for name, beta in (("beta=1.0_seed=0", 1.0), ("beta=2.0_seed=0", 2.0)):
    run = rundir.RunDir(os.path.join(w, name))
    cfg = run.read_config()
    assert cfg["experiment"] == "toy"
    assert cfg["config"]["toy"]["beta"] == beta and cfg["config"]["seed"] == 0
    assert cfg["config"]["toy"]["betas"] == [] and cfg["config"]["toy"]["seeds"] == []
    s = cfg["summary"]
    assert s["width"] == 4 and s["seed"] == 0 and s["n_params"] == s["n_params_non_embedding"] == 16 * 4 + 16 * 4
    assert (s["total_steps"], s["batch_size"], s["seq_len"], s["tokens_per_step"]) == (40, 32, 1, 32)
    assert sorted(s["tasks"]) == ["t01", "t02", "t03", "t04"]
    t4 = s["tasks"]["t04"]
    assert t4["schedule"] == "random" and t4["period"] == 1 and t4["frequency_per_batch"] == pytest.approx(32 * t4["pi"])
    assert run.read_status()["state"] == "done"
    metrics = run.read_metrics()
    assert [r["step"] for r in metrics] == [0, 10, 20, 30, 40]
    assert [r["tokens"] for r in metrics] == [0, 320, 640, 960, 1280]
    last = metrics[-1]
    for key in ("train/loss", "train/grad_norm", "train/lr", "toy/delta_F", "toy/grad_F_norm", "toy/cos_rF",
                "toy/loss", "toy/signal_frequent", "toy/signal_rare", "data/t01/count"):
      assert key in last, key
    for t in ("t01", "t04"):
      for m in ("loss_norm", "signal", "signal_norm"):
        assert np.isfinite(last[f"toy/{t}/{m}"])
    assert sum(last[f"data/t0{k}/count"] for k in range(1, 5)) == 40 * 32
    assert "toy/delta_F" in metrics[0] and "train/loss" not in metrics[0]  # step 0: evaluation only
    ret = run.read_metrics(toy_train.RETENTION_FILE)
    assert [r["step"] for r in ret] == [20, 40] and np.asarray(ret[-1]["retention"]).shape == (4, 4)
    theory = json.load(open(run.file(toy_config.THEORY_FILE)))
    assert theory["beta"] == beta and theory["width"] == 4 and len(theory["optimal_loss_norm"]) == 4
    assert np.asarray(theory["top_features"]).sum() == 4
    assert all(rundir.split_metric_key(k) for k in last if k not in ("step", "tokens"))


def test_members_equal_separate_runs_and_member_configs_rerun_alone(tmp_path):
  """One program of 4 members = 4 single-member runs (float tolerance); a member's config.json reruns it."""
  c = tiny(**{"toy.betas": (1.0, 2.0), "toy.seeds": (0, 3), "train.steps": 30, "train.eval_every": 10})
  toy_train.train(c, str(tmp_path / "all"), progress=False)
  for name in ("beta=1.0_seed=3", "beta=2.0_seed=0"):
    member = rundir.RunDir(str(tmp_path / "all" / name))
    alone = config_dict.ConfigDict(member.read_config()["config"])
    toy_train.train(alone, str(tmp_path / name), progress=False)
    got = _floats(member.read_metrics())
    want = _floats(rundir.RunDir(str(tmp_path / name / name)).read_metrics())
    assert len(got) == len(want) == 4
    for a, b in zip(got, want):
      assert a.keys() == b.keys()
      np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(a)], rtol=2e-4, atol=1e-6)


def test_resume_continues_exactly(tmp_path):
  c = tiny()
  toy_train.train(c, str(tmp_path / "unbroken"), progress=False)
  r = toy_train.train(c, str(tmp_path / "broken"), progress=False, stop_after=15)
  assert r.get("interrupted") and r["step"] == 20  # stops at the next segment end (a checkpoint)
  assert rundir.RunDir(str(tmp_path / "broken")).read_status()["state"] == "failed"
  toy_train.train(c, str(tmp_path / "broken"), progress=False)
  for name in ("beta=1.0_seed=0", "beta=2.0_seed=0"):
    for f in (rundir.METRICS_FILE, toy_train.RETENTION_FILE):
      a = rundir.RunDir(str(tmp_path / "unbroken" / name)).read_metrics(f)
      b = rundir.RunDir(str(tmp_path / "broken" / name)).read_metrics(f)
      assert a == b, (name, f)
  again = toy_train.train(c, str(tmp_path / "broken"), progress=False)
  assert again["state"] == "done"  # nothing left to do
  c.toy.alpha = 1.0
  with pytest.raises(ConfigError, match="different config"):
    toy_train.train(c, str(tmp_path / "broken"), progress=False)


@pytest.mark.parametrize("flags,match", [
    (["--config.toy.width=17"], "toy.width=17"),
    (["--config.toy.alphas=(1.0, 2.0)"], "toy.alphas has 2 values"),
    (["--config.toy.inject.task=4", "--config.toy.inject.period=3", "--config.toy.inject.frequency=0.5"],
     "whole number"),
    (["--config.toy.betas=(1.0, 1.0)"], "repeat"),
    (["--config.train.learning_rate=-1.0"], "train.learning_rate"),
    (["--config.toy.rare_tasks=(9,)"], "toy.rare_tasks"),
    (["--config.train.decoder_lr_ref_width=-1"], "train.decoder_lr_ref_width"),
])
def test_bad_config_is_one_clear_error_line(tmp_path, capsys, flags, match):
  argv = ["toy_train", "--config=configs/toy.py:width=4", "--config.toy.K=4", "--config.toy.r=4",
          f"--workdir={tmp_path}", "--noprogress", *flags]
  assert toy_train.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and "\n" not in err and match in err, err
  assert not os.listdir(tmp_path)  # nothing written


def test_unknown_preset_and_dry_run(capsys):
  assert toy_train.main(["toy_train", "--config=configs/toy.py:huge", "--dry_run"]) == 2
  assert "unknown preset 'huge'" in capsys.readouterr().err
  assert toy_train.main(["toy_train", "--config=configs/toy.py:width=8", "--dry_run"]) == 0
  out = capsys.readouterr().out
  assert "width=8" in out and "members     12" in out


def test_decoder_lr_shrinks_as_one_over_width_above_the_reference():
  c = toy_configs.get_config("width=512")
  assert c.train.decoder_lr_ref_width == 64 and toy_config.decoder_lr_factor(c) == 64 / 512
  c.toy.width = 32
  assert toy_config.decoder_lr_factor(c) == 1.0  # never above the base rate
  c.toy.width, c.train.decoder_lr_ref_width = 512, 0
  assert toy_config.decoder_lr_factor(c) == 1.0  # off
