"""Fine-tuning a pretrained language model on a task it missed: full, LoRA, DoRA, or the frozen model (issue 13).

Usage (scaling/lm/finetune.py; any field can be overridden with --config.<key>=<value>):

  python -m scaling.finetune --config=configs/finetune.py:method=lora,target=add --init_from=runs/lm-1M \
      --workdir=runs/ft-1M-lora
  python -m scaling.finetune --config=configs/finetune.py:method=dora,rank=4,targets=attn,size=10M \
      --init_from=runs/lm-10M --workdir=/tmp/x --dry_run

Presets (the config arg, comma-separated key=value):
  method      full | lora | dora | frozen (default lora); picks the default learning rate in LEARNING_RATES
  size        ladder name of the pretrained model (checked against --init_from's config.json)
  target      the task to teach (default add, T_ADD)
  rank alpha  LoRA/DoRA rank r and alpha (scale alpha / r; defaults 8 and 16)
  targets     wrapped weights: q,k,v,o,gate,up,down or the groups attn, mlp, all (default all)
  background  share of batch rows that are background replay (default 0: every row carries a target instance);
              sets data.tasks.<target>.frequency = batch_size · (1 − background) — set the frequency directly
              after changing train.batch_size
  lr steps    peak learning rate and optimizer steps

Everything else is configs/lm.py's (data source, mesh, sharding presets, checkpointing); the model section and
the seed must match the pretrained run (scaling/lm/finetune_config.py check_pretrained). Validation:
scaling/lm/finetune_config.py. The learning rates are starting points, not tuned values: sweep them
(configs/sweeps/finetune.py).
"""

from __future__ import annotations

from ml_collections import config_dict

from configs import lm
from scaling.core.configtools import parse_arg
from scaling.lm import adapters
from scaling.lm.data import tasks as tasks_lib

LEARNING_RATES = {"full": 1e-3, "lora": 5e-3, "dora": 5e-3, "frozen": 1e-3}  # frozen trains nothing
# The `:arg` presets and their defaults (lr 0.0: the method's entry in LEARNING_RATES).
PRESETS = {"method": "lora", "size": "1M", "target": "add", "rank": 8, "alpha": 16.0, "targets": "all",
           "background": 0.0, "lr": 0.0, "steps": 300}
BATCH_SIZE = 32


def get_config(arg: str = ""):
  opts = parse_arg(arg, PRESETS, "configs/finetune.py:method=lora,target=add")
  method = opts["method"]
  if method not in adapters.METHODS:
    raise ValueError(f"configs/finetune.py: method={method!r} is not one of {', '.join(adapters.METHODS)}")
  c = lm.get_config(f"size={opts['size']}")
  c.experiment = "finetune"

  c.finetune = config_dict.ConfigDict()
  c.finetune.method = method
  c.finetune.init_from = ""  # the pretrained run dir (the command's --init_from sets it)
  c.finetune.target = opts["target"]
  c.finetune.rank = opts["rank"]
  c.finetune.alpha = opts["alpha"]
  c.finetune.targets = opts["targets"].replace("+", ",")  # 'q+v' also works inside the config arg
  c.finetune.detach_norm = True  # DoRA: ‖W + s·A·B‖_col as a constant in the backward pass (paper §4.3)
  c.finetune.seed = 0  # adapter initialisation
  c.finetune.save_frozen = False  # keep the frozen base in this run's checkpoints (else read back from --init_from)
  c.finetune.loss_tokens = "task"  # task: only instance tokens of task rows count | all: every token
  c.finetune.shots = "0,1,5"  # k-shot eval sets <task>_<k>shot (scaling/lm/incontext.py)
  c.finetune.shot_tasks = ""  # comma-separated tasks with k-shot sets ('' = the target)

  # ---- data: the target at high frequency, every other task off (still evaluated, to measure forgetting).
  background = opts["background"]
  c.train.batch_size = BATCH_SIZE
  for name in tasks_lib.names():
    c.data.tasks[name] = config_dict.ConfigDict({"frequency": 0.0, "schedule": "random", "period": 1})
  if c.finetune.target in c.data.tasks:
    c.data.tasks[c.finetune.target] = config_dict.ConfigDict(
        {"frequency": BATCH_SIZE * (1.0 - background), "schedule": "interleave", "period": 1})

  # ---- training.
  c.train.steps = opts["steps"]
  c.train.learning_rate = opts["lr"] or LEARNING_RATES[method]
  c.train.warmup_steps = max(1, c.train.steps // 10)
  c.train.schedule = "cosine"
  c.train.weight_decay = 0.0  # decay would pull full fine-tuning toward zero, not toward the pretrained model
  c.train.log_every = 10
  c.train.eval_every = 50
  c.checkpoint.every = 50
  return c
