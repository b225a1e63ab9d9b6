"""The paper's figure claims as tests (analysis/claims.py).

Fast (in the suite): each direction check on synthetic run dirs built both ways (the claim's direction and its
reverse), so a check that ignores its data fails; real tiny toy runs (K=8, r=4) for Figs 2–4; one real tiny
transformer run with bursts, retention, interference and probes, read back through the claim functions.

Slow (`python -m pytest -m slow tests/analysis/test_claims.py`): run the real figure sweeps of
configs/sweeps/paper_{toy,lm}.py (under $REPRO_SWEEPS_ROOT when set, so finished runs are reused; `quick`
sub-grids when $REPRO_QUICK=1) and assert the paper's directions. A direction that does not hold at this scale is
an xfail whose reason carries the numbers: it is reported, not tuned away.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from analysis import claims
from analysis import load as load_lib
from configs import toy as toy_configs
from scaling.core import rundir
from scaling.toy import train as toy_train
from tests import helpers


# ---------------------------------------------------------------------------------------------------------------
# Synthetic LM run dirs with a chosen direction
# ---------------------------------------------------------------------------------------------------------------
def _lm_run(path, N, task, freq, recs, schedule="random", period=1):
  run = rundir.RunDir(str(path))
  steps = max(r["step"] for r in recs)
  tasks = {task: {"frequency_per_batch": freq, "frequency_per_token": freq / 512, "schedule": schedule,
                  "period": period}}
  summary = {"size": f"{N:.0e}", "n_params": int(N * 1.2), "n_params_non_embedding": int(N), "seed": 0,
             "total_steps": steps, "tokens_per_step": 512, "flops_per_token": 6.0 * N, "tasks": tasks}
  run.write_config("lm", {"seed": 0, "model": {"size": summary["size"]}}, summary)
  run.append_metrics(sorted(recs, key=lambda r: r["step"]))
  run.write_status("done", steps, steps, None)


def _final(task, loss, acc=None, step=100, **extra):
  rec = {"step": step, "tokens": step * 512, f"eval/{task}/loss": loss,
         f"eval/{task}/accuracy": math.exp(-loss) if acc is None else acc}
  return {**rec, **extra}


SMALL, LARGE = 1e5, 1e6


def _sweep_fig5(root, sign):
  for N in (SMALL, LARGE):
    for f in (1.0, 8.0):
      acc = 0.5 + 0.2 * sign * (N == LARGE) + 0.1 * (f == 8.0)
      _lm_run(root / f"N{N:g}_f{f:g}", N, "cmp", f, [_final("cmp", -math.log(acc), acc)])


def _sweep_fig6a(root, sign):
  for f in (0.25, 1.0, 4.0):
    _lm_run(root / f"f{f:g}", LARGE, "cmp", f, [_final("cmp", 0.6 - sign * 0.1 * math.log2(f * 4))])


def _sweep_fig6b(root, sign):
  for P in (1, 10, 20, 50, 100):
    _lm_run(root / f"P{P}", LARGE, "cmp", 1.0, [_final("cmp", 0.4 + sign * 0.001 * P)], "burst", P)


def _sweep_fig7(root, sign):
  for N in (SMALL, LARGE):
    for f in (2.0, 8.0):
      score = 0.3 + 0.4 * sign * (N == LARGE) + 0.1 * (f == 8.0)
      recs = [_final("cmp", 1 - score * s / 100, step=s, **{"probe/cmp/order_r2": score * s / 100})
              for s in (50, 100)]  # accuracy tracks the probe
      _lm_run(root / f"N{N:g}_f{f:g}", N, "cmp", f, recs)


def _sweep_fig8(root, sign, rng):
  for N in (SMALL, LARGE):
    kept = 0.25 if (N == LARGE) == (sign > 0) else 0.02
    recs = [_final("cmp", 0.6, step=1)]
    for i in range(1, 20):
      recs.append({"step": 100 * i + 1, "retention/cmp/gain": 0.3 + 0.01 * rng.standard_normal()})
      recs.append({"step": 100 * i + 100, "retention/cmp/decay": 0.3 - kept + 0.01 * rng.standard_normal()})
    _lm_run(root / f"N{N:g}", N, "cmp", 1.0, recs, "burst", 100)


def _sweep_fig9(root, sign, rng):
  for N in (SMALL, LARGE):
    mean = 0.1 if (N == SMALL) == (sign > 0) else 0.0
    recs = [{"step": s, "interference/cmp/cos_gnt_gr": mean + 0.02 * rng.standard_normal(),
             "interference/cmp/cos_g_gr": 0.05 + 0.01 * rng.standard_normal()} for s in range(50, 2001, 50)]
    recs[-1].update(_final("cmp", 0.6, step=2000))
    _lm_run(root / f"N{N:g}", N, "cmp", 1.0, recs, "burst", 100)


SYNTH = {"5": _sweep_fig5, "6a": _sweep_fig6a, "6b": _sweep_fig6b, "7": _sweep_fig7}


@pytest.mark.parametrize("sign", [1, -1], ids=["paper_direction", "reversed"])
@pytest.mark.parametrize("fig", ["5", "6a", "6b", "7", "8", "9"])
def test_lm_claim_checks_follow_the_data(tmp_path, fig, sign):
  rng = np.random.default_rng(0)
  if fig in SYNTH:
    SYNTH[fig](tmp_path, sign)
  else:
    {"8": _sweep_fig8, "9": _sweep_fig9}[fig](tmp_path, sign, rng)
  c = claims.CHECKS[fig](load_lib.load(str(tmp_path)))
  assert c.holds is (sign > 0), (c.verdict, c.reason, c.numbers)
  assert c.verdict == (claims.HOLDS if sign > 0 else claims.FAILS), (c.reason, c.numbers)


def test_claims_without_their_metric_are_not_measurable(tmp_path):
  _sweep_fig6a(tmp_path, 1)  # eval losses only: no retention, interference or probes
  loaded = load_lib.load(str(tmp_path))
  for fig in ("7", "8", "9", "6b", "2", "3", "4"):
    c = claims.CHECKS[fig](loaded)
    assert c.holds is None and c.verdict == claims.NA, (fig, c)


def test_verdict_words():
  assert claims.verdict(True, True) == claims.HOLDS
  assert claims.verdict(True, False) == claims.WEAK
  assert claims.verdict(False, True) == claims.FAILS
  assert claims.verdict(None, True) == claims.NA


# ---------------------------------------------------------------------------------------------------------------
# Real tiny runs
# ---------------------------------------------------------------------------------------------------------------
def _toy(width, steps, **over):
  c = toy_configs.get_config(f"width={width}")
  c.toy.K, c.toy.r, c.toy.seeds, c.toy.betas = 8, 4, (0,), (1.5,)
  c.train.learning_rate, c.train.batch_size, c.train.warmup_steps, c.train.steps = 1e-2, 256, 100, steps
  c.train.log_every, c.train.eval_every, c.train.retention_every = 64, 64, 0
  c.train.steps_per_call, c.checkpoint.every = 64, 1_000_000
  return helpers.set_keys(c, over)


def test_toy_claims_on_real_tiny_runs(tmp_path):
  """Figs 2 and 3 on K=8 toys at widths 2 and 8 (2048 steps), Fig 4 on widths 12 and 24 withheld for G = 1 and
  128 (the Fig-4 grid of tests/toy/test_toy_vs_theory.py, where the narrow model loses the task first)."""
  for w in (2, 8):
    assert toy_train.train(_toy(w, 2048), str(tmp_path / "plain" / f"N{w}"), progress=False)["state"] == "done"
  for w in (12, 24):
    for G in (1, 128):
      c = _toy(w, 2048, **{"toy.inject.task": 8, "toy.inject.schedule": "withhold", "toy.inject.period": G,
                           "toy.inject.frequency": 8.0})
      assert toy_train.train(c, str(tmp_path / "inject" / f"N{w}_G{G}"), progress=False)["state"] == "done"
  plain = load_lib.load(str(tmp_path / "plain"))
  c2 = claims.fig2(plain)
  assert c2.holds, (c2.reason, c2.numbers)
  c3 = claims.fig3(plain)
  assert c3.holds is not None and c3.numbers["onset at s̃ > 0.1: δ_F / δ_F* median, max (n)"], (c3.reason, c3.numbers)
  c4 = claims.fig4(load_lib.load(str(tmp_path / "inject")))
  assert c4.holds, (c4.reason, c4.numbers)
  assert c4.numbers["frequent signal: largest move across gaps"] < claims.FREQUENT_TOL


def test_lm_claims_read_a_real_tiny_run(tmp_path):
  """One 50K run, T_CMP 4 instances every 4 batches, with retention, interference (every 5 steps and at
  injections) and probes at the evals: the Fig 7–9 checks find their metrics (one size: not measurable)."""
  flags = [f for f in helpers.tiny_flags() if not f.startswith("--config.data.vocab_size")]
  flags += ["--config.data.vocab_size=256", "--config.data.seq_len=16", "--config.train.steps=20",
            "--config.train.eval_every=10", "--config.checkpoint.every=20", "--config.data.tasks.cmp.frequency=1",
            "--config.data.tasks.cmp.schedule=burst", "--config.data.tasks.cmp.period=4",
            "--config.mechanisms.interference_every=5", "--config.mechanisms.interference_at_injections=true",
            "--config.mechanisms.interference_task_instances=64", "--config.mechanisms.probe_every=10",
            "--config.mechanisms.probe_contexts=2", "--config.mechanisms.retention_eval_limit=64",
            "--config.data.task_eval_limit=64", f"--workdir={tmp_path / 'run'}"]
  r = helpers.run_train(flags, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  loaded = load_lib.load(str(tmp_path))
  for fig, key in (("8", "cmp N=55.7K: gain, decay, retained"), ("9", "cmp N=55.7K")):
    c = claims.CHECKS[fig](loaded)
    assert c.holds is None and "needs ≥ 2 sizes" in c.reason, (fig, c)
    assert key in c.numbers, (fig, c.numbers)
  c9 = claims.fig9(loaded).numbers["cmp N=55.7K"]
  assert c9["cos(g,g_r) at injections"] != "—" and c9["cos(g_nt,g_r) all steps"] != "—", c9
  c7 = claims.fig7(loaded)
  assert c7.holds is None and any(k.startswith("cmp order_r2") for k in c7.numbers), c7.numbers


# ---------------------------------------------------------------------------------------------------------------
# Slow: the real figure sweeps
# ---------------------------------------------------------------------------------------------------------------
SLOW = {"4": "configs/sweeps/paper_toy.py:fig=4", "6b": "configs/sweeps/paper_lm.py:fig=6b",
        "7": "configs/sweeps/paper_lm.py:fig=7", "8": "configs/sweeps/paper_lm.py:fig=8",
        "9": "configs/sweeps/paper_lm.py:fig=9"}


@pytest.fixture(scope="module")
def sweeps_root(tmp_path_factory):
  return os.environ.get("REPRO_SWEEPS_ROOT") or str(tmp_path_factory.mktemp("paper_sweeps"))


def _sweep(root: str, fig: str) -> str:
  spec = SLOW[fig] + (",quick" if os.environ.get("REPRO_QUICK") == "1" else "")
  sweep_dir = os.path.join(root, f"fig{fig}")
  r = subprocess.run([sys.executable, "launch/sweep.py", f"--config={spec}", f"--sweep_dir={sweep_dir}",
                      "--no_report", "--noprogress", "--max_parallel=1"], cwd=helpers.REPO, env=helpers.env(),
                     capture_output=True, text=True, timeout=2 * 3600)
  assert r.returncode == 0, r.stderr[-2000:]
  return sweep_dir


def _report(c: claims.Claim):
  assert c.holds is not None, f"Fig {c.figure}: {c.reason}"
  if not c.holds:
    pytest.xfail(f"Fig {c.figure} does not hold at this scale: {c.reason}; {c.numbers}")


@pytest.mark.slow
@pytest.mark.parametrize("fig", list(SLOW))
def test_paper_direction_on_the_real_sweep(sweeps_root, fig):
  """Fig 4: rare signal falls with G faster for the narrow model, frequent signal moves < 0.05; Fig 6b: final
  task loss rises with the gap N; Fig 7: probe score rises with size at fixed frequency; Fig 8: the
  post-injection drop retained after 100 batches is larger for the larger size; Fig 9: |cos(g_nt, g_r)| is
  smaller for the larger size."""
  c = claims.check(fig, _sweep(sweeps_root, fig))
  _report(c)
  if fig == "4":
    assert c.numbers["frequent signal: largest move across gaps"] < claims.FREQUENT_TOL, c.numbers
