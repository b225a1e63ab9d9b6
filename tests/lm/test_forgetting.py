"""Forgetting deltas from two eval dicts."""

import math

import jax
import jax.numpy as jnp
import optax
import pytest

from configs import finetune
from scaling.core import optim
from scaling.core.errors import ScalingError
from scaling.lm import config as configlib
from scaling.lm import evaluate, finetune_data, forgetting, trainable
from scaling.lm import finetune_config as fc
from scaling.lm import step as step_lib
from scaling.lm.data import pipeline
from tests import helpers


def _evals(**sets):
  out = {}
  for name, (loss, acc, n) in sets.items():
    out.update({f"eval/{name}/loss": loss, f"eval/{name}/loss_bits": loss / math.log(2),
                f"eval/{name}/accuracy": acc, f"eval/{name}/n": n})
  return out


def test_deltas_per_set_and_roles():
  before = _evals(background=(3.0, 0.2, 1000), add=(4.6, 0.01, 50), cmp=(0.5, 0.9, 50), add_5shot=(4.0, 0.02, 50),
                  cmp_train=(0.4, 0.95, 20))
  after = _evals(background=(3.25, 0.18, 1000), add=(1.0, 0.61, 50), cmp=(0.9, 0.7, 50), add_5shot=(2.0, 0.3, 50),
                 cmp_train=(0.8, 0.75, 20), extra=(1.0, 1.0, 5))
  out = forgetting.deltas(before, after, target="add")
  assert out["forget/add/delta_accuracy"] == pytest.approx(0.60)
  assert out["forget/add/delta_loss"] == pytest.approx(-3.6)
  assert out["forget/add/before_accuracy"] == 0.01 and out["forget/add/before_loss"] == 4.6
  assert out["forget/background/delta_loss"] == pytest.approx(0.25)
  assert out["forget/add_5shot/delta_accuracy"] == pytest.approx(0.28)
  assert out["forget/target_delta_accuracy"] == out["forget/add/delta_accuracy"]
  assert out["forget/target_delta_loss"] == out["forget/add/delta_loss"]
  assert out["forget/background_delta_loss"] == out["forget/background/delta_loss"]
  # "Other tasks" are registered task test splits only (cmp), not probes or k-shot sets.
  assert out["forget/other_delta_accuracy"] == pytest.approx(-0.2)
  assert out["forget/other_min_delta_accuracy"] == pytest.approx(-0.2)
  assert not any(k.startswith("forget/extra/") for k in out)  # only sets evaluated on both sides
  assert {k.split("/")[1] for k in out if k.count("/") == 2} == {"background", "add", "cmp", "add_5shot",
                                                                  "cmp_train"}


def test_deltas_without_target_or_other_tasks():
  before, after = _evals(background=(3.0, 0.2, 10)), _evals(background=(2.5, 0.3, 10))
  out = forgetting.deltas(before, after)
  assert out["forget/background_delta_loss"] == pytest.approx(-0.5)
  assert "forget/target_delta_accuracy" not in out and "forget/other_delta_accuracy" not in out
  assert forgetting.deltas(before, before)["forget/background/delta_loss"] == 0.0


def test_different_held_out_sets_are_refused():
  with pytest.raises(ScalingError, match="eval set 'add' scored 50 tokens before and 40 after"):
    forgetting.deltas(_evals(add=(1.0, 0.5, 50)), _evals(add=(1.0, 0.5, 40)), target="add")


def test_deltas_from_real_evaluations_of_a_short_fine_tune():
  """The pieces compose: held-out sets -> evaluate.py (the lm eval step on effective params) -> a few steps from
  trainable.Plan -> deltas. An unchanged model's deltas are exactly 0; full fine-tuning steps on `add` lower its
  loss (a random 50K model stands in for the pretrained one; 8 steps learn at least the label marginal)."""
  c = helpers.set_keys(finetune.get_config("method=full,size=50K,lr=0.01,steps=8"), {
      "data.vocab_size": 256, "data.seq_len": 32, "data.eval_sequences": 8, "data.task_eval_limit": 64,
      "data.task_train_probe": 32, "finetune.shots": "0,1"})
  c = fc.resolve(c)
  fc.validate(c, n_devices=1)
  setup = step_lib.build(c, jax.devices()[:1])  # eval_step and the batch layout of the lm trainer
  plan = trainable.plan(fc.adapter_spec(c), configlib.model_config(c))
  base = jax.device_get(setup.init()["params"])  # stands in for the pretrained parameters
  sets = finetune_data.held_out_sets(c)
  before = evaluate.evaluate(setup, base, sets)
  assert forgetting.deltas(before, evaluate.evaluate(setup, base, sets), "add")["forget/add/delta_loss"] == 0.0
  tr, fr = jax.jit(plan.start)(base)
  tx = optim.make_optimizer(c.train)
  opt = tx.init(tr)

  @jax.jit
  def step(tr, opt, batch):
    (_, (ce, w)), g = jax.value_and_grad(plan.loss_sums, has_aux=True)(tr, fr, batch)
    updates, opt = tx.update(jax.tree.map(lambda x: x / jnp.maximum(w, 1.0), g), opt, tr)
    return optax.apply_updates(tr, updates), opt, ce / w

  it = pipeline.make_train_iterator(c)
  for _ in range(8):
    batch = finetune_data.loss_weights(next(it), c.finetune.loss_tokens)
    tr, opt, loss = step(tr, opt, {k: batch[k] for k in ("inputs", "targets", "weights")})
    float(loss)
  after = evaluate.evaluate(setup, plan.effective(tr, fr), sets)
  out = forgetting.deltas(before, after, target="add")
  assert out["forget/target_delta_loss"] < -0.1, out
  assert out["forget/add_train/delta_loss"] < -0.1
  assert {"forget/background_delta_loss", "forget/other_delta_accuracy", "forget/add_1shot/delta_loss",
          "forget/cmp/delta_accuracy"} <= set(out)
