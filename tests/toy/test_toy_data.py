"""The toy task family (scaling/toy/data.py): inputs, targets, counts and the Fig-4 injection protocol."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.core import schedules
from scaling.toy import data as td
from scaling.toy import theory as tt

# Jitted once: eager JAX compiles every primitive separately, which dominates these small tests on CPU.
gaussian = jax.jit(td.gaussian, static_argnums=(2, 3))


def _data(**kw):
  base = dict(K=6, r=4, beta=1.2, alpha=1.5, lam_norm="first", basis_seed=3, batch_size=40)
  base.update(kw)
  return td.ToyData(**base)


def test_task_names_are_one_based_and_padded():
  assert td.task_names(3) == ["t01", "t02", "t03"]
  assert td.task_names(32)[-1] == "t32"
  assert td.task_names(120)[:2] == ["t001", "t002"]


def test_gaussian_is_standard_normal_and_a_pure_function_of_seed_and_step():
  x = np.asarray(gaussian(7, 3, 2048, 256), np.float64).ravel()
  assert np.all(np.isfinite(x))
  n = x.size  # 524288 draws: standard errors ~0.0014 (mean), ~0.001 (std), ~0.007 (kurtosis)
  assert abs(x.mean()) < 0.006 and abs(x.std() - 1) < 0.005 and abs(np.mean(x ** 4) - 3) < 0.04, n
  # Kolmogorov–Smirnov distance to N(0, 1): ~1.36/sqrt(n) = 0.002 at 5%.
  xs = np.sort(x)
  cdf = 0.5 * (1 + np.vectorize(math.erf)(xs[::64] / math.sqrt(2)))
  assert np.max(np.abs(cdf - (np.arange(0, n, 64) + 0.5) / n)) < 0.004
  np.testing.assert_array_equal(np.asarray(gaussian(7, 3, 2048, 256)).ravel(), x.astype(np.float32))
  other = [np.asarray(gaussian(*a, 2048, 256)).ravel() for a in ((7, 4), (8, 3))]
  for y in other:
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.01
  # Row i does not depend on how many rows follow (extra rows extend a batch).
  np.testing.assert_array_equal(np.asarray(gaussian(7, 3, 10, 256)), np.asarray(gaussian(7, 3, 2048, 256))[:10])
  # jit/vmap friendly with traced seed and step.
  v = jax.jit(jax.vmap(lambda s: td.gaussian(s, jnp.int32(3), 4, 256)))(jnp.asarray([7, 8], jnp.uint32))
  np.testing.assert_array_equal(np.asarray(v[0]), np.asarray(gaussian(7, 3, 4, 256)))


def test_targets_are_the_task_projection():
  data = _data()
  spec, arrays = data.spec(), td.TaskArrays.build(data.spec())
  x, y, task = jax.jit(lambda: td.sample(data, arrays, seed=1, step=5))()
  assert x.shape == (40, spec.d) and y.shape == (40, spec.r)
  assert np.all(np.diff(np.asarray(task)) >= 0), "rows are sorted by task"
  B = spec.basis()
  for i in (0, 17, 39):
    k = int(task[i])
    want = np.sqrt(spec.lam[k]) * (np.asarray(x[i], np.float64) @ B[:, k * spec.r:(k + 1) * spec.r])
    np.testing.assert_allclose(np.asarray(y[i]), want, rtol=1e-4, atol=1e-5)


def test_counts_fill_the_batch_replay_exactly_and_follow_pi():
  data = _data(batch_size=64)
  c = np.stack([td.step_counts(data, 0, s) for s in range(3000)])
  assert np.all(c.sum(1) == 64)
  np.testing.assert_array_equal(td.step_counts(data, 0, 123), c[123])
  assert not np.array_equal(td.step_counts(data, 1, 123), c[123])
  # Mean count per batch = 64·π_k within 5 standard errors.
  pi = data.spec().pi
  se = np.sqrt(64 * pi * (1 - pi) / 3000)
  assert np.all(np.abs(c.mean(0) - 64 * pi) < 5 * se)


@pytest.mark.parametrize("G", [8, 40, 160, 640])
def test_withhold_gap_keeps_the_long_run_frequency_of_the_no_gap_setting_exactly(G):
  """Fig 4 protocol: withheld G batches, then G·f rows at once, on top of the base batch.

  Over T steps (T a multiple of G) the injected task gets exactly T·f instances, the same as the no-gap
  (evenly spaced) setting and so the same share T·f / (T·B + T·f) of all samples; every other task keeps
  its B base rows per batch, drawn identically in both settings.
  """
  f, B, T = 0.625, 64, 1280  # G·f whole for every G above; T·f = 800
  no_gap = _data(K=8, batch_size=B, inject=td.Inject(task=8, schedule="interleave", period=1, frequency=f))
  gap = _data(K=8, batch_size=B, inject=td.Inject(task=8, schedule="withhold", period=G, frequency=f))
  no_gap.validate()
  gap.validate()
  c0 = np.stack([td.step_counts(no_gap, 0, s) for s in range(T)])
  c1 = np.stack([td.step_counts(gap, 0, s) for s in range(T)])
  assert c0[:, 7].sum() == c1[:, 7].sum() == T * f
  assert np.all(c0[:, :7].sum(1) == B) and np.all(c1[:, :7].sum(1) == B)
  np.testing.assert_array_equal(c0[:, :7], c1[:, :7])  # the base rows do not depend on the injection
  # Withheld for G − 1 batches, then all G·f at once (batches G−1, 2G−1, …).
  assert set(np.flatnonzero(c1[:, 7])) == set(range(G - 1, T, G))
  assert np.all(c1[G - 1::G, 7] == G * f)
  assert td.extra_peak(gap) == G * f and td.mean_rows(gap) == td.mean_rows(no_gap) == B + f


def test_bad_injection_is_one_clear_error():
  with pytest.raises(schedules.ScheduleError, match="whole number"):
    _data(inject=td.Inject(task=2, schedule="withhold", period=3, frequency=0.5)).validate()
  with pytest.raises(schedules.ScheduleError, match="inject.schedule"):
    _data(inject=td.Inject(task=2, schedule="random", period=1, frequency=0.5)).validate()
  with pytest.raises(schedules.ScheduleError, match="> 0"):
    _data(inject=td.Inject(task=2, schedule="withhold", period=2, frequency=0.0)).validate()


def test_injected_task_leaves_the_base_mixture():
  data = _data(K=4, inject=td.Inject(task=4, schedule="withhold", period=4, frequency=0.5))
  base, extra, ids = data.schedules()
  assert [t.name for t in base] == ["t01", "t02", "t03"] and [t.name for t in extra] == ["t04"]
  pi = tt.ToySpec(K=4, r=4, beta=1.2, alpha=1.5).pi
  np.testing.assert_allclose([t.frequency for t in base], 40 * pi[:3] / pi[:3].sum())
  np.testing.assert_array_equal(ids, [0, 1, 2, 3])
