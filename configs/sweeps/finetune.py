"""Fine-tuning sweep (issue 13): pretrained size x method (with LoRA/DoRA rank) x learning rate x fine-tune seed,
every run starting from the pretraining run of its size in an earlier sweep.

  python launch/sweep.py --config=configs/sweeps/demo.py --sweep_dir=sweeps/demo          # pretrain first
  python launch/sweep.py --config=configs/sweeps/finetune.py --sweep_dir=sweeps/finetune --dry_run
  python launch/sweep.py --config=configs/sweeps/finetune.py --sweep_dir=sweeps/finetune
  python launch/sweep.py --config=configs/sweeps/finetune.py:small --sweep_dir=sweeps/ft-small   # CPU-sized

Presets (comma-separated key=value):
  pretrained  the pretraining sweep dir (default sweeps/demo; relative paths are taken from the repository root)
  pick        for sizes with several pretraining runs, the one whose values include this short key=value (default
              frequency=32.0+seed=0: demo's rarest T_CMP frequency, where its smaller sizes miss the task, and its
              first seed); '+' joins several; keys are the last part of a varying or overridden key
  target      the task taught (default add, which demo never injects; its T_CMP is the other task watched);
              target=cmp re-teaches the task demo injected rarely (missed by its small sizes)
  background  share of background-replay rows in a fine-tune batch (configs/finetune.py; default 0)
  steps       fine-tuning steps (default 300)
  small       the smallest and largest size, rank 8 only, one learning rate per method, one seed

The launcher resolves `init_from` per size through `derived`: it reads `<pretrained>/manifest.json`, finds the
run of that model.size (and `pick`), and sets finetune.init_from to its run dir and the keys the fine-tune must
share with it (seed, data.vocab_size, data.seq_len, data.source) from its config.json, and the k-shot evals
(finetune.shots: 0, 1, 3, 5 where the context fits the pretrained seq_len; demo's 8 tokens hold one shot). A missing manifest or size
is one error line naming the sweep to run first. Methods and ranks are zipped, not crossed: full and frozen have
no rank, and frozen (the pretrained model, evaluated) no learning rate, so each appears once per size and seed.
The fine-tune seed (finetune.seed) picks the adapter initialisation and the fine-tune's data stream; the top-level
seed is the pretrained run's (it defines the tasks).
"""

from __future__ import annotations

import os

import ml_collections

from launch import manifest as manifest_lib
from launch.configfile import REPO
from scaling.core import rundir
from scaling.core.configtools import parse_arg
from scaling.lm import incontext

PRESETS = {"pretrained": "sweeps/demo", "pick": "frequency=32.0+seed=0", "target": "add", "background": 0.0, "steps": 300,
           "small": False}
SIZES = ["20K", "50K", "200K"]  # demo's sizes on both sides of its N* at 32 per batch
SHOTS = (0, 1, 3, 5)
RANKS = [4, 16]
LEARNING_RATES = {"full": [3e-4, 1e-3, 3e-3], "lora": [1e-3, 5e-3, 2e-2], "dora": [1e-3, 5e-3, 2e-2]}
SHARED_KEYS = ("seed", "data.vocab_size", "data.seq_len", "data.source")


def method_table(small: bool) -> dict[str, list]:
  """The zipped (method, rank, learning rate) group: frozen once, full per rate, adapters per rank and rate."""
  ranks = [8] if small else RANKS
  lrs = {m: [v[len(v) // 2]] for m, v in LEARNING_RATES.items()} if small else LEARNING_RATES
  rows = [("frozen", 8, 1e-3)] + [("full", 8, lr) for lr in lrs["full"]]
  rows += [(m, r, lr) for m in ("lora", "dora") for r in ranks for lr in lrs[m]]
  return {"finetune.method": [m for m, _, _ in rows], "finetune.rank": [r for _, r, _ in rows],
          "train.learning_rate": [lr for _, _, lr in rows]}


def _matches(values: dict, pick: str) -> bool:
  short = {k.rsplit(".", 1)[-1]: v for k, v in values.items()}
  for item in filter(None, pick.split("+")):
    key, _, value = item.partition("=")
    if key not in short or str(short[key]) != value and _number(short[key]) != _number(value):
      return False
  return True


def _number(v):
  try:
    return float(v)
  except (TypeError, ValueError):
    return v


def pretrained_runs(sweep_dir: str, pick: str) -> dict[str, str]:
  """model.size -> run dir of the pretraining sweep in `sweep_dir` (the run matching `pick` where several)."""
  m = manifest_lib.read_manifest(sweep_dir)
  if m is None:
    raise ValueError(f"no manifest.json in {sweep_dir} — run the pretraining sweep first (python launch/sweep.py "
                     "--config=configs/sweeps/demo.py) or set the preset pretrained=<its sweep dir>")
  out: dict[str, list[str]] = {}
  for rec in m["runs"]:
    size = rec.get("overrides", {}).get("model.size")
    if size is not None and _matches({**rec.get("overrides", {}), **rec.get("varying", {})}, pick):
      out.setdefault(str(size), []).append(os.path.join(sweep_dir, rec["workdir"]))
  many = {s: v for s, v in out.items() if len(v) > 1}
  if many:
    size, dirs = next(iter(many.items()))
    raise ValueError(f"{len(dirs)} runs of size {size} in {sweep_dir} match pick={pick!r} — name one more varying "
                     "value, e.g. pick=frequency=32.0+seed=0")
  return {s: v[0] for s, v in out.items()}


def linked_keys(sweep_dir: str, pick: str):
  """The sweep's `derived`: overrides -> finetune.init_from and the keys shared with the pretrained run."""

  def derived(overrides: dict) -> dict:
    runs = pretrained_runs(sweep_dir, pick)
    size = overrides["model.size"]
    if size not in runs:
      raise ValueError(f"no pretraining run of model.size={size} matching pick={pick!r} in {sweep_dir} (sizes "
                       f"there: {', '.join(sorted(runs)) or 'none'}) — pretrain it or drop the size")
    cfg = rundir.RunDir(runs[size]).read_config()["config"]
    shared = {k: cfg[k] if "." not in k else cfg[k.split(".")[0]][k.split(".")[1]] for k in SHARED_KEYS}
    shots = ",".join(str(k) for k in SHOTS if incontext.context_len(k) <= shared["data.seq_len"])
    return {"finetune.init_from": runs[size], **shared, "finetune.shots": shots}

  return derived


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  opts = parse_arg(arg, PRESETS, "configs/sweeps/finetune.py:pretrained=sweeps/demo,small")
  pretrained = opts["pretrained"] if os.path.isabs(opts["pretrained"]) else os.path.join(REPO, opts["pretrained"])
  c = ml_collections.ConfigDict()
  c.name = "finetune-small" if opts["small"] else "finetune"
  c.entrypoint = "scaling.finetune"
  c.base = f"configs/finetune.py:target={opts['target']},background={opts['background']},steps={opts['steps']}"
  c.overrides = {
      "data": {"task_eval_limit": 1000, "task_train_probe": 500, "eval_sequences": 64},
      "train": {"log_every": 25, "eval_every": 100},
      "checkpoint": {"every": 100},
  }
  c.axes = [{"model.size": [SIZES[0], SIZES[-1]] if opts["small"] else SIZES}, method_table(opts["small"]),
            {"finetune.seed": [0] if opts["small"] else [0, 1]}]
  c.derived = linked_keys(pretrained, opts["pick"])
  c.backend = {"local": {"max_parallel": 0}}
  return c
