"""What every injected token task is: a hidden rule over a symbol set S, instances written at a row's start.

Instance layout (paper §4): the first four tokens of a training row are replaced by

    TOK1 TOK2 LABEL EOD          (sequence positions 0, 1, 2, 3; the rest of the row stays background text)

so, with targets = row[1:], target index 0 is TOK2, **index 1 (`LABEL_POS`) is the LABEL** (the task loss and
accuracy score only this one), index 2 is EOD. TOK1, TOK2 and LABEL are all symbols of S.

S: `n_symbols` (100) ordinary tokens chosen at random from the source's symbol pool (vocab.py: every content id by
default, or the corpus's rare / absent tokens). Every task takes its own block of one seeded permutation of the pool
(block `token_block`), so tasks never share symbols and co-injected tasks never give one input pair two labels; the
blocks do not depend on which tasks are enabled.
All n_symbols² ordered pairs (including a == b) are instances; a seeded permutation of the pairs puts half in
the test split and half in train. Everything hashes integer coordinates (scaling/core/hashrng.py), so S, the rule
and the split are identical on every machine and numpy version, and differ for another seed.
"""

from __future__ import annotations

import hashlib

import numpy as np

from scaling.core import hashrng
from scaling.core.errors import TaskError
from scaling.lm.data.vocab import Vocabulary

LABEL_POS = 1  # index into `targets` of the LABEL token
TOKENS_PER_INSTANCE = 4  # TOK1 TOK2 LABEL EOD
PURPOSE_SYMBOLS, PURPOSE_TASK = 31, 32

REGISTRY: dict[str, type[PairTask]] = {}




def register(cls):
  """Class decorator: makes the task available as data.tasks.<cls.name>."""
  if not cls.name or cls.name in REGISTRY:
    raise TaskError(f"task name {cls.name!r} is empty or registered twice")
  blocks = {c.token_block: n for n, c in REGISTRY.items()}
  if cls.token_block in blocks:
    raise TaskError(f"task {cls.name!r}: token_block {cls.token_block} is already used by {blocks[cls.token_block]!r}")
  REGISTRY[cls.name] = cls
  return cls


class PairTask:
  """Base class: subclasses set `name`, `token_block`, and implement `_build` and `_label`."""

  name: str = ""
  token_block: int = 0
  n_symbols: int = 100
  tokens_per_instance = TOKENS_PER_INSTANCE
  label_pos = LABEL_POS

  def __init__(self, seed: int, vocab: Vocabulary | int):
    """`vocab`: the source's Vocabulary (symbol pool and EOD id), or an int c for the built-in layout (content
    ids [N_RESERVED, c), EOD = 1)."""
    vocab = vocab if isinstance(vocab, Vocabulary) else Vocabulary.contiguous(vocab)
    n, pool = self.n_symbols, vocab.pool
    need = (self.token_block + 1) * n
    if need > len(pool):
      raise TaskError(f"task {self.name!r} needs {need} {vocab.pool_name} (its block {self.token_block} of {n} "
                      f"symbols) but the source has {len(pool)}; {vocab.pool_fix}")
    self.seed, self.eod_id = seed, int(vocab.eod_id)
    perm = hashrng.permutation(hashrng.key(seed, PURPOSE_SYMBOLS), len(pool))
    self.symbols = pool[perm[self.token_block * n:(self.token_block + 1) * n]].astype(np.int32)
    self.key = hashrng.key(seed, PURPOSE_TASK, self.name)
    self._build(self.key)
    a, b = np.divmod(np.arange(n * n), n)
    self.pairs = np.stack([a, b], 1)  # (n², 2) symbol indices; pair id = a·n + b
    self.labels = self._label(a, b)  # (n²,) symbol index of the LABEL
    order = hashrng.permutation(hashrng.key(self.key, "split"), n * n)
    self.test_ids = np.sort(order[:n * n // 2])
    self.train_ids = np.sort(order[n * n // 2:])

  # ---- what a task defines ----------------------------------------------------------------------------------------
  def _build(self, key: int) -> None:
    """Draws the hidden structure from `key`."""
    raise NotImplementedError

  def _label(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Symbol index of the LABEL for symbol indices (a, b)."""
    raise NotImplementedError

  # ---- instances ---------------------------------------------------------------------------------------------------
  def instances(self, pair_ids: np.ndarray) -> np.ndarray:
    """(m, 4) int32 rows TOK1 TOK2 LABEL EOD for pair ids."""
    pair_ids = np.asarray(pair_ids, np.int64)
    s = self.symbols
    a, b = self.pairs[pair_ids].T
    return np.stack([s[a], s[b], s[self.labels[pair_ids]], np.full(len(pair_ids), self.eod_id, np.int32)], 1)

  def train_instances(self, step: int, rows: np.ndarray) -> np.ndarray:
    """Instances injected in batch `step` at global rows `rows`: train pairs drawn uniformly (with replacement),
    a pure function of (seed, task, step, row)."""
    rows = np.asarray(rows, np.int64)
    pick = hashrng.integers(hashrng.key(self.key, "inject", step), len(self.train_ids), rows)
    return self.instances(self.train_ids[pick])

  def split_ids(self, split: str, limit: int = 0) -> np.ndarray:
    """Pair ids of the test split (all, sorted) or a fixed seeded subset of `limit` of them; same for train."""
    ids = {"test": self.test_ids, "train": self.train_ids}[split]
    if limit and limit < len(ids):
      ids = np.sort(ids[hashrng.permutation(hashrng.key(self.key, "subset", split), len(ids))[:limit]])
    return ids

  def split_sha256(self, split: str = "test") -> str:
    """Digest of the split's sorted (TOK1, TOK2, LABEL) token triples: equal iff the split is the same."""
    rows = self.instances(self.split_ids(split))[:, :3].astype("<i4")
    rows = rows[np.lexsort(rows.T[::-1])]
    return hashlib.sha256(rows.tobytes()).hexdigest()
