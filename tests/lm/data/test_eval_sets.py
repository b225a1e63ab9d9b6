"""Per-task eval sets: the whole test split scored on the LABEL token, plus a fixed train-split probe."""

import numpy as np

from scaling.lm import evaluate
from scaling.lm.data import mixture, sources, tasks
from tests.lm.data.common import data_config


def _rows(batches, key):
  return np.concatenate([b[key] for b in batches])


def test_task_eval_sets_cover_the_test_split_on_the_label_token():
  c = data_config(16, cmp=1.0, add=(0.5, "interleave"))
  c.data.task_train_probe = 300
  sets = evaluate.default_eval_sets(c)
  assert set(sets) == {"background", "cmp", "cmp_train", "add", "add_train"}
  mix = mixture.Mixture.from_config(c)
  for name in ("cmp", "add"):
    task = mix.task(name)
    batches = sets[name]
    assert all(len(b["inputs"]) <= 16 for b in batches)  # evaluate() pads each batch to the train batch size
    w, x, y = _rows(batches, "weights"), _rows(batches, "inputs"), _rows(batches, "targets")
    assert w.sum() == 5000  # eval/<task>/n
    assert (w[:, tasks.LABEL_POS] == 1).all() and w.sum(1).max() == 1  # only the LABEL is scored
    # Exactly the test split: (TOK1, TOK2) pairs = test pairs, and the scored target is the true label.
    index = {int(s): i for i, s in enumerate(task.symbols)}
    ids = sorted(index[a] * 100 + index[b] for a, b in x[:, :2].tolist())
    assert ids == task.test_ids.tolist()
    np.testing.assert_array_equal(y[:, tasks.LABEL_POS], task.symbols[task.labels[task.test_ids]])
    assert (y[:, 2] == sources.EOD).all() and (y[:, 3:] == sources.PAD).all()
    assert x.shape == (5000, mixture.EVAL_ROW_LEN)
    # The train probe: 300 fixed train instances, the same every time.
    probe = _rows(sets[f"{name}_train"], "inputs")
    pairs = {index[a] * 100 + index[b] for a, b in probe[:, :2].tolist()}
    assert len(probe) == 300 and pairs <= set(task.train_ids.tolist())
    np.testing.assert_array_equal(probe, _rows(evaluate.default_eval_sets(c)[f"{name}_train"], "inputs"))
  # Background set unchanged: eval_sequences rows of the eval split, every token scored.
  bg = _rows(sets["background"], "weights")
  assert bg.shape == (c.data.eval_sequences, c.data.seq_len) and (bg == 1).all()


def test_eval_limit_and_probe_switches():
  c = data_config(16, cmp=1.0)
  c.data.task_eval_limit, c.data.task_train_probe = 200, 0
  sets = evaluate.default_eval_sets(c)
  assert set(sets) == {"background", "cmp"}
  assert _rows(sets["cmp"], "weights").sum() == 200
