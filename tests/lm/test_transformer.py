"""The decoder: causality, exact parameter counts for the whole ladder, dtype/remat/tying options."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from scaling.lm import attention, ladder, losses
from scaling.lm import model as transformer
from scaling.lm import step as step_lib
from scaling.lm.model import Transformer, TransformerConfig

SMALL = TransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_ff=64)


def _model(cfg=SMALL, seed=0):
  return Transformer(cfg, nnx.Rngs(params=seed))


@pytest.mark.parametrize("norm_style", ["olmo2", "pre"])
def test_causal(norm_style):
  """Changing token t changes no logit before t, and does change logits at t (so the test can fail)."""
  cfg = TransformerConfig(**{**SMALL.__dict__, "norm_style": norm_style})
  model = _model(cfg)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, cfg.vocab_size, size=(2, 12)).astype(np.int32)
  t = 7
  changed = tokens.copy()
  changed[:, t] = (changed[:, t] + 1) % cfg.vocab_size
  a, b = np.asarray(model(tokens)), np.asarray(model(changed))
  np.testing.assert_array_equal(a[:, :t], b[:, :t])
  assert np.abs(a[:, t:] - b[:, t:]).max() > 1e-4


@pytest.mark.parametrize("size", list(ladder.LADDER))
def test_param_count_matches_formula(size):
  """Every ladder entry: the abstract parameter tree (no allocation) has exactly the analytic count."""
  shape = ladder.model_shape(size)
  for tied in (False, True):
    cfg = TransformerConfig(vocab_size=50_304, d_model=shape.d_model, n_layers=shape.n_layers,
                            n_heads=shape.n_heads, d_ff=shape.d_ff, tie_embeddings=tied)
    _, abs_params, _ = step_lib.abstract_model(cfg)
    tree = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(abs_params))
    counts = transformer.param_counts(cfg)
    assert tree == counts["total"]
    embed = abs_params["embed"].size + (0 if tied else abs_params["unembed"].size)
    assert counts["non_embedding"] == tree - embed


def test_ladder_names_match_non_embedding_counts():
  for size, shape in ladder.LADDER.items():
    cfg = TransformerConfig(vocab_size=512, d_model=shape.d_model, n_layers=shape.n_layers,
                            n_heads=shape.n_heads, d_ff=shape.d_ff)
    n = transformer.param_counts(cfg)["non_embedding"]
    assert abs(n / ladder.parse_count(size) - 1) < 0.25, (size, n)
  depths = {s: ladder.LADDER[s].n_layers for s in ladder.PAPER_SIZES}
  assert depths == {"4M": 8, "20M": 16, "300M": 16, "1B": 16, "4B": 16}  # the paper's depths


def test_every_param_has_logical_axes():
  _, abs_params, names = step_lib.abstract_model(SMALL)
  for (path, arr), n in zip(jax.tree_util.tree_leaves_with_path(abs_params),
                            jax.tree.leaves(names, is_leaf=lambda x: x is None or isinstance(x, tuple))):
    assert n is not None and len(n) == arr.ndim, jax.tree_util.keystr(path)


def test_tied_embeddings_share_weights():
  cfg = TransformerConfig(**{**SMALL.__dict__, "tie_embeddings": True})
  model = _model(cfg)
  assert not hasattr(model, "unembed")
  x = model.run_blocks(model.embed_tokens(jnp.zeros((1, 4), jnp.int32)))
  expected = model.final_norm(x) @ model.embed[...].T
  np.testing.assert_allclose(np.asarray(model.logits(x)), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_close_to_float32():
  tokens = np.arange(24, dtype=np.int32).reshape(2, 12) % SMALL.vocab_size
  f32 = np.asarray(_model(SMALL)(tokens))
  bf16_cfg = TransformerConfig(**{**SMALL.__dict__, "dtype": "bfloat16"})
  out = _model(bf16_cfg)(tokens)
  assert out.dtype == jnp.float32  # logits are always float32
  np.testing.assert_allclose(np.asarray(out), f32, atol=0.05)


@pytest.mark.parametrize("policy", ["full", "dots"])
def test_remat_same_loss_and_grads(policy):
  tokens = np.arange(24, dtype=np.int32).reshape(2, 12) % SMALL.vocab_size

  def loss_and_grad(cfg):
    model = _model(cfg)
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p):
      logits = nnx.merge(graphdef, p)(tokens)
      return jnp.mean(losses.token_losses(logits[:, :-1], tokens[:, 1:]))
    return jax.value_and_grad(loss)(params)

  l0, g0 = loss_and_grad(SMALL)
  l1, g1 = loss_and_grad(TransformerConfig(**{**SMALL.__dict__, "remat": policy}))
  np.testing.assert_allclose(float(l0), float(l1), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def _loss_and_grad(cfg, tokens):
  graphdef, params = nnx.split(_model(cfg), nnx.Param)

  def loss(p):
    logits = nnx.merge(graphdef, p)(tokens)
    return jnp.mean(losses.token_losses(logits[:, :-1], tokens[:, 1:]))
  return jax.value_and_grad(loss)(params)


@pytest.mark.parametrize("remat", ["none", "full"])
def test_scan_and_unroll_same_loss_grads_and_parameter_tree(remat):
  tokens = np.arange(24, dtype=np.int32).reshape(2, 12) % SMALL.vocab_size
  base = {**SMALL.__dict__, "n_layers": 3, "remat": remat}
  l_scan, g_scan = _loss_and_grad(TransformerConfig(**{**base, "scan_layers": "scan"}), tokens)
  l_unroll, g_unroll = _loss_and_grad(TransformerConfig(**{**base, "scan_layers": "unroll"}), tokens)
  assert jax.tree.structure(g_scan) == jax.tree.structure(g_unroll)
  assert g_unroll["blocks"]["mlp"]["w_gate"].shape == (3, SMALL.d_model, SMALL.d_ff)  # still stacked
  np.testing.assert_allclose(float(l_scan), float(l_unroll), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g_scan), jax.tree.leaves(g_unroll)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_scan_layers_auto_rule():
  cfg = lambda n, mode: TransformerConfig(**{**SMALL.__dict__, "n_layers": n, "scan_layers": mode})  # noqa: E731
  assert not transformer.scans_layers(cfg(transformer.AUTO_UNROLL_MAX_LAYERS, "auto"))
  assert transformer.scans_layers(cfg(transformer.AUTO_UNROLL_MAX_LAYERS + 1, "auto"))
  assert transformer.scans_layers(cfg(2, "scan")) and transformer.scans_layers(cfg(2, True))
  assert not transformer.scans_layers(cfg(32, "unroll")) and not transformer.scans_layers(cfg(32, False))


def test_causal_attention_matches_jax_reference_values_and_grads():
  ks = jax.random.split(jax.random.key(0), 4)
  q, k, v, g = (jax.random.normal(key, (2, 9, 3, 8)) for key in ks)

  def f(impl):
    return jax.value_and_grad(lambda *a: jnp.vdot(attention.causal_attention(*a, impl), g), argnums=(0, 1, 2))

  (ours, d_ours), (ref, d_ref) = f(None)(q, k, v), f("xla")(q, k, v)
  np.testing.assert_allclose(float(ours), float(ref), rtol=1e-5)
  for a, b in zip(d_ours, d_ref):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  model_logits = [_model(TransformerConfig(**{**SMALL.__dict__, "attention_impl": impl}))(np.ones((1, 6), np.int32))
                  for impl in (None, "xla")]
  np.testing.assert_allclose(*map(np.asarray, model_logits), rtol=1e-5, atol=1e-6)


def test_swiglu_backward_matches_autodiff():
  a, b, g = (jax.random.normal(key, (5, 7)) for key in jax.random.split(jax.random.key(1), 3))
  ours = jax.grad(lambda x, y: jnp.vdot(transformer.swiglu(x, y), g), argnums=(0, 1))(a, b)
  ref = jax.grad(lambda x, y: jnp.vdot(jax.nn.silu(x) * y, g), argnums=(0, 1))(a, b)
  for x, y in zip(ours, ref):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_token_losses_match_optax():
  logits = jax.random.normal(jax.random.key(2), (2, 5, 11)) * 3
  targets = jax.random.randint(jax.random.key(3), (2, 5), 0, 11)
  ref = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  np.testing.assert_allclose(np.asarray(losses.token_losses(logits, targets)), np.asarray(ref), rtol=1e-5)


def test_token_objective_adds_the_z_loss_to_the_cross_entropy():
  logits = jax.random.normal(jax.random.key(4), (2, 5, 11)) * 3
  targets = jax.random.randint(jax.random.key(5), (2, 5), 0, 11)
  ce_ref = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  z_ref = jax.scipy.special.logsumexp(logits, axis=-1) ** 2
  obj, ce = losses.token_objective(logits, targets, 1e-2)
  np.testing.assert_allclose(np.asarray(ce), np.asarray(ce_ref), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(obj), np.asarray(ce_ref + 1e-2 * z_ref), rtol=1e-5)
  obj0, ce0 = losses.token_objective(logits, targets, 0.0)
  np.testing.assert_array_equal(np.asarray(obj0), np.asarray(ce0))


def test_run_blocks_prefix_matches_manual_layers():
  """run_blocks(n) (used by probes) equals applying the first n stacked layers one by one."""
  model = _model(SMALL)
  x = model.embed_tokens(np.ones((1, 5), np.int32))
  graphdef, state = nnx.split(model.blocks)
  manual = x
  for i in range(1):
    manual = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state))(manual)
  np.testing.assert_allclose(np.asarray(model.run_blocks(x, n_layers=1)), np.asarray(manual), rtol=1e-5)


@pytest.mark.parametrize("bad,match", [
    (dict(n_heads=5), "not divisible"),
    (dict(n_heads=32), "must be even"),  # head dim 1
    (dict(norm_style="post"), "norm_style"),
    (dict(remat="some"), "remat"),
    (dict(dtype="float8"), "dtype"),
    (dict(d_ff=0), "d_ff"),
    (dict(scan_layers="sometimes"), "scan_layers"),
    (dict(attention_impl="flash"), "attention_impl"),
])
def test_invalid_model_configs(bad, match):
  with pytest.raises(ValueError, match=match):
    transformer.validate(TransformerConfig(**{**SMALL.__dict__, **bad}))
