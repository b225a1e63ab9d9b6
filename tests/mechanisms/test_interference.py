"""Gradient interference: the split and the cosines against independent gradients and numpy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling.lm import config as configlib
from scaling.lm import losses
from scaling.lm import step as step_lib
from scaling.lm.data import mixture, pipeline
from scaling.mechanisms import callbacks as mechanism_callbacks
from scaling.mechanisms import interference
from scaling.mechanisms import settings as mechanisms
from tests import helpers

TOP_K, N_TASK = 16, 16
ADD, CMP = 0, 1  # task ids: the configured names sorted, ("add", "cmp")


def _config():
  c = helpers.tiny_config()
  c.data.tasks.cmp.frequency = 2.0
  c.mechanisms.interference_every = 5
  return configlib.resolve(c)


@pytest.fixture(scope="module")
def setup_and_params():
  setup = step_lib.build(_config(), jax.devices()[:1])
  state = setup.init()
  for _ in range(2):  # off init, so gradients are not those of the symmetric starting point
    state, _ = setup.train_step(state, setup.place_batch(_background(setup, 8, 32, seed=1)))
  return setup, state["params"]


def _background(setup, rows, length, seed=0):
  rng = np.random.default_rng(seed)
  seqs = rng.integers(2, setup.config.data.vocab_size, size=(rows, length + 1)).astype(np.int32)
  return {"inputs": seqs[:, :-1], "targets": seqs[:, 1:], "weights": np.ones((rows, length), np.float32),
          "task_mask": np.zeros((rows, length), np.int32), "task_ids": np.full(rows, -1, np.int32)}


def _identical_loss_batch(setup, gr_rows):
  """The g_r rows themselves (task tokens = their LABEL) + as many background rows: g_t ∝ g_r exactly."""
  task = {k: gr_rows[k] for k in ("inputs", "targets")}
  task["weights"] = np.ones_like(gr_rows["weights"])
  task["task_mask"] = (gr_rows["weights"] > 0).astype(np.int32) * (CMP + 1)  # at the LABEL only
  task["task_ids"] = np.full(len(gr_rows["inputs"]), CMP, np.int32)
  bg = _background(setup, len(gr_rows["inputs"]), gr_rows["inputs"].shape[1])
  return {k: np.concatenate([task[k], bg[k]]) for k in task}


def _reference_grads(setup, params, batch, masks):
  """Layer-0 MLP gradients of the plain model's masked mean loss, one jax.grad per mask (the slow way)."""
  denom = float(np.sum(batch["weights"]))

  def loss(p, mask):
    logits = nnx.merge(setup.graphdef, p)(batch["inputs"])
    ce = losses.token_losses(logits, batch["targets"])
    return jnp.sum(ce * batch["weights"] * mask) / denom

  grad = jax.jit(jax.grad(loss))  # one compile for every mask (eager NNX is far slower)
  out = []
  for m in masks:
    g = grad(params, jnp.asarray(m, jnp.float32))["blocks"]["mlp"]
    out.append({k: np.asarray(g[k][0], np.float64) for k in interference.MLP_KEYS})
  return out


def _np_vectors(g):
  return np.concatenate([g["w_gate"].T, g["w_up"].T, g["w_down"]], axis=1)


def _np_cos(a, b):
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_split_sums_to_the_training_gradient_and_cosines_match_numpy(setup_and_params):
  setup, params = setup_and_params
  mix = mixture.Mixture.from_config(setup.config)
  assert mix.names[CMP] == "cmp"
  cmp = mix.task("cmp")
  gr_rows = interference.task_rows(cmp, N_TASK)
  it = interference.Interference(setup, [CMP], ["cmp"], [gr_rows], top_k=TOP_K, chunk=8)  # 2 chunks
  batch = _identical_loss_batch(setup, gr_rows)
  placed = setup.place_batch(batch)

  # One vectorised pass: [non-task, task] gradients; their sum is the train step's gradient (step.make_loss_sums).
  split = jax.device_get(jax.jit(it.split_grads)(params, placed))
  (_, (_, w_sum)), full = jax.value_and_grad(lambda p: _loss_sums(setup, p, batch), has_aux=True)(params)
  for k in interference.MLP_KEYS:
    train_grad = np.asarray(full["blocks"]["mlp"][k][0]) / float(w_sum)
    # float32 sums in two different programs: entries near zero are cancellations of terms as large as the
    # largest entry, so the absolute tolerance scales with it (a wrong split is off by O(entry), not 1e-5 of it).
    np.testing.assert_allclose(split[k][0] + split[k][1], train_grad, rtol=1e-5,
                               atol=1e-5 * np.abs(train_grad).max())

  # ... and each part equals its own masked loss's gradient (one backward pass each, the slow way).
  task_mask = batch["task_mask"] == CMP + 1
  ref_nt, ref_t = _reference_grads(setup, params, batch, [~task_mask, task_mask])
  for k in interference.MLP_KEYS:
    np.testing.assert_allclose(split[k][1], ref_t[k], rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(split[k][0], ref_nt[k], rtol=1e-4, atol=1e-8)

  # g_r: the mean LABEL loss over the instances, here the task tokens of the batch under another denominator.
  label_w = np.concatenate([gr_rows["weights"], np.zeros_like(gr_rows["weights"])])
  ref_gr = {k: v * float(np.sum(batch["weights"])) / N_TASK
            for k, v in _reference_grads(setup, params, batch, [label_w])[0].items()}
  got = it.measure(params, placed)

  g, gt, gr = (_np_vectors(x) for x in ({k: ref_t[k] + ref_nt[k] for k in ref_t}, ref_t, ref_gr))
  idx = np.argsort(-np.linalg.norm(gr, axis=1), kind="stable")[:TOP_K]
  g, gt, gr = (x[idx].ravel() for x in (g, gt, gr))
  gnt = g - gt
  assert got["interference/cmp/k"] == TOP_K
  expect = {"cos_g_gr": _np_cos(g, gr), "cos_gt_gr": _np_cos(gt, gr), "cos_gnt_gr": _np_cos(gnt, gr),
            "norm_g": np.linalg.norm(g), "norm_gt": np.linalg.norm(gt), "norm_gnt": np.linalg.norm(gnt),
            "norm_gr": np.linalg.norm(gr)}
  for key, value in expect.items():
    np.testing.assert_allclose(got[f"interference/cmp/{key}"], value, rtol=2e-4, atol=2e-5, err_msg=key)
  # The identical-loss construction: task tokens are exactly the g_r instances.
  np.testing.assert_allclose(got["interference/cmp/cos_gt_gr"], 1.0, atol=1e-5)
  np.testing.assert_allclose(got["interference/cmp/norm_gt"] / got["interference/cmp/norm_gr"],
                             N_TASK / np.sum(batch["weights"]), rtol=1e-4)
  assert abs(got["interference/cmp/cos_gnt_gr"]) < 0.99  # background is not the task

  # A batch without task tokens: g = g_nt, and cos(g_t, g_r) has no value.
  bg = setup.place_batch(_background(setup, 8, 8, seed=3))
  none = it.measure(params, bg)
  assert "interference/cmp/cos_gt_gr" not in none and none["interference/cmp/norm_gt"] == 0.0
  np.testing.assert_allclose(none["interference/cmp/cos_g_gr"], none["interference/cmp/cos_gnt_gr"], rtol=1e-6)


def _mixture_batch(setup, add_rows=2):
  """A trainer batch holding cmp instances, plus a fake second task (id ADD) on `add_rows` background rows."""
  stream = itertools.islice(pipeline.make_train_iterator(setup.config), 50)
  batch = dict(next(b for b in stream if (b["task_ids"] == CMP).sum() >= 2))
  batch["task_mask"] = batch["task_mask"].copy()
  bg = np.flatnonzero(batch["task_ids"] == -1)[:add_rows]
  batch["task_mask"][bg, :3] = ADD + 1  # tokens of a task that is not measured: they belong to g_nt
  return batch


def test_both_splits_sum_to_the_training_gradient_and_match_autodiff(setup_and_params):
  setup, params = setup_and_params
  cmp = mixture.Mixture.from_config(setup.config).task("cmp")
  rows = interference.task_rows(cmp, N_TASK)
  batch = _mixture_batch(setup)
  placed = setup.place_batch(batch)
  inst = batch["task_mask"] == CMP + 1  # TOK2, LABEL, EOD targets of the cmp instances
  assert inst.sum() == 3 * (batch["task_ids"] == CMP).sum()
  label = inst & (np.arange(inst.shape[1]) == cmp.label_pos)
  ref_label, ref_extra, ref_rest = _reference_grads(setup, params, batch, [label, inst & ~label, ~inst])
  ref = {"label": (ref_label, {k: ref_extra[k] + ref_rest[k] for k in ref_rest}),
         "instance": ({k: ref_label[k] + ref_extra[k] for k in ref_label}, ref_rest)}
  (_, (_, w_sum)), full = jax.value_and_grad(lambda p: _loss_sums(setup, p, batch), has_aux=True)(params)
  parts = {}
  for split in interference.SPLITS:
    it = interference.Interference(setup, [CMP], ["cmp"], [rows], top_k=TOP_K, chunk=8, split=split)
    parts[split] = jax.device_get(jax.jit(it.split_grads)(params, placed))
    ref_t, ref_nt = ref[split]
    for k in interference.MLP_KEYS:  # g = g_nt + g_t exactly, each part its own masked loss's gradient
      np.testing.assert_allclose(parts[split][k].sum(0), np.asarray(full["blocks"]["mlp"][k][0]) / float(w_sum),
                                 rtol=1e-5, atol=1e-8, err_msg=split)
      np.testing.assert_allclose(parts[split][k][1], ref_t[k], rtol=1e-4, atol=1e-8, err_msg=split)
      np.testing.assert_allclose(parts[split][k][0], ref_nt[k], rtol=1e-4, atol=1e-8, err_msg=split)
    gr = _np_vectors(jax.device_get(jax.jit(it.task_grad)(params, it.gr_rows[0])))
    idx = np.argsort(-np.linalg.norm(gr, axis=1), kind="stable")[:TOP_K]
    g, gt = (_np_vectors(x)[idx].ravel() for x in ({k: ref_t[k] + ref_nt[k] for k in ref_t}, ref_t))
    gr = gr[idx].ravel()
    got = it.measure(params, placed)
    for key, value in {"cos_gt_gr": _np_cos(gt, gr), "cos_gnt_gr": _np_cos(g - gt, gr), "cos_g_gr": _np_cos(g, gr),
                       "norm_gt": np.linalg.norm(gt), "norm_gnt": np.linalg.norm(g - gt)}.items():
      np.testing.assert_allclose(got[f"interference/cmp/{key}"], value, rtol=2e-4, atol=2e-5, err_msg=f"{split} {key}")
  # The instance split's g_t is the label split's plus the TOK2/EOD targets' gradient, which is not negligible.
  for k in interference.MLP_KEYS:
    extra = parts["instance"][k][1] - parts["label"][k][1]
    assert np.linalg.norm(extra) > 0.1 * np.linalg.norm(parts["label"][k][1]), k
  with pytest.raises(interference.ConfigError, match="split='tokens'"):
    interference.Interference(setup, [CMP], ["cmp"], [rows], split="tokens")


def _loss_sums(setup, params, batch):
  model = nnx.merge(setup.graphdef, params)
  w = jnp.asarray(batch["weights"])
  ce = jnp.sum(losses.token_losses(model(batch["inputs"]), batch["targets"]) * w)
  return ce, (ce, jnp.sum(w))


def test_sharded_equals_single_device(setup_and_params):
  setup, params = setup_and_params
  cfg = _config().unlock()
  cfg.mesh.data = 4
  sharded = step_lib.build(cfg, jax.devices()[:4])
  cmp = mixture.Mixture.from_config(setup.config).task("cmp")
  rows = interference.task_rows(cmp, 40)  # 40 rows: padded to chunks of 12 (a multiple of 4)
  stream = itertools.islice(pipeline.make_train_iterator(setup.config), 50)
  batch = next(b for b in stream if (b["task_ids"] == CMP).any())
  one = interference.Interference(setup, [CMP], ["cmp"], [rows], top_k=TOP_K, chunk=10).measure(
      params, setup.place_batch(batch))
  p4 = jax.device_put(params, sharded.state_shardings["params"])
  four = interference.Interference(sharded, [CMP], ["cmp"], [rows], top_k=TOP_K, chunk=10).measure(
      p4, sharded.place_batch(batch))
  assert one.keys() == four.keys() and "interference/cmp/cos_gt_gr" in one
  for k in one:
    np.testing.assert_allclose(four[k], one[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_hook_rebuilds_the_trainers_batch(setup_and_params):
  setup, _ = setup_and_params
  built = mechanism_callbacks.build(setup.config, setup)
  assert [type(c) for c in built] == [mechanism_callbacks.InterferenceCallback]  # no retention: no burst task
  mech = built[0]
  it = pipeline.make_train_iterator(setup.config)
  for i in range(3):
    want = next(it)
    got = jax.device_get(mech.batch(i))
    for k in want:
      np.testing.assert_array_equal(got[k], want[k], err_msg=f"batch {i} {k}")
  assert mech.due(5, 100) and not mech.due(6, 100) and not mech.due(0, 100)
  assert mech.interference.split == "label"  # the default split


def test_from_settings_reads_every_interference_setting(setup_and_params):
  setup, _ = setup_and_params
  mix = mixture.Mixture.from_config(setup.config)
  s = {**mechanisms.settings(setup.config), "interference_split": "instance", "interference_top_k": 7,
       "interference_rank_by": "batch", "interference_task_instances": 30}
  it = interference.from_settings(setup, mix, s)
  assert (it.split, it.top_k, it.rank_by, it.names, it.ids) == ("instance", 7, "batch", ("cmp",), (CMP,))
  assert int(np.sum(jax.device_get(it.gr_rows[0]["weights"]))) == 30


def test_short_task_rows_give_the_eval_rows_gradient(setup_and_params):
  # g_r rows stop at the LABEL; the causal model makes the 8-position eval rows' LABEL gradient the same.
  setup, params = setup_and_params
  cmp = mixture.Mixture.from_config(setup.config).task("cmp")
  short = interference.task_rows(cmp, 24)
  long = {k: np.zeros((24, 8), v.dtype) for k, v in short.items()}
  inst = cmp.instances(cmp.split_ids("train", 24))
  long["inputs"][:, :3], long["targets"][:, :3] = inst[:, :3], inst[:, 1:]
  long["weights"][:, cmp.label_pos] = 1.0
  it = interference.Interference(setup, [CMP], ["cmp"], [short])
  grad = jax.jit(it.task_grad)
  a = jax.device_get(grad(params, interference.chunk_rows(short, 8)))
  b = jax.device_get(grad(params, interference.chunk_rows(long, 8)))
  for k in interference.MLP_KEYS:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-4 * np.abs(a[k]).max())  # float32 sums


@pytest.mark.parametrize("rank_by", ["task", "batch"])
def test_summarize_matches_numpy(rank_by):
  rng = np.random.default_rng(0)
  g, gt, gr = (rng.normal(size=(40, 6)).astype(np.float32) for _ in range(3))
  got = jax.device_get(interference.summarize(jnp.asarray(g), jnp.asarray(gt), jnp.asarray(gr), 5, rank_by))
  idx = np.argsort(-np.linalg.norm(gr if rank_by == "task" else g, axis=1))[:5]
  a, t, r = (x[idx].astype(np.float64).ravel() for x in (g, gt, gr))
  np.testing.assert_allclose(got["cos_gnt_gr"], _np_cos(a - t, r), rtol=1e-5)
  np.testing.assert_allclose(got["cos_g_gr"], _np_cos(a, r), rtol=1e-5)
  np.testing.assert_allclose(got["norm_gnt"], np.linalg.norm(a - t), rtol=1e-5)
  assert int(got["k"]) == 5
