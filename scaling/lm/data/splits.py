"""Splits of a background source and the random-stream ids that keep their draws apart.

Every source serves three splits: `train` (the training stream), `eval` (the held-out background set) and
`entropy` (rows for the synthetic language's Bayes-loss estimate; corpora serve their eval text there). Each split
has its own purpose id, so one seed never gives two uses the same random numbers (scaling/core/hashrng.py).
"""

from __future__ import annotations

PURPOSE_LANGUAGE, PURPOSE_TRAIN, PURPOSE_EVAL, PURPOSE_ENTROPY = 11, 12, 13, 14
SPLITS = {"train": PURPOSE_TRAIN, "eval": PURPOSE_EVAL, "entropy": PURPOSE_ENTROPY}


def check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split {split!r} is not one of {tuple(SPLITS)}")
