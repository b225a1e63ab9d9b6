"""Realized task frequencies: every schedule places what the config says, over >= 100K sequences.

Tolerances are 4 standard deviations of the count under the schedule's own randomness (binomial per row), so a
placement bug of a few percent of the rate fails; deterministic schedules must match exactly.
"""

import math

import numpy as np

from scaling.lm.data import mixture, pipeline, tasks
from tests.lm.data.common import data_config

B = 16
N_BATCHES = 6400  # 102,400 sequences


def _counts(config, n_batches=N_BATCHES):
  """(mixture, (n_batches, n_tasks) realized instances per batch and task id)."""
  mix = mixture.Mixture.from_config(config)
  out = np.zeros((n_batches, len(mix.names)), np.int64)
  for i in range(n_batches):
    ids = mix.allocation(i)
    out[i] = np.bincount(ids[ids >= 0], minlength=len(mix.names))
  return mix, out


def _col(mix, counts, name):
  return counts[:, mix.names.index(name)]


def test_random_matches_frequency_within_binomial_error_including_one_per_ten_batches():
  mix, counts = _counts(data_config(B, cmp=0.1, add=3.0))
  for name, f in (("cmp", 0.1), ("add", 3.0)):
    total = _col(mix, counts, name).sum()
    sd = math.sqrt(N_BATCHES * f * (1 - f / B))  # each batch: Binomial(B, f / B)
    assert abs(total - N_BATCHES * f) < 4 * sd, (name, total, N_BATCHES * f, sd)
  # Independent placement, not an even interleave: the rare task's gaps vary and some batches hold two.
  cmp = _col(mix, counts, "cmp")
  assert len(set(np.diff(np.flatnonzero(cmp)))) > 10
  assert cmp.max() >= 2


def test_random_keeps_its_mean_next_to_deterministic_tasks():
  # withhold takes 10 rows every 20th batch; the random task's rate must not drop in those batches on average.
  mix, counts = _counts(data_config(B, cmp=(0.5, "withhold", 20), add=3.0))
  total = _col(mix, counts, "add").sum()
  assert abs(total - N_BATCHES * 3.0) < 4 * math.sqrt(N_BATCHES * 3.0)  # binomial variance <= its mean


def test_interleave_is_exact_and_evenly_spaced():
  mix, counts = _counts(data_config(B, cmp=(0.1, "interleave"), add=(2.5, "interleave")))
  cmp, add = _col(mix, counts, "cmp"), _col(mix, counts, "add")
  np.testing.assert_array_equal(np.flatnonzero(cmp), np.arange(9, N_BATCHES, 10))  # exactly one every 10 batches
  assert set(cmp.tolist()) == {0, 1}
  np.testing.assert_array_equal(add, np.tile([2, 3], N_BATCHES // 2))
  mix, counts = _counts(data_config(B, cmp=(0.3, "interleave")), 1000)
  cum = np.cumsum(_col(mix, counts, "cmp"))
  np.testing.assert_array_equal(cum, np.floor(np.arange(1, 1001) * 0.3 + 1e-9).astype(int))  # never drifts


def test_burst_and_withhold_place_exactly_the_stated_counts():
  mix, counts = _counts(data_config(B, cmp=(1.0, "burst", 10), add=(0.5, "burst", 4)), 2000)
  steps = np.arange(2000)
  np.testing.assert_array_equal(_col(mix, counts, "cmp"), np.where(steps % 10 == 0, 10, 0))
  np.testing.assert_array_equal(_col(mix, counts, "add"), np.where(steps % 4 == 0, 2, 0))
  # Paper Fig 4: withheld G = 50 batches, then G·f = 5 instances in one batch; long-run frequency unchanged.
  mix, counts = _counts(data_config(B, cmp=(0.1, "withhold", 50), add=3.0), 2000)
  np.testing.assert_array_equal(_col(mix, counts, "cmp"), np.where(steps % 50 == 49, 5, 0))
  assert _col(mix, counts, "cmp").sum() == 2000 * 0.1


def test_pipeline_realizes_the_allocation_and_ratios_hold_per_host():
  """Through the real Grain iterator: 1600 batches x 64 rows = 102,400 sequences."""
  b, n = 64, 1600
  c = data_config(b, seq_len=8, cmp=0.1, add=(2.5, "interleave"))
  mix = mixture.Mixture.from_config(c)
  it = pipeline.make_train_iterator(c)
  ids = np.stack([next(it)["task_ids"] for _ in range(n)])  # (n, b)
  np.testing.assert_array_equal(ids, np.stack([mix.allocation(i) for i in range(n)]))
  cmp_id, add_id = mix.names.index("cmp"), mix.names.index("add")
  realized = (ids == cmp_id).sum()
  assert abs(realized - n * 0.1) < 4 * math.sqrt(n * 0.1)
  assert (ids == add_id).sum() == n * 2.5
  # Per-token frequency as reported in the run summary = realized share of training tokens in instances.
  summary = mix.summary()
  tok = ((ids >= 0).sum() * tasks.TOKENS_PER_INSTANCE) / (n * b * c.data.seq_len)
  expected = summary["cmp"]["frequency_per_token"] + summary["add"]["frequency_per_token"]
  assert abs(tok - expected) < 0.05 * expected
  # Two processes: each holds half the rows; each host's long-run share is half of every task's rate.
  for host in (pipeline.local_rows(b, 0, 2), pipeline.local_rows(b, 1, 2)):
    part = ids[:, host.start:host.stop]
    assert abs((part == cmp_id).sum() - n * 0.1 / 2) < 4 * math.sqrt(n * 0.1 / 2)
    assert abs((part == add_id).sum() - n * 2.5 / 2) < 4 * math.sqrt(n * 2.5 / 2)
  # The trainer's data/<task>/count is the cumulative realized count, incrementally and after a restart.
  counter = mixture.RealizedCounts(c)
  assert counter.record(n // 2) == {"data/add/count": int((ids[:n // 2] == add_id).sum()),
                                    "data/cmp/count": int((ids[:n // 2] == cmp_id).sum())}
  assert counter.record(n)["data/cmp/count"] == realized
  assert mixture.RealizedCounts(c).record(n)["data/cmp/count"] == realized


def test_zero_frequency_tasks_are_dropped_but_summarised():
  c = data_config(B, cmp=0.0, add=1.0)
  mix = mixture.Mixture.from_config(c)
  assert mix.active_names == ("add",)
  assert not any((mix.allocation(i) == mix.names.index("cmp")).any() for i in range(500))
  assert set(mixture.RealizedCounts(c).record(10)) == {"data/add/count"}
  assert set(pipeline.eval_tasks(c)) == {"add", "add_train"}
  s = mix.summary()
  assert s["cmp"]["frequency_per_batch"] == 0 and s["cmp"]["schedule"] is None
  assert s["add"] == {"frequency_per_batch": 1.0, "frequency_per_token": 4 / (B * 16), "schedule": "random",
                      "period": 1, "test_split_sha256": mix.task("add").split_sha256(), "n_train": 5000}
  none = data_config(B)
  assert not mixture.Mixture.from_config(none).active
  assert (next(pipeline.make_train_iterator(none))["task_ids"] == -1).all()
