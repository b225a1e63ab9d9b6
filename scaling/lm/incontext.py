"""In-context (k-shot) evaluation sets: k train-split instances in the context before each test query.

A k-shot row is k shots and the query, each instance written as in training (TOK1 TOK2 LABEL EOD, so the EOD the
model learnt after every instance separates them), padded with PAD:

  a1 b1 l1 EOD  a2 b2 l2 EOD  ...  ak bk lk EOD  q1 q2 LABEL EOD  PAD ...

Only the query's LABEL target is scored (weight 1 at target index 4k + LABEL_POS). Rows are padded to a multiple
of `mixture.EVAL_ROW_LEN` positions, so k = 0 is exactly the ordinary task eval set `<task>` of
scaling/lm/data/mixture.py (same rows, same weights). Queries are the task's test split (its first
`data.task_eval_limit` subset when set); the shots of query pair p are train pairs drawn uniformly with
replacement from the hash of (task key, k, p, shot index) (scaling/core/hashrng.py), so a set is a pure function
of (seed, task, k) and a query keeps its shots whatever subset it appears in. Sets are named `<task>_<k>shot` and
scored like any eval set by scaling/lm/evaluate.py (`eval/<task>_<k>shot/{loss,accuracy,...}`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scaling.core import hashrng
from scaling.core.errors import ConfigError
from scaling.lm.data import mixture, sources
from scaling.lm.data import tasks as tasks_lib

DEFAULT_SHOTS = (0, 1, 5)


def set_name(task: str, k: int) -> str:
  return f"{task}_{k}shot"


def context_len(k: int) -> int:
  """Input positions a k-shot query needs: k instances, then TOK1 TOK2 (the LABEL is predicted at the last)."""
  return tasks_lib.TOKENS_PER_INSTANCE * k + tasks_lib.LABEL_POS + 1


def row_len(k: int) -> int:
  """Input positions per row: the instances rounded up to a multiple of EVAL_ROW_LEN (8 for k = 0 and 1)."""
  need = tasks_lib.TOKENS_PER_INSTANCE * (k + 1) - 1
  return max(mixture.EVAL_ROW_LEN, -(-need // mixture.EVAL_ROW_LEN) * mixture.EVAL_ROW_LEN)


def parse_shots(shots: str | Sequence[int]) -> tuple[int, ...]:
  """'0,1,5' or (0, 1, 5) -> sorted unique shot counts; ConfigError on anything but integers >= 0."""
  out = set()
  for s in shots.split(",") if isinstance(shots, str) else shots:
    if isinstance(s, str):
      if not s.strip():
        continue
      s = int(s) if s.strip().isdigit() else -1
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
      raise ConfigError(f"finetune.shots={shots!r} must list integers >= 0 — give shot counts like '0,1,5'")
    out.add(int(s))
  return tuple(sorted(out))


def kshot_rows(task: tasks_lib.PairTask, k: int, query_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(sequences (n, row_len(k) + 1) int32, weights (n, row_len(k)) float32) for the test pairs `query_ids`."""
  query_ids = np.asarray(query_ids, np.int64)
  n, per = len(query_ids), tasks_lib.TOKENS_PER_INSTANCE
  seqs = np.full((n, row_len(k) + 1), sources.PAD, np.int32)
  if k:
    pick = hashrng.integers(hashrng.key(task.key, "kshot", k), len(task.train_ids), query_ids[:, None],
                            np.arange(k)[None, :])  # (n, k)
    shots = task.instances(task.train_ids[pick].reshape(-1)).reshape(n, k * per)
    seqs[:, :k * per] = shots
  seqs[:, k * per:(k + 1) * per] = task.instances(query_ids)
  weights = np.zeros((n, row_len(k)), np.float32)
  weights[:, k * per + task.label_pos] = 1.0
  return seqs, weights


def kshot_eval_sets(config, task_names: Sequence[str], shots: Sequence[int] = DEFAULT_SHOTS,
                    batch_size: int | None = None) -> dict[str, list[dict[str, np.ndarray]]]:
  """`<task>_<k>shot` for every task and k, in the eval batch format (inputs / targets / weights)."""
  mix = mixture.Mixture.from_config(config)
  bs = int(batch_size or config.train.batch_size)
  limit = config.data.get("task_eval_limit", 0)
  out = {}
  for name in task_names:
    task = mix.task(name)
    ids = task.split_ids("test", limit)
    for k in shots:
      seqs, weights = kshot_rows(task, int(k), ids)
      out[set_name(name, int(k))] = [{"inputs": seqs[i:i + bs, :-1], "targets": seqs[i:i + bs, 1:],
                                      "weights": weights[i:i + bs]} for i in range(0, len(ids), bs)]
  return out


def validate_shots(shots: Sequence[int], seq_len: int) -> None:
  """Every k-shot context must fit in the pretraining sequence length (positions beyond it were never trained)."""
  for k in shots:
    if context_len(k) > seq_len:
      raise ConfigError(f"finetune.shots: a {k}-shot query needs {context_len(k)} positions but data.seq_len="
                        f"{seq_len} — lower k to at most {(seq_len - tasks_lib.LABEL_POS - 1) // 4}")
