"""Meshes, logical rules, and the sharded train step (4 fake CPU devices, set in conftest.py)."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from scaling.lm import config as configlib
from scaling.lm import sharding
from scaling.lm import step as step_lib
from scaling.lm.data import pipeline
from tests import helpers


def _one_step(config, devices):
  config = configlib.resolve(config)
  setup = step_lib.build(config, devices)
  state = setup.init()
  batch = next(pipeline.make_train_iterator(config))
  new_state, metrics = setup.train_step(state, setup.place_batch(batch))
  return setup, jax.device_get(new_state), jax.device_get(metrics)


@pytest.fixture(scope="module")
def reference_step():
  """One step on a single device, the baseline every preset must reproduce."""
  return _one_step(helpers.tiny_config("200K"), jax.devices()[:1])


@pytest.mark.parametrize("preset,mesh", [
    ("dp", dict(data=4, fsdp=1, tensor=1)),
    ("fsdp", dict(data=1, fsdp=4, tensor=1)),
    ("fsdp_tp", dict(data=1, fsdp=2, tensor=2)),
])
def test_sharded_step_equals_single_device(preset, mesh, reference_step):
  _, ref_state, ref_metrics = reference_step
  cfg = helpers.tiny_config("200K")  # d_model 64, 4 heads, d_ff 192: divisible by every mesh axis here
  cfg.sharding.preset = preset
  cfg.mesh.update(mesh)
  setup, state, metrics = _one_step(cfg, jax.devices()[:4])
  np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=1e-6)
  np.testing.assert_allclose(metrics["grad_norm"], ref_metrics["grad_norm"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(ref_state["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The parameters really are split the way the preset says (so the comparison above is not vacuous).
  specs = jax.tree.map(lambda s: s.spec, setup.state_shardings["params"])
  w_up = specs["blocks"]["mlp"]["w_up"]
  expected = {"dp": P(None, None, None), "fsdp": P(None, "fsdp", None), "fsdp_tp": P(None, "fsdp", "tensor")}
  assert w_up == expected[preset]
  if preset != "dp":
    assert setup.replicated_fraction < 0.05


def test_resolve_mesh_shape():
  assert sharding.resolve_mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == (4, 2, 1)
  assert sharding.resolve_mesh_shape({"data": 1, "fsdp": 1, "tensor": -1}, 4) == (1, 1, 4)
  for bad in ({"data": -1, "fsdp": -1, "tensor": 1}, {"data": 3, "fsdp": 1, "tensor": 1},
              {"data": -1, "fsdp": 3, "tensor": 1}, {"data": 0, "fsdp": 1, "tensor": 1}):
    with pytest.raises(sharding.ShardingError):
      sharding.resolve_mesh_shape(bad, 4)


def test_logical_to_spec_drops_axes_that_do_not_divide():
  mesh = sharding.make_mesh({"data": 1, "fsdp": 2, "tensor": 2}, jax.devices()[:4])
  rules = sharding.get_rules("fsdp_tp")
  assert sharding.logical_to_spec(("embed", "mlp"), (8, 6), rules, mesh) == P("fsdp", "tensor")
  assert sharding.logical_to_spec(("embed", "mlp"), (7, 6), rules, mesh) == P(None, "tensor")
  assert sharding.logical_to_spec(("act_batch", None), (4, 3), rules, mesh) == P("fsdp", None)
  # A mesh axis is used at most once per array.
  assert sharding.logical_to_spec(("embed", "embed"), (4, 4), rules, mesh) == P("fsdp", None)


def test_fsdp_check_fails_when_model_stays_replicated():
  """d_model=54 is not divisible by fsdp=4, so FSDP cannot shard the weights: fail loudly, naming the fix."""
  cfg = helpers.tiny_config()
  cfg.model.size = "custom"
  cfg.model.update(dict(d_model=54, n_layers=2, n_heads=3, d_ff=128))
  cfg.sharding.preset = "fsdp"
  cfg.mesh.update(dict(data=1, fsdp=4, tensor=1))
  with pytest.raises(sharding.ShardingError, match="replicated over fsdp=4"):
    step_lib.build(configlib.resolve(cfg), jax.devices()[:4])


def test_unknown_preset():
  with pytest.raises(sharding.ShardingError, match="unknown sharding preset"):
    sharding.get_rules("zero3")
