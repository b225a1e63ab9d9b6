"""Fine-tuning data: scored tokens of the training batches, and the fixed held-out sets."""

import numpy as np
import pytest

from configs import finetune
from scaling.lm import finetune_config as fc
from scaling.lm import finetune_data
from scaling.lm.data import mixture, pipeline, sources
from scaling.lm.data import tasks as tasks_lib
from tests import helpers

SMALL = {"data.vocab_size": 256, "data.seq_len": 32, "data.eval_sequences": 8, "data.task_eval_limit": 20,
         "data.task_train_probe": 10}


def _config(arg="", **keys):
  c = helpers.set_keys(finetune.get_config(arg), {**SMALL, **keys})
  c = fc.resolve(c)
  fc.validate(c)
  return c


def test_task_rows_score_only_their_instance():
  c = _config(**{"data.tasks.add.frequency": 24.0})  # 24 target rows, 8 background-replay rows per batch
  batch = next(pipeline.make_train_iterator(c))
  out = finetune_data.loss_weights(batch, "task")
  task_rows = batch["task_ids"] >= 0
  assert task_rows.sum() == 24  # interleave: exactly the frequency
  w = out["weights"]
  assert w.dtype == np.float32 and w.shape == batch["weights"].shape
  np.testing.assert_array_equal(w[task_rows][:, :3], 1.0)  # TOK2, LABEL, EOD targets
  np.testing.assert_array_equal(w[task_rows][:, 3:], 0.0)
  np.testing.assert_array_equal(w[~task_rows], 1.0)  # background replay rows score every token
  assert finetune_data.loss_weights(batch, "all") is batch
  for key in ("inputs", "targets", "task_mask", "task_ids"):
    assert out[key] is batch[key]
  assert finetune_data.tokens_per_batch(8, 32, 6.0, "task") == (18.0, 64.0)
  assert finetune_data.tokens_per_batch(8, 32, 6.0, "all") == (18.0, 238.0)
  with pytest.raises(ValueError, match="loss_tokens='label'"):
    finetune_data.loss_weights(batch, "label")


def test_held_out_sets_cover_every_configured_task():
  c = _config()
  sets = finetune_data.held_out_sets(c)
  assert sorted(sets) == ["add", "add_0shot", "add_1shot", "add_5shot", "add_train", "background", "cmp",
                          "cmp_train"]
  # cmp is not trained (frequency 0) but its test split is the same one pretraining evaluates.
  pretraining = helpers.set_keys(finetune.get_config(), {**SMALL, "data.tasks.cmp.frequency": 1.0})
  ordinary = mixture.Mixture.from_config(fc.resolve(pretraining)).eval_sets(8, 20, 10)
  for name in ("cmp", "add", "add_train", "cmp_train"):
    got = np.concatenate([b["inputs"] for b in sets[name]])
    np.testing.assert_array_equal(got, np.concatenate([b["inputs"] for b in ordinary[name]]))
  for a, b in zip(sets["add_0shot"], sets["add"]):
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
  assert sum(b["weights"].sum() for b in sets["add_5shot"]) == 20
  assert sum(b["weights"].sum() for b in sets["background"]) == 8 * 32
  bg = np.concatenate([b["inputs"] for b in sets["background"]])
  assert bg.shape == (8, 32) and not np.any(bg == sources.PAD)
  assert tasks_lib.LABEL_POS == 1  # the layout the weights above assume


def test_shot_tasks_default_to_the_target():
  c = _config("target=cmp", **{"finetune.shots": "2", "finetune.shot_tasks": ""})
  assert finetune_data.shot_tasks(c.finetune) == ("cmp",)
  assert "cmp_2shot" in finetune_data.held_out_sets(c)
  c2 = _config(**{"finetune.shot_tasks": "cmp, add"})
  assert finetune_data.shot_tasks(c2.finetune) == ("cmp", "add")
