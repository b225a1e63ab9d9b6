"""Evaluation on fixed held-out sets.

An eval set is a named list of *global* numpy batches (every process builds the same set, deterministically) in
the trainer's batch format; `weights` selects the scored tokens (all tokens for the background set, the LABEL
token for a task's test split `<task>` and its train probe `<task>_train`). Task rows are one instance padded to
8 positions, not seq_len (a LABEL's context is just TOK1 TOK2), so they cost ~seq_len/8 times less and compile one
more eval shape. Each set is evaluated in full and reported as

  eval/<name>/loss       mean nats per scored token
  eval/<name>/loss_bits  the same in bits
  eval/<name>/accuracy   fraction of scored tokens whose argmax prediction is right
  eval/<name>/n          number of scored tokens
"""

from __future__ import annotations

import math

import jax
import numpy as np

from scaling.core.loop import Callback
from scaling.lm.data import pipeline


def pad_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  """Pads rows up to `size` with zero-weight copies of row 0 (they add nothing to any weighted sum)."""
  n = next(iter(batch.values())).shape[0]
  if n == size:
    return batch
  out = {}
  for k, v in batch.items():
    filler = np.repeat(v[:1], size - n, axis=0)
    if k == "weights":
      filler = np.zeros_like(filler)
    out[k] = np.concatenate([v, filler], axis=0)
  return out


class Eval(Callback):
  """eval/<set>/* on fixed held-out sets every `every` steps, at step 0 of a fresh run and at the last step."""

  at_start = True
  records = True

  def __init__(self, setup, eval_sets: dict[str, list[dict[str, np.ndarray]]], every: int):
    self.setup, self.sets, self.every = setup, eval_sets, int(every)

  def __call__(self, loop, step: int) -> dict[str, float]:
    return evaluate(self.setup, self.params(loop.state), self.sets)

  def params(self, state):
    """What `setup.eval_step` takes as its first argument (a fine-tune's: the trainable and frozen trees)."""
    return state["params"]


def evaluate(setup, params, eval_sets: dict[str, list[dict[str, np.ndarray]]]) -> dict[str, float]:
  """Runs `setup.eval_step` over every batch of every set; returns the metrics above."""
  bs = setup.config.train.batch_size
  rows = pipeline.local_rows(bs, jax.process_index(), jax.process_count())
  out: dict[str, float] = {}
  for name, batches in eval_sets.items():
    loss = weight = correct = 0.0
    for batch in batches:
      full = pad_batch(batch, bs)
      local = {k: v[rows.start:rows.stop] for k, v in full.items()}
      sums = jax.device_get(setup.eval_step(params, setup.place_batch(local)))
      loss += float(np.sum(sums["loss_sum"], dtype=np.float64))
      weight += float(np.sum(sums["weight_sum"], dtype=np.float64))
      correct += float(np.sum(sums["correct_sum"], dtype=np.float64))
    mean = loss / weight if weight else math.nan
    out[f"eval/{name}/loss"] = mean
    out[f"eval/{name}/loss_bits"] = mean / math.log(2)
    out[f"eval/{name}/accuracy"] = correct / weight if weight else math.nan
    out[f"eval/{name}/n"] = int(weight)
  return out


def default_eval_sets(config) -> dict[str, list[dict[str, np.ndarray]]]:
  """`background` (held-out background text) plus, per injected task, `<task>` (its whole test split, scored on
  the LABEL token: n = 5000 for cmp/add) and `<task>_train` (a fixed train-split probe, data.task_train_probe)."""
  return {"background": pipeline.eval_background(config), **pipeline.eval_tasks(config)}
