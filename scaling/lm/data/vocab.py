"""The id space a run's tokens live in: reserved ids, and which ids injected tasks may take as symbols.

Built-in sources (synthetic, byte-level text) reserve ids 0 and 1: PAD and EOD (end of document), and emit content
ids from N_RESERVED up. A prepared corpus (prepare.py) uses its tokenizer's own pad and end-of-sequence ids instead,
and its content ids are the tokenizer's ids minus its special tokens. `Vocabulary` carries both cases: the size,
PAD and EOD ids, and the *symbol pool*: the sorted candidate ids task symbols are drawn from (tasks/base.py).

Pools (config `data.task_symbols`):
  random   every content id (the paper: "100 vocabulary tokens chosen at random"; they also occur in the text)
  rare     the least frequent content ids that occur in the corpus (exactly as many as the tasks need)
  absent   content ids that never occur in the corpus, so task tokens appear only inside task instances
Frequencies come from the prepared corpus's full token histogram, or from a sample of train rows otherwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scaling.core import hashrng
from scaling.core.errors import SourceError

PAD, EOD = 0, 1
N_RESERVED = 2
BYTE_VOCAB = N_RESERVED + 256
SYMBOL_MODES = ("random", "rare", "absent")


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  size: int  # ids a source emits lie in [0, size)
  pad_id: int
  eod_id: int
  pool: np.ndarray  # sorted candidate task-symbol ids
  pool_name: str = "content tokens"  # for messages: what the pool holds
  pool_fix: str = "raise data.vocab_size"  # for messages: how to get a larger pool

  @classmethod
  def contiguous(cls, content_end: int) -> Vocabulary:
    """The built-in sources' layout: PAD = 0, EOD = 1, content ids [N_RESERVED, content_end)."""
    return cls(int(content_end), PAD, EOD, np.arange(N_RESERVED, max(int(content_end), N_RESERVED)))

  def with_pool(self, mode: str, counts: np.ndarray | None, need: int, seed: int, where: str) -> Vocabulary:
    """This vocabulary with the pool of `mode` (see the module docstring); `counts`: occurrences per id in the
    corpus (or a sample of it, described by `where`), needed for 'rare' and 'absent'."""
    if mode not in SYMBOL_MODES:
      raise SourceError(f"data.task_symbols={mode!r} is not one of {SYMBOL_MODES}")
    if mode == "random":
      return self
    c = np.zeros(self.size, np.int64)
    c[:min(len(counts), self.size)] = np.asarray(counts, np.int64)[:self.size]
    seen = c[self.pool]
    if mode == "absent":
      pool = self.pool[seen == 0]
      return dataclasses.replace(self, pool=pool, pool_name=f"tokens absent from {where}",
                                 pool_fix="use data.task_symbols='rare' or 'random', or a larger vocabulary")
    occurring = self.pool[seen > 0]
    if len(occurring) < need:
      raise SourceError(f"data.task_symbols='rare' needs {need} distinct tokens that occur in {where}, but only "
                        f"{len(occurring)} do; use data.task_symbols='random' or a larger corpus")
    ties = hashrng.bits(hashrng.key(seed, "rare-symbol-ties"), occurring)
    rarest = occurring[np.lexsort((ties, c[occurring]))[:need]]
    return dataclasses.replace(self, pool=np.sort(rarest), pool_name=f"rare tokens of {where}",
                               pool_fix="use data.task_symbols='random'")
