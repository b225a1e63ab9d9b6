"""Forgetting and gain: before/after deltas of the same held-out eval sets, as metrics.jsonl entries.

`before` is the eval dict of the pretrained model (the fine-tune's step-0 evaluation), `after` a later one, both
in scaling/lm/evaluate.py's form (`eval/<set>/{loss,loss_bits,accuracy,n}`). For every set in both:

  forget/<set>/delta_loss        after − before (nats per scored token; > 0 = worse)
  forget/<set>/delta_accuracy    after − before (< 0 = forgotten)
  forget/<set>/before_loss       the pretrained model's value, so each record stands alone
  forget/<set>/before_accuracy

and the roles of the fine-tuning study (task sets are those named like a registered task; `<task>_train`
probes and `<task>_<k>shot` sets get the per-set entries only):

  forget/target_delta_accuracy   gain on the target task's test split
  forget/target_delta_loss
  forget/background_delta_loss   held-out background loss change (forgetting of the pretraining corpus)
  forget/other_delta_accuracy    mean accuracy change over every other task's test split (absent if none)
  forget/other_min_delta_accuracy  the worst of those

A set whose `n` differs between the two dicts is not the same held-out set: that raises, rather than comparing
different data.
"""

from __future__ import annotations

import math

from scaling.core.errors import ScalingError
from scaling.lm.data import tasks as tasks_lib

BACKGROUND = "background"


def eval_sets_in(metrics: dict) -> set[str]:
  """Set names with an `eval/<set>/loss` entry."""
  return {k.split("/")[1] for k in metrics if k.startswith("eval/") and k.endswith("/loss") and k.count("/") == 2}


def deltas(before: dict, after: dict, target: str | None = None, background: str = BACKGROUND) -> dict[str, float]:
  """The entries listed in the module docstring, for the sets evaluated in both dicts."""
  out: dict[str, float] = {}
  common = sorted(eval_sets_in(before) & eval_sets_in(after))
  for s in common:
    n_before, n_after = before.get(f"eval/{s}/n"), after.get(f"eval/{s}/n")
    if n_before != n_after:
      raise ScalingError(f"eval set {s!r} scored {n_before} tokens before and {n_after} after; forgetting needs "
                         "the same held-out sets on both sides")
    for metric in ("loss", "accuracy"):
      b, a = before.get(f"eval/{s}/{metric}", math.nan), after.get(f"eval/{s}/{metric}", math.nan)
      out[f"forget/{s}/delta_{metric}"] = a - b
      out[f"forget/{s}/before_{metric}"] = b
  if target is not None and target in common:
    out["forget/target_delta_accuracy"] = out[f"forget/{target}/delta_accuracy"]
    out["forget/target_delta_loss"] = out[f"forget/{target}/delta_loss"]
  if background in common:
    out["forget/background_delta_loss"] = out[f"forget/{background}/delta_loss"]
  others = [out[f"forget/{s}/delta_accuracy"] for s in common if s in tasks_lib.REGISTRY and s != target]
  if others:
    out["forget/other_delta_accuracy"] = sum(others) / len(others)
    out["forget/other_min_delta_accuracy"] = min(others)
  return out
