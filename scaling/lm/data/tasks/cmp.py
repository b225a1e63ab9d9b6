"""T_CMP: comparison under a hidden global order of S (paper §4).

LABEL = the larger of TOK1 and TOK2 under a seeded total order of S (for TOK1 == TOK2, that token). Choosing
the larger symbol, not a "<"/">" token, keeps LABEL inside S (like T_ADD), needs no reserved ids (so byte
vocabularies work unchanged), and gives the 100 diagonal pairs a defined answer. Chance for a model that knows
the format but not the order is 1/2 off the diagonal.
"""

from __future__ import annotations

import numpy as np

from scaling.core import hashrng
from scaling.lm.data.tasks.base import PairTask, register


@register
class Compare(PairTask):
  name = "cmp"
  token_block = 0

  def _build(self, key: int) -> None:
    # rank[i] = position of symbol i in the hidden order (0 = smallest).
    self.rank = np.argsort(hashrng.permutation(hashrng.key(key, "order"), self.n_symbols))

  def _label(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(self.rank[a] >= self.rank[b], a, b)
