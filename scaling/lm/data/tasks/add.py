"""T_ADD: addition mod 100 under a hidden bijection S <-> Z_100 (paper §4).

LABEL = phi⁻¹((phi(TOK1) + phi(TOK2)) mod 100) for a seeded bijection phi, so LABEL is a symbol of S.
"""

from __future__ import annotations

import numpy as np

from scaling.core import hashrng
from scaling.lm.data.tasks.base import PairTask, register


@register
class Add(PairTask):
  name = "add"
  token_block = 1

  def _build(self, key: int) -> None:
    self.phi = hashrng.permutation(hashrng.key(key, "bijection"), self.n_symbols)  # symbol index -> Z_n
    self.phi_inv = np.argsort(self.phi)

  def _label(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return self.phi_inv[(self.phi[a] + self.phi[b]) % self.n_symbols]
