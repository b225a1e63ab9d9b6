"""Language-model experiment: an OLMo-2 style decoder on a background corpus with injected rare tasks.

Usage (any field can be overridden with --config.<key>=<value>):

  python -m scaling.train --config=configs/lm.py:size=1M --workdir=runs/lm-1M
  python -m scaling.train --config=configs/lm.py:size=4B --workdir=/tmp/x --dry_run
  python -m scaling.train --config=configs/lm.py:size=200K --config.train.steps=300 --workdir=runs/a
  python -m scaling.train --config=configs/lm.py:size=1M --config.data.tasks.cmp.frequency=10 --workdir=runs/c
  python -m scaling.train --config=configs/lm.py:size=1B,preset=paper --config.memory.plan_devices=64 \
      --config.memory.device_gib=80 --workdir=/tmp/x --dry_run

The config arg is a comma-separated list of key=value presets: `size` (a ladder name from scaling/lm/ladder.py) and
`preset`: `paper` sets the paper's regime (PAPER below: 4096-token sequences, a 100,352-id subword vocabulary,
bf16 compute on fp32 master weights, FSDP over all devices, full remat, z-loss, ~4.2M tokens per step for 50K
steps); any of its values can still be overridden. Train it on a prepared corpus (scaling/lm/data/prepare.py):
--config.data.source=prepared --config.data.prepared.dir=DIR --config.data.tokenizer=TOK --config.data.vocab_size=V.

Fields left as None are filled when the config is resolved (scaling/lm/config.py): model dims from the ladder entry
`model.size`; batch size, steps, learning rate and warmup from `scaling.lm.ladder.run_settings` at that size. The
resolved config is what config.json records.
"""

from __future__ import annotations

from ml_collections import config_dict

from scaling.core.configtools import parse_arg
from scaling.lm.data import synthetic
from scaling.mechanisms import settings as mechanism_settings

placeholder = config_dict.placeholder
PRESETS = {"size": "1M", "preset": ""}  # the `:arg` presets and their defaults


# The paper's training regime (arXiv 2605.29548 §4: OLMo-2 style models, up to 210B tokens in ~50K steps).
PAPER = {
    "data.seq_len": 4096,
    "data.vocab_size": 100_352,  # OLMo-2's tokenizer (100,278 ids) padded to a multiple of 128
    "model.dtype": "bfloat16",  # compute
    "model.param_dtype": "float32",  # master weights (and AdamW moments)
    "model.remat": "full",
    "sharding.preset": "fsdp",
    "mesh.data": 1,
    "mesh.fsdp": -1,  # FSDP over all devices
    "train.batch_size": 1024,  # x 4096 tokens = 4.2M tokens per step
    "train.steps": 50_000,  # ~210B tokens
    "train.z_loss": 1e-5,  # OLMo-2's z-loss coefficient
}
REGIMES = {"paper": PAPER}  # preset=<name>


def _apply(c: config_dict.ConfigDict, values: dict) -> None:
  for key, value in values.items():
    node = c
    *parents, leaf = key.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value


def get_config(arg: str = "") -> config_dict.ConfigDict:
  opts = parse_arg(arg, PRESETS, "configs/lm.py:size=1M,preset=paper")
  if opts["preset"] not in ("", *REGIMES):
    raise ValueError(f"configs/lm.py preset={opts['preset']!r} is not one of {tuple(REGIMES)}")
  c = config_dict.ConfigDict()
  c.experiment = "lm"
  c.seed = 0

  # ---- model: dims None -> taken from the ladder entry `size`.
  c.model = config_dict.ConfigDict()
  c.model.size = opts["size"]
  c.model.d_model = placeholder(int)
  c.model.n_layers = placeholder(int)
  c.model.n_heads = placeholder(int)
  c.model.d_ff = placeholder(int)
  c.model.vocab_size = placeholder(int)  # None -> data.vocab_size
  c.model.tie_embeddings = False
  c.model.qk_norm = True
  c.model.norm_style = "olmo2"
  c.model.rope_theta = 10_000.0
  c.model.norm_eps = 1e-6
  c.model.init_std = 0.02
  c.model.dtype = "float32"  # compute dtype; "bfloat16" on accelerators
  c.model.param_dtype = "float32"
  c.model.remat = "none"  # none | full | dots
  c.model.attention_impl = placeholder(str)  # None (scaling/lm/attention.py) | "xla" | "cudnn" (jax.nn's)
  c.model.scan_layers = "auto"  # auto | scan | unroll: how the stacked layers run (auto: unroll <= 16 layers, scan with remat)

  # ---- data: a background corpus with injected rare tasks (scaling/lm/data; batch format in pipeline.py).
  c.data = config_dict.ConfigDict()
  c.data.source = "synthetic"  # synthetic | local_text | tfds | prepared (scaling/lm/data/sources.py)
  # byte | a SentencePiece .model | a Hugging Face tokenizer.json; a prepared corpus must name the tokenizer it was
  # prepared with (checked by sha256). Only data.source='prepared' uses it (scaling/lm/data/tokenizers.py).
  c.data.tokenizer = "byte"
  # 2 reserved ids (PAD, EOD) + 1022 content tokens: room for the tasks' two disjoint 100-symbol sets (each ~10%
  # of the vocabulary, drawn at random, mostly rare tokens of the Zipfian background). Byte sources need >= 258.
  c.data.vocab_size = 1024
  c.data.seq_len = 128
  c.data.synthetic = config_dict.ConfigDict()
  c.data.synthetic.successors = 8  # distinct next tokens per context in the hidden Markov chains
  c.data.synthetic.zipf_exponent = 1.1  # of the unigram and successor distributions
  c.data.synthetic.noise = 0.1  # probability a chain token is drawn from the unigram instead
  # Difficulty levels, as weights of the regime each row (document) draws: i.i.d. unigram, first-order chain,
  # second-order chain (vocab² contexts: more than a small model can hold), copy of a motif (induction).
  c.data.synthetic.regimes = config_dict.ConfigDict(synthetic.DEFAULT_REGIMES)
  c.data.synthetic.copy_min_period = 8  # copy rows repeat a motif of a period drawn uniformly in [min, max]
  c.data.synthetic.copy_max_period = 32
  c.data.synthetic.copy_noise = 0.05  # probability a repeated token is a unigram draw instead
  c.data.local_text = config_dict.ConfigDict()
  c.data.local_text.glob = ""  # e.g. "~/corpus/**/*.txt"; files are byte-tokenized (byte b -> id b + 2)
  c.data.local_text.eval_fraction = 0.01  # trailing share of the joined files held out for eval
  c.data.tfds = config_dict.ConfigDict()
  c.data.tfds.name = ""  # a prepared TFDS dataset (array_record), e.g. "my_corpus" or "my_corpus/config:1.0.0"
  c.data.tfds.split = "train"  # TFDS slicing works, e.g. "train[:99%]"
  c.data.tfds.eval_split = "validation"  # e.g. "train[99%:]" when there is no validation split
  c.data.tfds.feature = "text"  # the text feature (byte-tokenized)
  c.data.tfds.data_dir = ""  # "" = TFDS default (~/tensorflow_datasets)
  c.data.prepared = config_dict.ConfigDict()
  c.data.prepared.dir = ""  # written by python -m scaling.lm.data.prepare --out=DIR
  c.data.prepared.verify = "size"  # size: shard sizes checked at start | full: every shard's sha256 too
  # Task symbols: random (any content id, the paper) | rare (the corpus's least frequent tokens) | absent (tokens
  # that never occur in the corpus). Counts: a prepared corpus's histogram, else this many train rows.
  c.data.task_symbols = "random"
  c.data.task_symbol_sample = 2048
  # Injected tasks (scaling/lm/data/tasks): frequency = mean instances per batch (0.1 = one every 10 batches; 0 =
  # off); schedule random | interleave | burst | withhold; period = batches per injection for burst / withhold
  # (e.g. Fig 6b "N every N batches": frequency=1, schedule=burst, period=N). scaling/core/schedules.py.
  c.data.tasks = config_dict.ConfigDict()
  for name in ("cmp", "add"):
    c.data.tasks[name] = config_dict.ConfigDict({"frequency": 0.0, "schedule": "random", "period": 1})
  c.data.task_eval_limit = 0  # test instances evaluated per task (0: the whole test split, 5000 for cmp/add)
  c.data.task_train_probe = 1000  # fixed train instances evaluated as eval/<task>_train (0: off)
  c.data.worker_count = 0  # Grain worker processes (0: in-process)
  c.data.prefetch_threads = 2
  c.data.eval_sequences = 256  # held-out background sequences evaluated at each eval step

  # ---- training: None -> scaling.lm.ladder.run_settings at this size.
  c.train = config_dict.ConfigDict()
  c.train.steps = placeholder(int)
  c.train.batch_size = placeholder(int)  # global sequences per optimizer step
  c.train.learning_rate = placeholder(float)
  c.train.warmup_steps = placeholder(int)
  c.train.tokens_per_param = 20.0  # used only for the default `steps`
  c.train.schedule = "cosine"  # scaling/core/optim.py SCHEDULES: cosine | wsd | constant
  c.train.min_lr_ratio = 0.1  # final LR / peak LR
  c.train.decay_fraction = 0.2  # wsd: fraction of steps spent decaying
  c.train.weight_decay = 0.1
  c.train.decay_embeddings = False
  c.train.b1 = 0.9
  c.train.b2 = 0.95
  c.train.eps = 1e-8
  c.train.grad_clip = 1.0  # global-norm clip; 0 disables
  c.train.grad_accum = 1  # microbatches per step
  c.train.steps_per_call = 1  # K > 1: K steps in one jitted call (one lax.scan; bit-identical to K calls)
  c.train.z_loss = 0.0
  c.train.divergence_factor = 10.0  # stop as diverged when a batch loss exceeds this x the first step's (0: off)
  c.train.log_every = 10
  c.train.eval_every = 100

  # ---- mechanism measurements during training (scaling/mechanisms/settings.py lists every key, its default and
  # meaning; paper Figs 7-9). Off by default except retention, which only acts on burst/withhold tasks.
  c.mechanisms = config_dict.ConfigDict(mechanism_settings.DEFAULTS)

  c.checkpoint = config_dict.ConfigDict()
  c.checkpoint.every = 100
  c.checkpoint.keep = 3
  c.checkpoint.async_save = True

  # ---- parallelism.
  c.mesh = config_dict.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  c.sharding = config_dict.ConfigDict()
  c.sharding.preset = "dp"  # dp | fsdp | fsdp_tp
  c.sharding.max_replicated = 0.05  # FSDP presets: fail if more of the parameter bytes stay replicated

  # ---- multi-process (jax.distributed); auto-detected on TPU VMs and under SLURM.
  c.distributed = config_dict.ConfigDict()
  c.distributed.mode = "auto"  # auto | off | on
  c.distributed.coordinator_address = ""  # host:port; explicit multi-process when set
  c.distributed.num_processes = 0
  c.distributed.process_id = -1
  c.distributed.local_device_count = 0  # CPU only: fake devices per process (tests)

  # ---- memory plan (scaling/lm/memory.py): --dry_run prints it; a model or microbatch that does not fit fails.
  c.memory = config_dict.ConfigDict()
  c.memory.device_gib = 0.0  # accelerator memory per device (0: what the device reports; CPU: unchecked)
  c.memory.plan_devices = 0  # --dry_run only: plan for this many devices, analytically (0: the devices present)

  c.tensorboard = False
  if opts["preset"]:
    _apply(c, REGIMES[opts["preset"]])
  return c
