"""LoRA / DoRA adapters: definitions, merged = unmerged, trainable selection, and sharded steps (4 fake devices)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from configs import finetune
from scaling.core import optim
from scaling.core.errors import ConfigError
from scaling.lm import adapters, sharding, trainable
from scaling.lm import config as configlib
from scaling.lm import finetune_config as fc
from scaling.lm import model as transformer
from scaling.lm.data import pipeline
from tests import helpers

TINY = transformer.TransformerConfig(vocab_size=64, d_model=16, n_layers=2, n_heads=2, d_ff=24)


def _base(cfg=TINY, seed=0):
  return nnx.state(transformer.Transformer(cfg, nnx.Rngs(params=seed)), nnx.Param).to_pure_dict()


def _perturbed(adapter_params, seed=1):
  """Adapters with random B and magnitudes scaled by U(0.5, 1.5): every term of the merge is non-trivial."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(adapter_params)
  out = []
  for i, (path, a) in enumerate(leaves):
    key = jax.random.key(seed * 1000 + i)
    name = path[-1].key
    if name == "lora_b":
      a = 0.1 * jax.random.normal(key, a.shape)
    elif name == "magnitude":
      a = a * jax.random.uniform(key, a.shape, minval=0.5, maxval=1.5)
    out.append(a)
  return jax.tree_util.tree_unflatten(treedef, out)


def _plan(method, cfg=TINY, **spec):
  return trainable.plan(adapters.AdapterSpec(method=method, **spec), cfg)


def test_parse_targets():
  assert adapters.parse_targets("all") == ("q", "k", "v", "o", "gate", "up", "down")
  assert adapters.parse_targets("v,q") == ("q", "v")
  assert adapters.parse_targets(("mlp", "o")) == ("o", "gate", "up", "down")
  with pytest.raises(ConfigError, match="unknown target module 'wq'"):
    adapters.parse_targets("q,wq")


@pytest.mark.parametrize("size", ["1M", "10M"])
@pytest.mark.parametrize("method", ["lora", "dora"])
@pytest.mark.parametrize("targets", ["all", "q,v", "o,down"])
def test_trainable_count_is_exact(size, method, targets):
  """The abstract adapter tree's size equals the analytic L·r·(in+out) (+ L·out for DoRA) count."""
  c = configlib.resolve(finetune.get_config(f"size={size}"), experiment="finetune")
  mc = configlib.model_config(c)
  spec = adapters.AdapterSpec(method=method, rank=8, targets=adapters.parse_targets(targets))
  plan = trainable.plan(spec, mc)
  assert plan.n_trainable == adapters.param_count(spec, mc)
  assert plan.n_base == transformer.param_counts(mc)["total"]
  assert trainable.plan(dataclasses.replace(spec, method="full"), mc).n_trainable == plan.n_base
  assert trainable.plan(dataclasses.replace(spec, method="frozen"), mc).n_trainable == 0


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_zero_initialised_adapters_leave_outputs_unchanged(method):
  plan = _plan(method)
  base = _base()
  tr, fr = jax.jit(plan.start)(base)
  lora_b = [a for path, a in jax.tree_util.tree_leaves_with_path(tr) if path[-1].key == "lora_b"]
  assert len(lora_b) == len(adapters.TARGETS) and all(np.all(np.asarray(b) == 0) for b in lora_b)
  tokens = jax.random.randint(jax.random.key(0), (2, 12), 0, TINY.vocab_size)
  forward = jax.jit(lambda params: nnx.merge(plan.graphdef, params)(tokens))
  ref = forward(base)
  out = forward(plan.effective(tr, fr))
  if method == "lora":  # W + s·A·0 is W exactly
    np.testing.assert_array_equal(out, ref)
  else:  # W·(m/‖W‖) with m = ‖W‖: the ratio is exactly 1 when both norms reduce in the same order
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
  # ... and non-zero adapters do change them (the merge is really used).
  out2 = forward(plan.effective(_perturbed(tr), fr))
  assert np.max(np.abs(np.asarray(out2) - np.asarray(ref))) > 1e-3


@pytest.mark.parametrize("method", ["lora", "dora"])
@pytest.mark.parametrize("name", list(adapters.TARGETS))
def test_merged_weight_equals_unmerged_forward(method, name):
  """x·W' (merged) equals x·W + s·(x·A)·B, rescaled per output feature for DoRA, on every target."""
  spec = adapters.AdapterSpec(method=method, rank=4, alpha=8.0, targets=(name,))
  target = adapters.TARGETS[name]
  plan = trainable.plan(spec, TINY)
  base = _base()
  ad = _perturbed(plan.start(base)[0])
  w = adapters.get_path(base, target.path)
  a = adapters.get_path(ad, target.path)
  in_shape = w.shape[1:1 + target.n_in]
  x = jax.random.normal(jax.random.key(3), (w.shape[0], 2, 5, *in_shape))  # (layers, batch, len, *in)
  merged = adapters.merged_weight(w, a, spec, target.n_in)
  y_merged = jnp.stack([jnp.tensordot(x[l], merged[l], target.n_in) for l in range(w.shape[0])])
  y_unmerged = adapters.unmerged_apply(x, w, a, spec, target.n_in)
  assert y_merged.shape == (w.shape[0], 2, 5, *w.shape[1 + target.n_in:])
  np.testing.assert_allclose(y_unmerged, y_merged, rtol=2e-5, atol=2e-5)
  # The NNX module form gives the same (it holds only the adapter; W is passed in).
  module = adapters.WeightAdapter(w, adapters.get_path(plan.base_names, target.path), target, spec, nnx.Rngs(0))
  nnx.update(module, nnx.State(a))
  np.testing.assert_allclose(module(x, w), y_unmerged, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(module.merge(w), merged)


@pytest.mark.parametrize("name", ["q", "o", "down"])
def test_merged_weights_match_their_definitions(name):
  """LoRA: W + (alpha/r)·A·B. DoRA: m·V/‖V‖_col, V = W + (alpha/r)·A·B, the norm over inputs (one per output
  feature); the magnitude starts at ‖W‖_col. Checked in numpy on the flattened (in x out) matrices."""
  target = adapters.TARGETS[name]
  base = _base()
  w = np.asarray(adapters.get_path(base, target.path), np.float64)
  n_layers, in_shape, out_shape = w.shape[0], w.shape[1:1 + target.n_in], w.shape[1 + target.n_in:]
  w_LxIxO = w.reshape(n_layers, int(np.prod(in_shape)), int(np.prod(out_shape)))
  for method in ("lora", "dora"):
    spec = adapters.AdapterSpec(method=method, rank=3, alpha=6.0, targets=(name,))
    init = trainable.plan(spec, TINY).start(base)[0]
    a0 = adapters.get_path(init, target.path)
    if method == "dora":
      np.testing.assert_allclose(np.asarray(a0["magnitude"]).reshape(n_layers, -1),
                                 np.linalg.norm(w_LxIxO, axis=1), rtol=1e-6)
    ad = adapters.get_path(_perturbed(init), target.path)
    a_LxIxR = np.asarray(ad["lora_a"], np.float64).reshape(n_layers, -1, 3)
    b_LxRxO = np.asarray(ad["lora_b"], np.float64).reshape(n_layers, 3, -1)
    v = w_LxIxO + 2.0 * a_LxIxR @ b_LxRxO
    if method == "dora":
      m_Lx1xO = np.asarray(ad["magnitude"], np.float64).reshape(n_layers, 1, -1)
      v = m_Lx1xO * v / np.linalg.norm(v, axis=1, keepdims=True)
    got = adapters.merged_weight(adapters.get_path(base, target.path), ad, spec, target.n_in)
    np.testing.assert_allclose(np.asarray(got).reshape(v.shape), v, rtol=1e-5, atol=1e-6)


def test_dora_detach_norm_changes_gradients_not_outputs():
  spec = adapters.AdapterSpec(method="dora", rank=2, targets=("up",))
  base = _base()
  w = base["blocks"]["mlp"]["w_up"]
  ad = _perturbed(trainable.plan(spec, TINY).start(base)[0])["blocks"]["mlp"]["w_up"]
  off = dataclasses.replace(spec, detach_norm=False)
  np.testing.assert_array_equal(adapters.merged_weight(w, ad, spec, 1), adapters.merged_weight(w, ad, off, 1))
  grad = lambda s: jax.grad(lambda a: jnp.sum(jnp.sin(adapters.merged_weight(w, a, s, 1))))(ad)["lora_b"]
  assert np.max(np.abs(np.asarray(grad(spec) - grad(off)))) > 1e-6


def _tiny_config(size="50K"):
  c = helpers.tiny_config(size)
  c.data.tasks.cmp.frequency = 4.0
  return configlib.resolve(c)


def _step_fn(plan, tx, rules, mesh):
  """A minimal fine-tuning step from the library pieces: grads of the summed loss w.r.t. the trainable tree."""

  def step(tr, opt, fr, batch):
    with sharding.use_rules(rules, mesh):
      (_, (ce, w)), grads = jax.value_and_grad(plan.loss_sums, has_aux=True)(tr, fr, batch)
      grads = jax.tree.map(lambda g: g / jnp.maximum(w, 1.0), grads)
      updates, opt = tx.update(grads, opt, tr)
      return optax.apply_updates(tr, updates), opt, ce / w

  return jax.jit(step)


def _run(method, config, devices, preset="dp", mesh_shape=None, steps=2, **spec):
  mc = configlib.model_config(config)
  plan = trainable.plan(adapters.AdapterSpec(method=method, **spec), mc, seed=5)
  mesh = sharding.make_mesh(mesh_shape or {"data": 1, "fsdp": 1, "tensor": 1}, devices)
  rules = sharding.get_rules(preset)
  tr_sh, fr_sh = plan.shardings(rules, mesh)
  base_sh = sharding.param_shardings(plan.abstract_base, plan.base_names, rules, mesh)
  base = jax.device_put(_base(mc, seed=config.seed), base_sh)
  with jax.set_mesh(mesh):
    tr, fr = jax.jit(plan.start, out_shardings=(tr_sh, fr_sh))(base)
    tx = optim.make_optimizer(config.train)
    opt = jax.jit(tx.init)(tr)
    step = _step_fn(plan, tx, rules, mesh)
    it = pipeline.make_train_iterator(config)
    start = jax.device_get((tr, fr))
    for _ in range(steps):
      batch = {k: jax.device_put(v, sharding.batch_sharding(mesh, v.ndim)) for k, v in next(it).items()}
      tr, opt, loss = step(tr, opt, fr, batch)
      float(loss)  # sync every step (STACK.md trap 1)
  return plan, start, jax.device_get((tr, fr, opt)), (tr_sh, fr_sh)


@pytest.mark.parametrize("method", ["lora", "dora", "full", "frozen"])
def test_only_trainable_parameters_change(method):
  config = _tiny_config()
  config.unlock()
  config.train.weight_decay = 0.1  # decay would move untouched leaves too, if they were in the optimizer
  plan, (tr0, fr0), (tr, fr, opt), _ = _run(method, config, jax.devices()[:1], rank=4)
  base = fr0 if plan.spec.method != "full" else tr0
  jax.tree.map(np.testing.assert_array_equal, fr, fr0)  # the frozen tree is passed through untouched
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), tr, tr0)
  assert all(jax.tree.leaves(changed)), changed  # every trainable leaf moved (A too: B is non-zero after step 1)
  # On the effective parameter tree, exactly the wrapped weights (lora/dora), everything (full) or nothing moved.
  eff0, eff = plan.effective(tr0, fr0), plan.effective(tr, fr)
  wrapped = {adapters.TARGETS[t].path for t in plan.spec.targets} if plan.spec.adapted else set()
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(eff), jax.tree.leaves(eff0)):
    keys = tuple(k.key for k in path)
    moved = bool(np.any(np.asarray(a) != np.asarray(b)))
    expect = method == "full" or keys in wrapped
    assert moved == expect, (keys, moved)
  # Optimizer moments exist for the trainable leaves only.
  mu = [s.mu for s in jax.tree.leaves(opt, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)]
  assert trainable.count(mu) == plan.n_trainable
  # The reported mask agrees with what trained.
  ad0 = tr0 if plan.spec.adapted else {}
  mask = trainable.trainable_mask(plan.spec, base, ad0)
  sizes = jax.tree.map(lambda m, a: int(m) * a.size, mask, {"base": base, "adapters": ad0})
  assert sum(jax.tree.leaves(sizes)) == plan.n_trainable


@pytest.fixture(scope="module")
def single_device_dora():
  return _run("dora", _tiny_config("200K"), jax.devices()[:1], rank=4, detach_norm=False)


@pytest.mark.parametrize("preset,mesh", [
    ("fsdp", dict(data=1, fsdp=4, tensor=1)),
    ("fsdp_tp", dict(data=1, fsdp=2, tensor=2)),
])
def test_adapters_shard_and_a_4_device_step_equals_1_device(preset, mesh, single_device_dora):
  _, _, (ref_tr, _, _), _ = single_device_dora
  _, _, (tr, _, _), (tr_sh, _) = _run("dora", _tiny_config("200K"), jax.devices()[:4], preset, mesh, rank=4,
                                      detach_norm=False)
  for a, b in zip(jax.tree.leaves(tr), jax.tree.leaves(ref_tr)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  spec = jax.tree.map(lambda s: s.spec, tr_sh)
  attn, mlp = spec["blocks"]["attn"], spec["blocks"]["mlp"]
  tp = "tensor" if preset == "fsdp_tp" else None
  assert attn["wq"]["lora_a"] == P(None, "fsdp", None)  # (layers, embed, lora_rank)
  assert attn["wq"]["lora_b"] == P(None, None, tp, None)  # (layers, lora_rank, heads, kv)
  assert attn["wo"]["lora_b"] == P(None, None, "fsdp")  # (layers, lora_rank, embed)
  assert mlp["w_down"]["lora_a"] == P(None, tp, None)  # (layers, mlp, lora_rank)
  assert mlp["w_up"]["magnitude"] == P(None, tp)  # (layers, mlp)


def test_spec_validation_errors():
  mc = TINY
  for kwargs, match in [(dict(method="qlora"), "finetune.method='qlora' is not one of"),
                        (dict(rank=0), r"finetune.rank=0 must be an integer in \[1, d_model=16\]"),
                        (dict(rank=17), r"finetune.rank=17 must be"),
                        (dict(alpha=0.0), "finetune.alpha=0.0 must be a positive number"),
                        (dict(targets=()), "finetune.targets is empty"),
                        (dict(targets=("q", "ffn")), "unknown target module 'ffn'")]:
    with pytest.raises(ConfigError, match=match):
      adapters.AdapterSpec(**kwargs).validate(mc)
  adapters.AdapterSpec(method="full", rank=0, targets=()).validate(mc)  # adapter fields unused: fine
  assert fc.adapter_spec(finetune.get_config("method=dora,targets=attn")).targets == ("q", "k", "v", "o")


def test_weight_decay_skips_dora_magnitudes():
  tree = {"blocks": {"mlp": {"w_up": {"lora_a": 0, "lora_b": 0, "magnitude": 0}}, "attn_norm": {"scale": 0}}}
  mask = optim.decay_mask(tree, decay_embeddings=False)
  assert mask == {"blocks": {"mlp": {"w_up": {"lora_a": True, "lora_b": True, "magnitude": False}},
                             "attn_norm": {"scale": False}}}
