"""`train_steps` (K steps in one call, one lax.scan) is bit-identical to K calls of `train_step`."""

import jax
import numpy as np
import pytest

from scaling.core import checkpoint as ckpt_lib
from scaling.core import errors, rundir
from scaling.lm import config as configlib
from scaling.lm import step as step_lib
from scaling.lm import train
from scaling.lm.data import pipeline
from tests import helpers

K = 3


def _both(config, devices):
  """(state, per-step metrics) after K single steps and after one K-step call, from the same init and data."""
  config = configlib.resolve(config)
  setup = step_lib.build(config, devices)
  it = pipeline.make_train_iterator(config)
  batches = [next(it) for _ in range(K)]
  state, singles = setup.init(), []
  for b in batches:
    state, m = setup.train_step(state, setup.place_batch(b))
    singles.append(jax.device_get(m))
  many_state, many = setup.train_steps(setup.init(), setup.place_batches(batches))
  return jax.device_get(state), singles, jax.device_get(many_state), jax.device_get(many)


@pytest.mark.parametrize("case", ["scan_layers", "unrolled", "grad_accum", "dp4", "fsdp_tp"])
def test_train_steps_bit_identical_to_single_steps(case):
  cfg = helpers.tiny_config("200K", grad_accum=2 if case == "grad_accum" else 1)
  cfg.model.scan_layers = "unroll" if case == "unrolled" else "scan"
  devices = jax.devices()[:1]
  if case in ("dp4", "fsdp_tp"):
    cfg.mesh.update(dict(data=4, fsdp=1, tensor=1) if case == "dp4" else dict(data=1, fsdp=2, tensor=2))
    cfg.sharding.preset = "dp" if case == "dp4" else "fsdp_tp"
    devices = jax.devices()[:4]
  state, singles, many_state, many = _both(cfg, devices)
  assert set(many) == set(singles[0])
  for key, stacked in many.items():
    assert stacked.shape == (K,), key
    np.testing.assert_array_equal(stacked, np.array([m[key] for m in singles]), err_msg=key)
  for a, b in zip(jax.tree.leaves(many_state), jax.tree.leaves(state), strict=True):
    np.testing.assert_array_equal(a, b)
  assert int(many_state["step"]) == K
  # Not vacuous: the steps moved the parameters and the loss changed from step to step.
  assert len(set(many["loss"].tolist())) == K


def test_place_batches_shards_the_batch_axis():
  cfg = helpers.tiny_config("200K")
  cfg.mesh.update(dict(data=4, fsdp=1, tensor=1))
  setup = step_lib.build(configlib.resolve(cfg), jax.devices()[:4])
  it = pipeline.make_train_iterator(configlib.resolve(cfg))
  placed = setup.place_batches([next(it) for _ in range(K)])
  inputs = placed["inputs"]
  assert inputs.shape == (K, 8, 32)
  assert {s.data.shape for s in inputs.addressable_shards} == {(K, 2, 32)}


def test_trainer_with_steps_per_call_gives_the_same_run(tmp_path):
  """The trainer with K-step calls (segments cut at evals, logs and checkpoints fall back to single steps) writes
  the same metrics and the same final parameters as one step per call."""
  runs = {}
  for k in (1, 4):
    cfg = helpers.tiny_config(steps=22, eval_every=10, log_every=5, steps_per_call=k)
    cfg.checkpoint.every = 7
    workdir = tmp_path / f"k{k}"
    assert train.train(cfg, str(workdir), devices=jax.devices()[:1], progress=False)["state"] == "done"
    run = rundir.RunDir(str(workdir))
    step, state = ckpt_lib.Checkpointer(run.checkpoint_dir, 7, 3).restore_latest(
        step_lib.build(configlib.resolve(cfg), jax.devices()[:1]).abstract_state)[:2]
    runs[k] = ([{key: v for key, v in r.items() if not key.startswith("perf")} for r in run.read_metrics()],
               jax.device_get(state["params"]), step)
  assert runs[4][2] == runs[1][2] == 22
  assert runs[4][0] == runs[1][0] and len(runs[1][0]) > 3
  for a, b in zip(jax.tree.leaves(runs[4][1]), jax.tree.leaves(runs[1][1]), strict=True):
    np.testing.assert_array_equal(a, b)


def test_steps_per_call_must_be_positive():
  cfg = helpers.tiny_config(steps_per_call=0)
  with pytest.raises(errors.ConfigError, match="train.steps_per_call"):
    configlib.validate(configlib.resolve(cfg), 1, 1)
