"""Injected synthetic tasks (registry): T_CMP (`cmp`) and T_ADD (`add`), paper §4.

Adding a task: one module here defining a `@register`ed subclass of `base.PairTask` (a name, a token block, a
hidden structure and a label rule), plus its module name in `_MODULES`. It is then configurable as
`data.tasks.<name>` (configs/lm.py) and evaluated as `eval/<name>/...`. Instance format and label position: base.py.
The toy regression family (toy.py) is not a token task: it shares only the placement machinery (schedules.py).
"""

from __future__ import annotations

import importlib

from scaling.lm.data.tasks.base import LABEL_POS, REGISTRY, TOKENS_PER_INSTANCE, PairTask, TaskError, register

_MODULES = ("cmp", "add")
for _m in _MODULES:
  importlib.import_module(f"{__name__}.{_m}")

__all__ = ["LABEL_POS", "REGISTRY", "TOKENS_PER_INSTANCE", "PairTask", "TaskError", "build", "names", "register"]


def names() -> tuple[str, ...]:
  return tuple(sorted(REGISTRY))


def build(name: str, seed: int, vocab) -> PairTask:
  """Task `name` over `vocab`: a vocab.Vocabulary, or an int c for content ids [2, c) (PairTask.__init__)."""
  if name not in REGISTRY:
    raise TaskError(f"unknown task {name!r}; registered tasks: {', '.join(names())}")
  return REGISTRY[name](seed, vocab)


def symbols_needed() -> int:
  """Pool size that gives every registered task its block of symbols."""
  return max((c.token_block + 1) * c.n_symbols for c in REGISTRY.values())
