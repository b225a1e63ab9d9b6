"""configs/finetune.py presets and scaling/lm/finetune_config.py validation: one clear line per bad input."""

import pytest

from configs import finetune, lm
from scaling.core.errors import ConfigError
from scaling.lm import config as configlib
from scaling.lm import finetune_config as fc
from tests import helpers


def _validated(arg="", **keys):
  c = finetune.get_config(arg)
  helpers.set_keys(c, keys)
  c = fc.resolve(c)
  fc.validate(c, n_devices=1)
  return c


@pytest.mark.parametrize("method", ["full", "lora", "dora", "frozen"])
def test_every_method_preset_validates(method):
  c = _validated(f"method={method}")
  assert c.experiment == "finetune" and c.finetune.method == method
  assert c.train.learning_rate == finetune.LEARNING_RATES[method]
  assert c.data.tasks.add.frequency == c.train.batch_size and c.data.tasks.add.schedule == "interleave"
  assert c.data.tasks.cmp.frequency == 0  # configured (so evaluated for forgetting) but not trained


def test_presets_set_the_fields():
  c = _validated("method=dora,size=10M,target=cmp,rank=4,alpha=8,targets=q+v,background=0.25,lr=0.002,steps=40")
  ft = c.finetune
  assert (ft.target, ft.rank, ft.alpha, ft.targets) == ("cmp", 4, 8.0, "q,v")
  assert fc.adapter_spec(c).targets == ("q", "v") and fc.adapter_spec(c).scale == 2.0
  assert c.model.d_model == 320 and c.train.steps == 40 and c.train.learning_rate == 0.002
  assert c.data.tasks.cmp.frequency == 24.0 and c.data.tasks.add.frequency == 0
  assert c.train.warmup_steps == 4


@pytest.mark.parametrize("arg,match", [
    ("method=qlora", "method='qlora' is not one of full, lora, dora, frozen"),
    ("shots=2", "unknown preset 'shots' in 'configs/finetune.py:method=lora,target=add'; known: method, size"),
    ("rank=eight", "preset rank='eight' must be an integer"),
])
def test_bad_presets(arg, match):
  with pytest.raises(ValueError, match=match):
    finetune.get_config(arg)


@pytest.mark.parametrize("keys,match", [
    ({"finetune.method": "qlora"}, "finetune.method='qlora' is not one of full, lora, dora, frozen — pick one"),
    ({"finetune.targets": "q,attention"}, "unknown target module 'attention' — choose from q, k, v, o, gate"),
    ({"finetune.targets": ""}, "finetune.targets is empty"),
    ({"finetune.rank": 0}, r"finetune.rank=0 must be an integer in \[1, d_model=128\]"),
    ({"finetune.rank": 129}, r"finetune.rank=129 must be an integer in \[1, d_model=128\]"),
    ({"finetune.alpha": -1.0}, "finetune.alpha=-1.0 must be a positive number"),
    ({"finetune.target": "mul"}, "finetune.target='mul' is not a registered task — choose one of add, cmp"),
    ({"data.tasks.add.frequency": 0.0}, "data.tasks.add.frequency=0.0: a lora fine-tune would never see it"),
    ({"finetune.loss_tokens": "label"}, "finetune.loss_tokens='label' is not one of"),
    ({"finetune.shots": "0,40"}, "a 40-shot query needs 162 positions but data.seq_len=128 — lower k to at most 31"),
    ({"finetune.shots": "0,x"}, "finetune.shots='0,x' must list integers >= 0"),
    ({"finetune.shot_tasks": "add,sub"}, "finetune.shot_tasks: unknown task 'sub'"),
    ({"data.tasks.add.frequency": 33.0}, "tasks need up to 33 rows in one batch but the batch has 32"),
    ({"train.steps": 0}, "train.steps=0 must be positive"),
])
def test_bad_values_give_one_line(keys, match):
  with pytest.raises(ConfigError, match=match) as e:
    _validated("", **keys)
  assert "\n" not in str(e.value)


def test_frozen_needs_no_training_frequency_and_full_ignores_adapter_fields():
  _validated("method=frozen", **{"data.tasks.add.frequency": 0.0})
  _validated("method=full", **{"finetune.rank": 0, "finetune.targets": "nonsense"})


def test_lm_configs_are_refused():
  c = configlib.resolve(lm.get_config())
  with pytest.raises(ConfigError, match="scaling.finetune runs configs/finetune.py configs"):
    fc.validate(c)
  # ... and scaling.train refuses fine-tune configs (experiment='finetune'), so neither runs the other's file.
  with pytest.raises(ConfigError, match="scaling.train runs 'lm' configs"):
    configlib.validate(fc.resolve(finetune.get_config()))


def test_check_pretrained():
  pretrained = configlib.resolve(lm.get_config("size=1M")).to_dict()
  c = fc.resolve(finetune.get_config("size=1M"))
  assert fc.pretrained_mismatches(pretrained, c) == []
  fc.check_pretrained(pretrained, c, "runs/lm-1M")
  other = fc.resolve(finetune.get_config("size=10M"))
  bad = fc.pretrained_mismatches(pretrained, other)
  assert bad[0] == "model.d_model: run=128 config=320" and len(bad) == 4  # d_model, n_layers, n_heads, d_ff
  with pytest.raises(ConfigError, match=r"--init_from=runs/lm-1M was trained with a different model.d_model "
                                        r"\(model.d_model: run=128 config=320 and 3 more\) — set "
                                        r"--config.model.d_model"):
    fc.check_pretrained(pretrained, other, "runs/lm-1M")
  reseeded = fc.resolve(helpers.set_keys(finetune.get_config("size=1M"), {"seed": 3}))
  assert fc.pretrained_mismatches(pretrained, reseeded) == ["seed: run=0 config=3"]
  # Run-time choices may differ from the pretraining machine's.
  bf16 = fc.resolve(helpers.set_keys(finetune.get_config("size=1M"), {"model.dtype": "bfloat16"}))
  assert fc.pretrained_mismatches(pretrained, bf16) == []


def test_dry_run_lines_give_exact_counts():
  c = _validated("method=dora,size=1M,background=0.25,targets=q+v")
  text = fc.describe(c)
  # DoRA on q and v of the 1M model (d=128, 4 layers, heads·head_dim=128), rank 8: 4·2·(8·(128+128) + 128).
  assert "method=dora rank=8 alpha=16 targets=q,v detach_norm=True params=17,408 " in text
  assert "frequency=24/batch (background share 25%) loss_tokens=task: ~72 task + ~1024 background" in text
  assert "k-shot k=0,1,5 on add" in text


def test_memory_plan_holds_gradients_and_moments_for_the_trainable_tree_only():
  from scaling.lm import memory, trainable  # noqa: PLC0415 - only this test needs the abstract trees

  def planned(method):
    c = _validated(f"method={method},size=1M")
    tp = trainable.plan(fc.adapter_spec(c), configlib.model_config(c), c.finetune.seed)
    return tp, memory.plan(configlib.resolve(fc.lm_view(c)), 1, 0.0, tp.abstract_split)

  full_tp, full = planned("full")
  base_bytes = 4 * full_tp.n_base  # fp32 master weights on one device
  assert (full.params, full.grads, full.optimizer) == (base_bytes, base_bytes, 2 * base_bytes)
  lora_tp, lora = planned("lora")
  adapter_bytes = 4 * lora_tp.n_trainable
  assert 0 < adapter_bytes < base_bytes / 10
  assert (lora.params, lora.grads, lora.optimizer) == (base_bytes + adapter_bytes, adapter_bytes, 2 * adapter_bytes)
  _, frozen = planned("frozen")
  assert (frozen.params, frozen.grads, frozen.optimizer) == (base_bytes, 0, 0)
  # Without a split the plan is the pretraining one: every parameter trains.
  pre = memory.plan(configlib.resolve(lm.get_config("size=1M")), 1)
  assert pre.optimizer == 2 * pre.params
