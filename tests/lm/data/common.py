"""Small configs for the data tests."""

from __future__ import annotations

from tests import helpers


def data_config(batch_size: int = 16, seq_len: int = 16, vocab_size: int = 256, **tasks):
  """helpers.tiny_config() with room for the tasks' symbol sets; tasks: name=(frequency[, schedule[, period]])."""
  c = helpers.tiny_config()
  c.data.vocab_size, c.data.seq_len = vocab_size, seq_len
  c.train.batch_size = batch_size
  for name, spec in tasks.items():
    spec = spec if isinstance(spec, tuple) else (spec,)
    c.data.tasks[name].frequency = float(spec[0])
    if len(spec) > 1:
      c.data.tasks[name].schedule = spec[1]
    if len(spec) > 2:
      c.data.tasks[name].period = int(spec[2])
  return c
