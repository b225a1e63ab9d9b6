"""Data of a fine-tune: which training tokens count, and the fixed held-out sets evaluated before and after.

Training batches are the pretraining mixture's (scaling/lm/data/mixture.py) for the fine-tune config's
`data.tasks` (the target task at high frequency, the other rows background replay). `loss_weights` then chooses
the scored tokens (`finetune.loss_tokens`):

  task   a task row scores only its instance's targets (TOK2, LABEL, EOD); a background row scores every token
  all    every token, as in pretraining (a task row is then mostly background text after the instance's EOD)

With `task`, a batch holds about (1 − share)·B·3 task tokens and share·B·(L − 1) background tokens, so even a
small background share dominates the summed loss; the dry run prints both counts.

`held_out_sets` is the fixed evaluation: the background set, every configured task's test split and train probe
(not only the tasks being trained, so forgetting of the others is measured), and the k-shot sets of
scaling/lm/incontext.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scaling.lm import incontext
from scaling.lm.data import mixture, pipeline
from scaling.lm.data import tasks as tasks_lib

LOSS_TOKENS = ("task", "all")


def loss_weights(batch: dict[str, np.ndarray], mode: str = "task") -> dict[str, np.ndarray]:
  """The batch with `weights` chosen by `mode` (module docstring); other arrays untouched."""
  if mode == "all":
    return batch
  if mode != "task":
    raise ValueError(f"loss_tokens={mode!r} is not one of {LOSS_TOKENS}")
  task_row_Bx1 = (batch["task_ids"] >= 0)[:, None]
  weights = np.where(task_row_Bx1, (batch["task_mask"] > 0).astype(np.float32), batch["weights"])
  return {**batch, "weights": weights.astype(np.float32)}


def tokens_per_batch(batch_size: int, seq_len: int, frequency: float, mode: str = "task") -> tuple[float, float]:
  """Mean (task, background) scored tokens per batch for a target task at `frequency` instances per batch."""
  per_task = tasks_lib.TOKENS_PER_INSTANCE - 1
  if mode == "all":
    return frequency * per_task, batch_size * seq_len - frequency * per_task
  return frequency * per_task, (batch_size - frequency) * seq_len


def shot_tasks(ft_cfg) -> tuple[str, ...]:
  """Tasks given k-shot sets: `finetune.shot_tasks` ('' = the target task)."""
  names = [t.strip() for t in str(ft_cfg.get("shot_tasks", "") or "").split(",") if t.strip()]
  return tuple(names) if names else (ft_cfg.target,)


def held_out_sets(config, batch_size: int | None = None) -> dict[str, list[dict[str, np.ndarray]]]:
  """background + `<task>` and `<task>_train` for every configured task + `<task>_<k>shot` (evaluate.py format)."""
  bs = int(batch_size or config.train.batch_size)
  d = config.data
  mix = mixture.Mixture.from_config(config)
  # Every configured task, trained now or not: eval_sets reads only `active` (task ids) and builds each task.
  every_task = dataclasses.replace(mix, active=tuple(range(len(mix.names))))
  sets = {"background": pipeline.eval_background(config, bs),
          **every_task.eval_sets(bs, d.get("task_eval_limit", 0), d.get("task_train_probe", 0))}
  ft = config.finetune
  sets.update(incontext.kshot_eval_sets(config, shot_tasks(ft), incontext.parse_shots(ft.shots), bs))
  return sets
