"""The trainer: golden first steps, gradient accumulation, NaN handling, config errors, run-dir, dry run."""

import math
import os

import jax
import numpy as np
import pytest

from scaling.core import rundir
from scaling.lm import config as configlib
from scaling.lm import step as step_lib
from scaling.lm import train
from scaling.lm.data import pipeline
from tests import helpers


def _steps(config, n, devices=None):
  config = configlib.resolve(config)
  setup = step_lib.build(config, devices or jax.devices()[:1])
  state, it, out = setup.init(), pipeline.make_train_iterator(config), []
  for _ in range(n):
    state, m = setup.train_step(state, setup.place_batch(next(it)))
    out.append({k: float(v) for k, v in jax.device_get(m).items()})
  return jax.device_get(state), out


# Golden values for helpers.tiny_config() (50K model, vocab 128, batch 8 x 32, lr 3e-3, warmup 2), 1 CPU device.
# Updating them is legitimate ONLY when a change is meant to alter the numerics (model init or architecture,
# synthetic-data generation, optimizer defaults) or a JAX/XLA upgrade moves float32 results; say which in the
# commit message. A refactor that moves these numbers has changed behaviour.
GOLDEN = [  # (loss, grad_norm, lr) after steps 1, 2, 3
    (4.873814105987549, 1.7734150886535645, 0.0),
    (4.853477478027344, 1.9342293739318848, 0.0015),
    (4.847784519195557, 2.0039877891540527, 0.003),
]
GOLDEN_PARAM_ABS_SUM = 1525.90283203125


def test_golden_first_steps():
  state, metrics = _steps(helpers.tiny_config(), 3)
  # Independent sanity anchor: at init (std 0.02 weights) logits are ~0, so the loss is ~log(vocab).
  assert abs(metrics[0]["loss"] - math.log(128)) < 0.05
  for got, (loss, gnorm, lr) in zip(metrics, GOLDEN):
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(got["grad_norm"], gnorm, rtol=1e-4)
    np.testing.assert_allclose(got["lr"], lr, rtol=1e-6)
  param_sum = sum(float(np.abs(x).sum()) for x in jax.tree.leaves(state["params"]))
  np.testing.assert_allclose(param_sum, GOLDEN_PARAM_ABS_SUM, rtol=1e-5)


def test_grad_accumulation_matches_full_batch():
  # eps=1 makes Adam's update ~lr·m (linear in the gradient) instead of ~lr·sign(g), which would turn rounding
  # noise in near-zero gradient entries into full-size updates; so parameters compare the gradients themselves.
  full_state, full = _steps(helpers.tiny_config(warmup_steps=0, eps=1.0), 2)
  acc_state, acc = _steps(helpers.tiny_config(warmup_steps=0, eps=1.0, grad_accum=4), 2)
  for a, b in zip(full, acc):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(full_state["params"]), jax.tree.leaves(acc_state["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_train_writes_run_dir_contract(tmp_path):
  cfg = helpers.tiny_config(steps=10, eval_every=5)
  result = train.train(cfg, str(tmp_path), devices=jax.devices()[:1], progress=False)
  assert result["state"] == "done"
  run = rundir.RunDir(str(tmp_path))
  meta = run.read_config()
  assert meta["experiment"] == "lm" and meta["summary"]["total_steps"] == 10
  assert meta["summary"]["tokens_per_step"] == 8 * 32
  assert meta["config"]["model"]["d_model"] == 48  # resolved from the ladder
  records = run.read_metrics()
  assert [r["step"] for r in records] == [0, 5, 10]
  assert records[-1]["tokens"] == 10 * 8 * 32
  assert records[-1]["eval/background/n"] == 32 * 32
  assert records[-1]["eval/background/loss"] < records[0]["eval/background/loss"]
  assert run.read_status()["state"] == "done"
  perf = run.read_metrics(rundir.PERF_FILE)
  assert perf and perf[-1]["tokens_per_s"] > 0
  # A finished run exits at once, with a message, and does not touch its files.
  before = open(run.file(rundir.METRICS_FILE)).read()
  again = train.train(cfg, str(tmp_path), devices=jax.devices()[:1], progress=False)
  assert again["state"] == "done" and open(run.file(rundir.METRICS_FILE)).read() == before


def test_nan_loss_stops_and_records_step(tmp_path):
  cfg = helpers.tiny_config(steps=30, learning_rate=1e30, warmup_steps=0, grad_clip=0.0)
  result = train.train(cfg, str(tmp_path), devices=jax.devices()[:1], progress=False)
  assert result["state"] == "failed"
  status = rundir.RunDir(str(tmp_path)).read_status()
  assert status["state"] == "failed" and "non-finite training loss at step" in status["reason"]
  assert 1 < status["step"] <= 30
  # No checkpoint of a diverged state is written.
  assert all(int(s) < status["step"] for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())


def test_resume_refuses_a_different_config(tmp_path):
  train.train(helpers.tiny_config(steps=5), str(tmp_path), devices=jax.devices()[:1], progress=False)
  other = helpers.tiny_config(steps=5, learning_rate=1e-3)
  with pytest.raises(configlib.ConfigError, match="train.learning_rate"):
    train.train(other, str(tmp_path), devices=jax.devices()[:1], progress=False)


# ----------------------------------------------------------------------------------------------------------------
# Bad configs: one clear line, exit code 2, before any compute, nothing written.
# ----------------------------------------------------------------------------------------------------------------
BAD_CONFIGS = [
    (["--config.model.size=3M"], "unknown model size '3M'"),
    (["--config.model.n_heads=5"], "not divisible by model.n_heads=5"),
    (["--config.mesh.data=3"], "has 3 devices but 4 are available"),  # conftest gives 4 fake devices
    (["--config.train.batch_size=6", "--config.mesh.data=4"], "not divisible by the data-parallel size"),
    (["--config.train.steps=-5"], "train.steps=-5 must be positive"),
    (["--config.train.learning_rate=0"], "train.learning_rate=0"),
    (["--config.train.warmup_steps=500", "--config.train.steps=100"], "exceeds train.steps=100"),
    (["--config.train.schedule=linear"], "train.schedule='linear'"),
    (["--config.sharding.preset=zero3"], "sharding.preset='zero3'"),
    (["--config.model.dtype=float8"], "model.dtype='float8'"),
    (["--config.train.grad_accum=3"], "not divisible by train.grad_accum=3"),
    (["--config.data.source=wikipedia"], "data.source='wikipedia'"),
    (["--config.model.vocab_size=64"], "smaller than data.vocab_size"),
    (["--config.checkpoint.every=0"], "checkpoint.every=0"),
    (["--config.train.b2=1.5"], "must lie in [0, 1)"),
    (["--config.model.norm_style=post"], "model.norm_style='post'"),
    (["--config.train.no_such_key=1"], "no_such_key"),
]


@pytest.mark.parametrize("extra,message", BAD_CONFIGS)
def test_bad_config_one_line_error(extra, message, tmp_path, capsys):
  workdir = tmp_path / "run"
  code = train.main(["train", *helpers.TINY_FLAGS, "--config.train.steps=100", f"--workdir={workdir}", *extra])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2
  assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
  assert not workdir.exists()


def test_batch_not_divisible_by_data_axes():
  cfg = configlib.resolve(helpers.tiny_config(batch_size=6))
  cfg.unlock()
  cfg.mesh.data = 4
  with pytest.raises(configlib.ConfigError, match="not divisible by the data-parallel size data\\*fsdp=4"):
    configlib.validate(cfg, n_devices=4)


def test_cli_bad_config_in_subprocess(tmp_path):
  """The real command line: one stderr line, exit 2, no traceback."""
  proc = helpers.run_train([*helpers.TINY_FLAGS, "--config.model.size=7M", f"--workdir={tmp_path}/w"])
  assert proc.returncode == 2
  lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
  assert lines == ["error: unknown model size '7M'; choose one of " + ", ".join(
      __import__("scaling.lm.ladder", fromlist=["LADDER"]).LADDER) +
      " (scaling/lm/ladder.py) or set model.size='custom' with explicit dims"]


def test_dry_run_4b_without_allocating():
  """--dry_run for the paper's 4B model: exact counts, tokens, FLOPs, mesh; no allocation (runs in a small
  subprocess; 4B fp32 parameters alone would be 16 GB)."""
  import resource
  proc = helpers.run_train(["--config=configs/lm.py:size=4B", "--config.data.vocab_size=50304",
                            "--config.data.seq_len=2048", "--dry_run"], n_devices=8)
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = proc.stdout
  from scaling.lm import ladder
  from scaling.lm import model as transformer
  shape = ladder.model_shape("4B")
  counts = transformer.param_counts(transformer.TransformerConfig(
      vocab_size=50304, d_model=shape.d_model, n_layers=shape.n_layers, n_heads=shape.n_heads, d_ff=shape.d_ff))
  assert f"total={counts['total']:,}" in out and f"non_embedding={counts['non_embedding']:,}" in out
  assert "mesh        data=8 fsdp=1 tensor=1 (8 devices" in out
  assert "flops/token=" in out and "tokens=" in out and "per_device=" in out
  peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
  assert peak_mib < 4096, f"dry run used {peak_mib:.0f} MiB: something was allocated"
