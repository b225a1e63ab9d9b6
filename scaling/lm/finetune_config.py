"""Resolving and validating fine-tuning configs (configs/finetune.py): an lm config plus a `finetune` section.

  finetune.method       full | lora | dora | frozen
  finetune.target       the task being taught (must be in data.tasks with frequency > 0 unless frozen)
  finetune.rank/alpha/targets/detach_norm   the adapter (scaling/lm/adapters.py)
  finetune.seed         adapter initialisation
  finetune.loss_tokens  task | all (scaling/lm/finetune_data.py)
  finetune.shots / shot_tasks   the k-shot eval sets (scaling/lm/incontext.py)

Every check raises ConfigError with one line naming the key and the fix. `check_pretrained` compares the config
with the pretrained run's config.json: the model's shape, the seed (it defines the tasks' symbols, rules and
splits) and the data vocabulary and source must match, or the fine-tune would teach or score a different task.
"""

from __future__ import annotations

import math

from ml_collections import config_dict

from scaling.core.errors import ConfigError
from scaling.lm import adapters, finetune_data, incontext, trainable
from scaling.lm import config as configlib
from scaling.lm.data import tasks as tasks_lib

EXPERIMENT = "finetune"
# TransformerConfig fields that define the parameter tree and its function (dtype, remat and attention kernel
# may differ between the pretraining and the fine-tuning machine).
MODEL_KEYS = ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "tie_embeddings", "qk_norm", "norm_style",
              "rope_theta", "norm_eps")
DATA_KEYS = ("vocab_size", "source")


def adapter_spec(config) -> adapters.AdapterSpec:
  ft = config.finetune
  targets = adapters.parse_targets(ft.targets) if ft.method in adapters.ADAPTER_METHODS else ()
  return adapters.AdapterSpec(method=ft.method, rank=ft.rank, alpha=ft.alpha, targets=targets,
                              detach_norm=bool(ft.detach_norm))


def resolve(config: config_dict.ConfigDict) -> config_dict.ConfigDict:
  """Fills None fields as an lm config does (scaling/lm/config.py resolve); returns a new, locked config."""
  return configlib.resolve(config, experiment=EXPERIMENT)


def lm_view(config: config_dict.ConfigDict) -> config_dict.ConfigDict:
  """The config as an lm config (experiment='lm'), for the pretraining checks it shares."""
  c = config_dict.ConfigDict(config.to_dict())
  c.experiment = "lm"
  return c


def validate(config: config_dict.ConfigDict, n_devices: int | None = None, n_processes: int = 1) -> None:
  """Every lm check (model, data, train, mesh) plus the fine-tuning ones; raises ConfigError on the first."""
  if config.get("experiment") != EXPERIMENT:
    raise ConfigError(f"experiment={config.get('experiment')!r}: scaling.finetune runs configs/finetune.py "
                      "configs; pretrain with python -m scaling.train")
  if "finetune" not in config:
    raise ConfigError("config has no `finetune` section — start from configs/finetune.py")
  configlib.validate(lm_view(config), n_devices, n_processes)
  ft = config.finetune
  adapter_spec(config).validate(configlib.model_config(config))
  _check_target(config)
  if ft.loss_tokens not in finetune_data.LOSS_TOKENS:
    raise ConfigError(f"finetune.loss_tokens={ft.loss_tokens!r} is not one of {finetune_data.LOSS_TOKENS}")
  if isinstance(ft.seed, bool) or not isinstance(ft.seed, int):
    raise ConfigError(f"finetune.seed={ft.seed!r} must be an integer")
  if not isinstance(ft.get("save_frozen", False), bool):
    raise ConfigError(f"finetune.save_frozen={ft.save_frozen!r} must be true or false")
  incontext.validate_shots(incontext.parse_shots(ft.shots), config.data.seq_len)
  for name in finetune_data.shot_tasks(ft):
    if name not in tasks_lib.REGISTRY:
      raise ConfigError(f"finetune.shot_tasks: unknown task {name!r} — registered: {', '.join(tasks_lib.names())}")


def _check_target(config) -> None:
  ft, tasks = config.finetune, config.data.tasks
  if ft.target not in tasks_lib.REGISTRY:
    raise ConfigError(f"finetune.target={ft.target!r} is not a registered task — choose one of "
                      f"{', '.join(tasks_lib.names())}")
  if ft.target not in tasks:
    raise ConfigError(f"finetune.target={ft.target!r} is not in data.tasks — add data.tasks.{ft.target}")
  freq = tasks[ft.target].get("frequency", 0.0)
  if ft.method != "frozen" and not (isinstance(freq, (int, float)) and math.isfinite(freq) and freq > 0):
    raise ConfigError(f"finetune.target={ft.target!r} has data.tasks.{ft.target}.frequency={freq!r}: a "
                      f"{ft.method} fine-tune would never see it — set a frequency > 0 (e.g. the batch size)")


def pretrained_mismatches(run_config: dict, config) -> list[str]:
  """'key: run=<value> config=<value>' for every field that must match the pretrained run (config.json's
  "config" entry, a plain dict of the run's resolved config)."""
  out = []
  pairs = [(f"model.{k}", run_config.get("model", {}).get(k), config.model.get(k)) for k in MODEL_KEYS]
  pairs += [(f"data.{k}", run_config.get("data", {}).get(k), config.data.get(k)) for k in DATA_KEYS]
  pairs.append(("seed", run_config.get("seed"), config.get("seed")))
  for key, theirs, ours in pairs:
    if theirs != ours:
      out.append(f"{key}: run={theirs!r} config={ours!r}")
  return out


def check_pretrained(run_config: dict, config, init_from: str) -> None:
  """ConfigError naming the first mismatch with the pretrained run (see the module docstring)."""
  bad = pretrained_mismatches(run_config, config)
  if bad:
    key = bad[0].split(":")[0]
    raise ConfigError(f"--init_from={init_from} was trained with a different {key} ({bad[0]}"
                      f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}) — set --config.{key} to the "
                      "run's value (configs/finetune.py:size=<its size>)")


def describe(config) -> str:
  """The fine-tuning lines of `--dry_run` (after scaling/lm/dryrun.py's, on `lm_view(config)`): the exact
  trainable count and what a batch scores. Allocates nothing."""
  ft, d = config.finetune, config.data
  plan = trainable.plan(adapter_spec(config), configlib.model_config(config), ft.seed)
  freq = float(d.tasks[ft.target].get("frequency", 0.0))
  task_tok, bg_tok = finetune_data.tokens_per_batch(config.train.batch_size, d.seq_len, freq, ft.loss_tokens)
  shots = ",".join(str(k) for k in incontext.parse_shots(ft.shots)) or "none"
  return "\n".join([
      plan.describe(),
      f"finetune    target={ft.target} frequency={freq:g}/batch "
      f"(background share {1 - freq / config.train.batch_size:.0%}) loss_tokens={ft.loss_tokens}: "
      f"~{task_tok:g} task + ~{bg_tok:g} background scored tokens per batch",
      f"eval        held-out sets before/after: background, every configured task; k-shot k={shots} on "
      f"{','.join(finetune_data.shot_tasks(ft))}",
  ])
