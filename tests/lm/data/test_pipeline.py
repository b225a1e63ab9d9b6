"""Batch contents and exact resume: instances where the mask says, batch i rebuildable, restore == unbroken."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.core import checkpoint as ckpt_lib
from scaling.lm.data import mixture, pipeline, sources, tasks
from tests.lm.data.common import data_config

B, L = 16, 16


def _config(**kw):
  return data_config(B, L, cmp=kw.pop("cmp", 2.0), add=kw.pop("add", (1.0, "burst", 3)), **kw)


def _take(it, n):
  return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_batch_layout_instances_masks_and_background():
  c = _config()
  mix = mixture.Mixture.from_config(c)
  src = sources.make_source(c.data, c.seed)
  batches = _take(pipeline.make_train_iterator(c), 12)
  seen = set()
  for step, batch in enumerate(batches):
    assert batch["inputs"].shape == batch["targets"].shape == batch["task_mask"].shape == (B, L)
    assert batch["inputs"].dtype == batch["targets"].dtype == batch["task_mask"].dtype == np.int32
    assert batch["weights"].dtype == np.float32 and (batch["weights"] == 1).all()  # task tokens are trained on
    assert batch["task_ids"].shape == (B,) and batch["task_ids"].dtype == np.int32
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    background = src.sequences(step * B + np.arange(B))
    for r in range(B):
      t = batch["task_ids"][r]
      row = np.append(batch["inputs"][r], batch["targets"][r, -1])
      if t < 0:
        np.testing.assert_array_equal(row, background[r])
        assert (batch["task_mask"][r] == 0).all()
        continue
      seen.add(mix.names[t])
      task = mix.task(mix.names[t])
      np.testing.assert_array_equal(row[4:], background[r, 4:])  # only the first four tokens are replaced
      assert row[3] == sources.EOD
      np.testing.assert_array_equal(batch["task_mask"][r], np.r_[[t + 1] * 3, [0] * (L - 3)])
      # A genuine train instance: (TOK1, TOK2) is a train pair and LABEL, at targets[LABEL_POS], is its label.
      a, b = (np.flatnonzero(task.symbols == row[i])[0] for i in (0, 1))
      assert a * task.n_symbols + b in set(task.train_ids.tolist())
      assert batch["targets"][r, tasks.LABEL_POS] == task.symbols[task.labels[a * task.n_symbols + b]]
  assert seen == {"cmp", "add"}


def test_batch_i_is_a_pure_function_of_seed_and_i():
  c = _config()
  batches = _take(pipeline.make_train_iterator(c), 8)
  mix, src = mixture.Mixture.from_config(c), sources.make_source(c.data, c.seed)
  for i in (7, 2, 5):  # rebuilt out of order, from scratch
    _assert_batches_equal([batches[i]], [mix.batch(src, i, range(B))])
  c.seed = 1
  other = next(pipeline.make_train_iterator(c))
  assert not np.array_equal(other["inputs"], batches[0]["inputs"])


def _through_checkpoint(directory, data_state):
  """Saves the iterator state with the trainer's orbax checkpointer and restores it, as a resume does."""
  ckpt = ckpt_lib.Checkpointer(directory, every=1, keep=1, async_save=False)
  train_state = {"w": jnp.arange(3.0)}
  ckpt.save(37, train_state, data_state)
  ckpt.close()
  ckpt = ckpt_lib.Checkpointer(directory, every=1, keep=1, async_save=False)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), train_state)
  step, _, restored = ckpt.restore_latest(abstract)
  ckpt.close()
  assert step == 37
  return restored


def test_restore_mid_run_gives_the_next_100_batches_of_an_unbroken_iterator(tmp_path):
  c = _config()
  c.data.prefetch_threads = 2
  unbroken = _take(pipeline.make_train_iterator(c), 137)
  it = pipeline.make_train_iterator(c)
  _take(it, 37)
  assert it.get_state() == {"next_index": 37}
  state = _through_checkpoint(str(tmp_path / "ckpt"), it.get_state())
  restored = pipeline.make_train_iterator(c)
  restored.set_state(state)
  _assert_batches_equal(_take(restored, 100), unbroken[37:])
  # Same on 2 processes: each restores the one saved state and yields its half of every global batch.
  halves = []
  for p in range(2):
    it_p = pipeline.make_train_iterator(c, p, 2)
    it_p.set_state(state)
    halves.append(_take(it_p, 100))
    assert it_p.get_state() == {"next_index": 137}  # identical on every process
  for g, h0, h1 in zip(unbroken[37:], *halves):
    for k in g:
      np.testing.assert_array_equal(np.concatenate([h0[k], h1[k]]), g[k], err_msg=k)


def test_state_is_independent_of_grain_worker_processes():
  c = _config()
  unbroken = _take(pipeline.make_train_iterator(c), 30)
  c.data.worker_count = 1
  it = pipeline.make_train_iterator(c)
  try:
    _assert_batches_equal(_take(it, 10), unbroken[:10])
    state = it.get_state()
  finally:
    it.close()
  c.data.worker_count = 0
  restored = pipeline.make_train_iterator(c)
  restored.set_state(state)
  _assert_batches_equal(_take(restored, 20), unbroken[10:])


def test_bad_iterator_state_is_one_clear_error():
  it = pipeline.make_train_iterator(_config())
  with pytest.raises(ValueError, match="next_index") as e:
    it.set_state({"next_index_in_cycle": 0})
  assert "\n" not in str(e.value)
