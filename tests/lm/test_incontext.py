"""k-shot eval sets: layout, weights, determinism, and k = 0 equal to the ordinary task eval."""

import numpy as np
import pytest

from scaling.core.errors import ConfigError
from scaling.lm import config as configlib
from scaling.lm import incontext
from scaling.lm.data import mixture, sources
from scaling.lm.data import tasks as tasks_lib
from tests import helpers


def _config(seed=0, limit=40, **tasks):
  c = helpers.tiny_config()
  c.seed = seed
  c.data.vocab_size = 256  # room for both tasks' 100-symbol blocks
  c.data.task_eval_limit = limit
  for name, freq in (tasks or {"add": 2.0}).items():
    c.data.tasks[name].frequency = freq
  return configlib.resolve(c)


def _rows(sets, name):
  return {k: np.concatenate([b[k] for b in sets[name]]) for k in ("inputs", "targets", "weights")}


def test_kshot_rows_layout_and_weights():
  config = _config()
  sets = incontext.kshot_eval_sets(config, ["add"], (0, 1, 5), batch_size=16)
  assert sorted(sets) == ["add_0shot", "add_1shot", "add_5shot"]
  task = mixture.Mixture.from_config(config).task("add")
  test_ids = task.split_ids("test", 40)
  expected = task.instances(test_ids)
  train_pairs = {tuple(r) for r in task.instances(task.train_ids)[:, :3]}
  for k in (0, 1, 5):
    rows = _rows(sets, f"add_{k}shot")
    assert [len(b["inputs"]) for b in sets[f"add_{k}shot"]] == [16, 16, 8]
    assert rows["inputs"].shape == (40, incontext.row_len(k)) == rows["targets"].shape == rows["weights"].shape
    assert incontext.row_len(k) % mixture.EVAL_ROW_LEN == 0 and incontext.row_len(k) >= 4 * k + 3
    label_at = 4 * k + tasks_lib.LABEL_POS
    # Exactly one scored target per row: the query's LABEL.
    assert np.array_equal(np.flatnonzero(rows["weights"].sum(0)), [label_at])
    assert np.all(rows["weights"][:, label_at] == 1)
    np.testing.assert_array_equal(rows["targets"][:, label_at], expected[:, 2])
    np.testing.assert_array_equal(rows["inputs"][:, 4 * k:4 * k + 2], expected[:, :2])
    for j in range(k):  # each shot is a whole train-split instance, EOD-terminated
      shot = rows["inputs"][:, 4 * j:4 * j + 4]
      assert np.all(shot[:, 3] == sources.EOD)
      assert all(tuple(s) in train_pairs for s in shot[:, :3])
    assert np.all(rows["inputs"][:, 4 * k + 4:] == sources.PAD)
  # Shots differ between queries (they are drawn per query, not one fixed prompt).
  five = _rows(sets, "add_5shot")["inputs"][:, :20]
  assert len({tuple(r) for r in five}) > 30


def test_zero_shot_equals_the_ordinary_task_eval():
  config = _config()
  ordinary = mixture.Mixture.from_config(config).eval_sets(16, test_limit=40)["add"]
  zero = incontext.kshot_eval_sets(config, ["add"], (0,), batch_size=16)["add_0shot"]
  assert len(zero) == len(ordinary)
  for a, b in zip(zero, ordinary):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
      assert a[key].dtype == b[key].dtype


def test_kshot_sets_are_deterministic_and_query_keeps_its_shots():
  a = _rows(incontext.kshot_eval_sets(_config(), ["add"], (5,)), "add_5shot")["inputs"]
  b = _rows(incontext.kshot_eval_sets(_config(), ["add"], (5,)), "add_5shot")["inputs"]
  np.testing.assert_array_equal(a, b)
  other_seed = _rows(incontext.kshot_eval_sets(_config(seed=1), ["add"], (5,)), "add_5shot")["inputs"]
  assert not np.array_equal(a, other_seed)
  # The 40-query subset lies inside the 400-query one (split_ids takes a prefix of one permutation), and each
  # query has the same shots there.
  big = _rows(incontext.kshot_eval_sets(_config(limit=400), ["add"], (5,)), "add_5shot")["inputs"]
  big_rows = {tuple(r[20:22]): tuple(r) for r in big}
  assert all(big_rows[tuple(r[20:22])] == tuple(r) for r in a)
  # A task that is not being trained still gets sets (the in-context baseline needs no training frequency).
  assert "cmp_1shot" in incontext.kshot_eval_sets(_config(), ["cmp"], (1,))


def test_parse_and_validate_shots():
  assert incontext.parse_shots("5, 0,1,1") == (0, 1, 5)
  assert incontext.parse_shots((2, 0)) == (0, 2)
  assert incontext.parse_shots("") == ()
  for bad in ("1,-2", "one", "1.5", (True,)):
    with pytest.raises(ConfigError, match="must list integers >= 0"):
      incontext.parse_shots(bad)
  incontext.validate_shots((0, 7), seq_len=32)  # 4·7 + 2 = 30 positions
  with pytest.raises(ConfigError, match="a 8-shot query needs 34 positions but data.seq_len=32 — lower k to at "
                                        "most 7"):
    incontext.validate_shots((0, 8), seq_len=32)
