"""The per-device memory plan (scaling/lm/memory.py), the paper preset, and --dry_run's table and one-line errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import lm
from scaling.lm import config as configlib
from scaling.lm import memory, sharding
from scaling.lm import step as step_lib
from scaling.lm import train as train_command


def _paper(size="1B", **train):
  c = lm.get_config(f"size={size},preset=paper")
  c.train.update(train)
  return configlib.resolve(c)


def test_paper_preset_is_the_papers_regime_and_stays_overridable():
  c = _paper()
  assert (c.data.seq_len, c.model.dtype, c.model.param_dtype, c.sharding.preset) == (4096, "bfloat16", "float32",
                                                                                        "fsdp")
  assert c.data.vocab_size > 50_000 and c.model.remat != "none" and c.train.z_loss > 0
  assert (c.mesh.data, c.mesh.fsdp) == (1, -1) and c.train.batch_size * c.data.seq_len == 1024 * 4096
  c2 = lm.get_config("size=1B,preset=paper")
  c2.data.seq_len = 2048  # still a plain config value
  assert configlib.resolve(c2).data.seq_len == 2048
  with pytest.raises(ValueError, match="preset='tiny' is not one of"):
    lm.get_config("preset=tiny")


def test_parameter_bytes_per_device_match_the_real_shardings():
  """The analytic plan on an abstract mesh equals what jax's NamedShardings put on each of 4 real devices."""
  c = lm.get_config("size=1M")
  c.data.vocab_size, c.sharding.preset, c.mesh.data, c.mesh.fsdp = 1024, "fsdp", 1, -1
  c = configlib.resolve(c)
  devices = jax.devices()[:4]
  mesh = sharding.make_mesh(c.mesh, devices)
  _, abs_params, names = step_lib.abstract_model(configlib.model_config(c))
  shs = sharding.param_shardings(abs_params, names, sharding.get_rules("fsdp"), mesh)
  real = sum(np.prod(s.shard_shape(a.shape)) * a.dtype.itemsize
             for a, s in zip(jax.tree.leaves(abs_params), jax.tree.leaves(shs)))
  plan = memory.plan(c, 4)
  assert plan.params == real and plan.optimizer == 2 * real and plan.grads == real
  total = sum(np.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(abs_params))
  assert real < total / 3  # really sharded (norm scales stay replicated)
  assert memory.plan(c, 1).params == total and memory.plan(c, 1).gathered == 0


def _compiled_1m_step(remat: str, vocab: int):
  """(resolved config, XLA's memory analysis of its compiled train step): 1M, 8 x 256 tokens, one device."""
  c = lm.get_config("size=1M")
  c.data.vocab_size, c.data.seq_len, c.model.remat, c.mesh.data = vocab, 256, remat, 1
  c.train.update(dict(batch_size=8, steps=10, learning_rate=1e-3, warmup_steps=1))
  c = configlib.resolve(c)
  setup = step_lib.build(c, jax.devices()[:1])
  batch = {k: jax.ShapeDtypeStruct((8, 256), jnp.float32 if k == "weights" else jnp.int32,
                                   sharding=setup.batch_sharding) for k in ("inputs", "targets", "weights")}
  return c, setup.train_step.lower(setup.abstract_state, batch).compile().memory_analysis()


@pytest.mark.parametrize("remat", ["none", "full"])
def test_step_memory_estimate_is_close_to_xlas_own_analysis(remat):
  """float32 on CPU, where XLA keeps the dtypes it is given: the estimate is meant to lie within 35% of the
  compiled program's argument + temporary + output bytes (it ignores XLA's fusions, so it errs high)."""
  c, ma = _compiled_1m_step(remat, vocab=2048)
  xla = ma.argument_size_in_bytes + ma.temp_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes
  assert 0.75 < memory.plan(c, 1).total / xla < 1.35


def test_remat_full_cuts_the_compiled_steps_memory():
  """Regression: with the layers unrolled XLA:CPU kept every activation despite model.remat='full'; "auto" now
  scans remat models, and the compiled step's temporaries shrink."""
  temps = {remat: _compiled_1m_step(remat, vocab=256)[1].temp_size_in_bytes for remat in ("none", "full")}
  assert temps["full"] < 0.5 * temps["none"], temps


def _dry(capsys, *flags):
  rc = train_command.main(["scaling.train", "--config=configs/lm.py:size=1B,preset=paper", "--workdir=/nonexistent",
                           "--dry_run", *flags])
  out = capsys.readouterr()
  return rc, out.out, out.err.strip().splitlines()


def test_dry_run_prints_the_memory_plan_for_planned_devices(capsys):
  rc, out, _ = _dry(capsys, "--config.memory.plan_devices=64", "--config.memory.device_gib=80",
                    "--config.train.grad_accum=2")
  assert rc == 0
  assert "data=1 fsdp=64 tensor=1 (64 devices" in out and "per_device=16" in out and "microbatch=8" in out
  assert "params=0.09 grads=0.17 optimizer=0.17" in out and "(remat=full)" in out
  assert "largest microbatch that fits 80 GiB:" in out and "planned for 64 devices" in out


@pytest.mark.parametrize("flags,message", [
    (["--config.memory.plan_devices=48", "--config.train.batch_size=1000"],
     "train.batch_size=1000 is not divisible by the data-parallel size data*fsdp=48"),
    (["--config.memory.plan_devices=8", "--config.memory.device_gib=80"],
     "a microbatch of 128 sequences x 4096 tokens needs"),
    (["--config.memory.plan_devices=8", "--config.memory.device_gib=4"],
     "needs {fixed:.1f} GiB per device for parameters, gradients and optimizer state on 8 devices (fsdp=8)"),
])
def test_dry_run_bad_combination_is_one_line(capsys, flags, message):
  message = message.format(fixed=memory.plan(_paper(), 8).fixed / memory.GIB)
  rc, _, err = _dry(capsys, *flags)
  assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
  if "microbatch of" in message:
    plan = memory.plan(_paper(), 8, 80 * memory.GIB)
    fits = plan.max_microbatch
    accum = memory.min_grad_accum(128, fits)
    assert 0 < fits < 128 and accum > 1  # not vacuous: the paper batch does not fit one microbatch
    assert f"set train.grad_accum={accum} (largest microbatch that fits: {fits} sequences)" in err[0]
