"""Background corpora: the registry of random-access sources of fixed-length token sequences.

A source maps global sequence indices to `(n, seq_len + 1)` int32 rows (inputs are [:, :-1], targets [:, 1:]);
row i of a split is a pure function of (config, seed, split, i), which is what makes any batch rebuildable and
resume exact. Every source has a `Vocabulary` (vocab.py): its size, its PAD and EOD ids (0 and 1 for the built-in
sources, the tokenizer's own for a prepared corpus) and the pool injected tasks draw their symbols from
(`data.task_symbols`), so task tokens are ordinary vocabulary tokens, as in the paper.

Registered sources (config `data.source`):
  synthetic   a seeded artificial language with four difficulty levels, infinite, no files (the default; synthetic.py)
  local_text  text files matched by a glob, byte-level, held in memory (small corpora; text.py)
  tfds        a TFDS text dataset read through `tfds.data_source`, byte-level (text.py)
  prepared    a corpus tokenized once by `python -m scaling.lm.data.prepare` (any tokenizer), streamed from shards
              at any size (prepared.py)
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from scaling.core.errors import SourceError
from scaling.lm.data import prepared, tasks, tokenizers
from scaling.lm.data.synthetic import SyntheticLanguage
from scaling.lm.data.text import PREPARE_HINT, LocalText, TfdsText
from scaling.lm.data.vocab import BYTE_VOCAB, EOD, N_RESERVED, PAD, SYMBOL_MODES, Vocabulary

__all__ = ["BYTE_VOCAB", "EOD", "N_RESERVED", "PAD", "SOURCES", "SourceError", "make_source", "validate",
           "vocabulary"]

_VOCABULARIES: dict[str, Vocabulary] = {}


def validate(data_cfg, seed: int = 0) -> None:
  """Checks the source config (cheap: builds the source, touches files only to check they exist)."""
  name = data_cfg.source
  if name not in SOURCES:
    raise SourceError(f"data.source={name!r} is not one of {tuple(SOURCES)}")
  tok = data_cfg.get("tokenizer", tokenizers.BYTE)
  if name != "prepared" and tok != tokenizers.BYTE:
    tokenizers.check_file(tok)
    raise SourceError(f"data.tokenizer={tok!r} applies to prepared corpora; data.source={name!r} is "
                      f"{'its own token language' if name == 'synthetic' else 'byte-level'} ({PREPARE_HINT}, or "
                      "set data.tokenizer='byte')")
  if name in ("local_text", "tfds") and data_cfg.vocab_size < BYTE_VOCAB:
    raise SourceError(f"data.source={name!r} uses byte tokens (ids up to {BYTE_VOCAB - 1}); set "
                      f"data.vocab_size >= {BYTE_VOCAB}")
  mode = data_cfg.get("task_symbols", "random")
  if mode not in SYMBOL_MODES:
    raise SourceError(f"data.task_symbols={mode!r} is not one of {SYMBOL_MODES}")
  src = make_source(data_cfg, seed)
  if name == "tfds":
    src.data_source("train")
    src.data_source("eval")
  if name == "prepared":
    v, root = src.vocab.size, data_cfg.prepared.dir
    if data_cfg.vocab_size < v:
      raise SourceError(f"data.vocab_size={data_cfg.vocab_size} is smaller than the {v} ids of the tokenizer that "
                        f"prepared data.prepared.dir={root!r}; set data.vocab_size >= {v}")
    n_eval = src.n_windows["eval"]
    if data_cfg.eval_sequences > n_eval:
      raise SourceError(f"data.eval_sequences={data_cfg.eval_sequences} exceeds the {n_eval} eval windows of "
                        f"data.prepared.dir={root!r} at seq_len {data_cfg.seq_len}; lower data.eval_sequences or "
                        "prepare a larger eval split")


def make_source(data_cfg, seed: int):
  name = data_cfg.source
  if name not in SOURCES:
    raise SourceError(f"data.source={name!r} is not one of {tuple(SOURCES)}")
  return SOURCES[name](data_cfg, seed)


def vocabulary(data_cfg, seed: int = 0) -> Vocabulary:
  """The source's vocabulary with the task-symbol pool of `data.task_symbols` (cached per config and seed)."""
  cfg = data_cfg.to_dict() if hasattr(data_cfg, "to_dict") else dict(data_cfg)
  key = json.dumps([cfg, seed], sort_keys=True, default=str)
  if key not in _VOCABULARIES:
    _VOCABULARIES[key] = _vocabulary(data_cfg, seed)
  return _VOCABULARIES[key]


def _vocabulary(data_cfg, seed: int) -> Vocabulary:
  name, mode = data_cfg.source, data_cfg.get("task_symbols", "random")
  if name == "prepared":
    src = make_source(data_cfg, seed)
    base = src.vocab
  else:
    base = Vocabulary.contiguous(data_cfg.vocab_size if name == "synthetic" else BYTE_VOCAB)
  if mode not in ("rare", "absent"):
    return base.with_pool(mode, None, 0, seed, "")
  if name == "prepared":
    counts, where = src.token_counts(), "the prepared train split"
  else:
    rows = int(data_cfg.get("task_symbol_sample", 2048))
    sample = make_source(data_cfg, seed).sequences(np.arange(rows), "train")
    counts, where = np.bincount(sample.ravel(), minlength=base.size), f"a sample of {rows} train rows"
  return base.with_pool(mode, counts, tasks.symbols_needed(), seed, where)


def _synthetic(data_cfg, seed: int) -> SyntheticLanguage:
  s = data_cfg.synthetic
  regimes = s.regimes.to_dict() if hasattr(s.regimes, "to_dict") else dict(s.regimes)
  return SyntheticLanguage(data_cfg.vocab_size, data_cfg.seq_len, seed, successors=s.successors,
                           zipf_exponent=s.zipf_exponent, noise=s.noise, regimes=regimes,
                           copy_min_period=s.copy_min_period, copy_max_period=s.copy_max_period,
                           copy_noise=s.copy_noise)


def _local_text(data_cfg, seed: int) -> LocalText:
  lt = data_cfg.local_text
  return LocalText(lt.glob, data_cfg.seq_len, seed, lt.eval_fraction)


def _tfds(data_cfg, seed: int) -> TfdsText:
  t = data_cfg.tfds
  return TfdsText(t.name, t.split, t.eval_split, t.feature, t.data_dir, data_cfg.seq_len, seed)


def _prepared(data_cfg, seed: int) -> prepared.PreparedCorpus:
  p = data_cfg.prepared
  return prepared.PreparedCorpus(p.dir, data_cfg.seq_len, seed, data_cfg.get("tokenizer", tokenizers.BYTE),
                                 p.get("verify", "size"))


SOURCES: dict[str, Callable] = {"synthetic": _synthetic, "local_text": _local_text, "tfds": _tfds,
                                "prepared": _prepared}
