"""Simulation against exact theory: the Adam-trained toy converges to Theorem 3's top-N features, and the
Fig-4 withhold protocol makes a small model forget a rare task that a larger one keeps.

Sized for CPU CI: K=8 tasks, r=4 (d=32); every width is its own small program (~2 s each).
"""

import json
import os

import numpy as np
import pytest

from configs import toy as toy_configs
from scaling.core import rundir
from scaling.toy import config as toy_config
from scaling.toy import theory as tt
from scaling.toy import train as toy_train
from tests.helpers import set_keys

K, R = 8, 4
WIDTHS = [1, 2, 3, 4, 6, 8, 12, 16]
BETAS = (1.0, 1.5)


def _config(width: int, **over):
  c = toy_configs.get_config(f"width={width}")
  c.toy.K, c.toy.r = K, R
  c.toy.seeds = (0,)
  # At d=32 an encoder entry is ~1/sqrt(32), so lr 1e-2 is a few percent per Adam step (the `fast` preset's
  # 3e-3 is for d=1024); the zero-initialised decoders keep rare tasks from starting far above chance.
  c.train.learning_rate, c.model.decoder_init_scale = 1e-2, 0.0
  c.train.batch_size, c.train.warmup_steps = 256, 100
  c.train.eval_every = c.train.retention_every = 0  # population metrics at steps 0 and last only
  c.train.log_every, c.train.steps_per_call, c.checkpoint.every = 512, 128, 1_000_000
  return set_keys(c, over)


def _member(workdir: str, beta: float) -> rundir.RunDir:
  return rundir.RunDir(os.path.join(workdir, toy_config.member_name(beta, 0)))


@pytest.fixture(scope="module")
def width_sweep(tmp_path_factory):
  """{beta: (retained (W, K, r) bool, top-N (W, K, r) bool, final loss_norm (W, K))} after 3000 steps."""
  root = tmp_path_factory.mktemp("toy_widths")
  out = {b: ([], [], []) for b in BETAS}
  for w in WIDTHS:
    workdir = str(root / f"N{w}")
    result = toy_train.train(_config(w, **{"toy.betas": BETAS, "train.steps": 3000}), workdir, progress=False)
    assert result["state"] == "done", result
    for b in BETAS:
      run = _member(workdir, b)
      retention = np.asarray(run.read_metrics(toy_train.RETENTION_FILE)[-1]["retention"])
      last = run.read_metrics()[-1]
      out[b][0].append(retention > 0.5)
      with open(run.file(toy_config.THEORY_FILE)) as f:
        out[b][1].append(np.asarray(json.load(f)["top_features"], bool))
      out[b][2].append([last[f"toy/t{k:02d}/loss_norm"] for k in range(1, K + 1)])
  arrays = {b: tuple(np.asarray(x) for x in v) for b, v in out.items()}
  return {"root": str(root), **arrays}


@pytest.mark.parametrize("beta", BETAS)
def test_retained_features_match_the_theorem3_top_N_set(width_sweep, beta):
  retained, top, _ = width_sweep[beta]
  spec = tt.ToySpec(K=K, r=R, beta=beta, alpha=2.0, seed=0)
  # theory.json's top set is toy_theory's, so the comparison is against Theorem 3 itself.
  np.testing.assert_array_equal(top, np.stack([tt.top_features(spec, w) for w in WIDTHS]))
  agreement = float(np.mean(retained == top))  # over (width, task, feature) cells
  assert agreement >= 0.95, (f"β={beta}: retained features agree with the top-N set on {agreement:.1%} of "
                             f"cells; per width: {np.mean(retained == top, axis=(1, 2)).round(3).tolist()}")


@pytest.mark.parametrize("beta", BETAS)
def test_smallest_learning_width_is_within_one_grid_step_of_theory(width_sweep, beta):
  _, _, loss_norm = width_sweep[beta]  # (W, K), the trained model's own decoders
  spec = tt.ToySpec(K=K, r=R, beta=beta, alpha=2.0, seed=0)
  want = tt.smallest_learning_width(spec, WIDTHS)  # normalised optimal loss <= 0.5
  assert np.all(np.isfinite(want))  # every task is learnable somewhere on this grid, so the check is not vacuous
  learned = loss_norm <= 0.5
  got = np.array([WIDTHS[int(np.argmax(learned[:, k]))] if learned[:, k].any() else np.inf for k in range(K)])
  steps = np.abs(np.searchsorted(WIDTHS, got) - np.searchsorted(WIDTHS, want))
  assert np.all(steps <= 1), f"β={beta}: simulated smallest learning widths {got.tolist()} vs theory {want.tolist()}"
  # Rarer tasks need wider encoders (Theorem 3), in the simulation as in theory.
  assert got[-1] > got[0]


def test_analysis_reads_the_toy_runs_and_agrees_with_the_trainers_view(width_sweep):
  """The run-dir contract: analysis.load finds every member of every width program, and its theory comparison
  (analysis/predictions.py) reports the same smallest learning widths as the checks above."""
  from analysis import load, predictions  # noqa: PLC0415

  loaded = load.load(width_sweep["root"])
  assert len(loaded.runs) == len(WIDTHS) * len(BETAS) and loaded.runs["usable"].all()
  assert sorted(set(loaded.runs["width"])) == WIDTHS
  comps, notes = predictions.toy_comparisons(load.final(loaded.df), loaded.configs)
  assert sorted(c.condition["beta"] for c in comps) == list(BETAS), notes
  for comp in comps:
    _, _, loss_norm = width_sweep[comp.condition["beta"]]
    learned = loss_norm <= predictions.LEARNED_TOL
    want = [WIDTHS[int(np.argmax(learned[:, k]))] if learned[:, k].any() else np.inf for k in range(K)]
    assert comp.tasks.sort_values("k")["sim_learn_width"].tolist() == want
  assert sum("toy/retention" in a for a in loaded.arrays.values()) == len(WIDTHS) * len(BETAS)


def test_withhold_gap_erases_the_rare_task_in_a_small_model_first(tmp_path):
  """Fig 4: task 8 leaves the mixture and returns as 8 rows per batch on average, withheld for G steps and then
  injected as 8·G rows at once. Its long-run count is the same for every G; its end-of-training signal falls as
  G grows, and at a smaller G in the narrow model than in the wide one."""
  gaps, steps = [1, 16, 128, 1024], 4096
  signal, frequent, counts = {}, {}, {}
  for width in (12, 24):
    for G in gaps:
      workdir = str(tmp_path / f"N{width}_G{G}")
      c = _config(width, **{"toy.betas": (1.5,), "train.steps": steps, "toy.inject.task": 8,
                            "toy.inject.schedule": "withhold", "toy.inject.period": G, "toy.inject.frequency": 8.0})
      assert toy_train.train(c, workdir, progress=False)["state"] == "done"
      last = _member(workdir, 1.5).read_metrics()[-1]
      signal[width, G] = last["toy/t08/signal"]
      frequent[width, G] = last["toy/signal_frequent"]
      counts[width, G] = last["data/t08/count"]
  assert set(counts.values()) == {steps * 8}  # matched frequency: exactly 8 per batch on average for every G
  for width in (12, 24):
    s = [signal[width, G] for G in gaps]
    assert all(a >= b - 0.02 for a, b in zip(s, s[1:])), f"N={width}: rare signal vs G {s} is not falling"
    assert s[0] - s[-1] > 0.5, f"N={width}: rare signal vs G {s}"
    f = [frequent[width, G] for G in gaps]
    assert max(f) - min(f) < 0.05, f"N={width}: frequent signal vs G {f} should not depend on G"
  # The wide model still holds the task at a gap where the narrow one has lost it.
  lost_small = min(G for G in gaps if signal[12, G] < 0.1)
  assert signal[24, lost_small] > 0.5, {k: round(v, 3) for k, v in signal.items()}
