"""analysis.plateau: a run whose task accuracy still moves over the last quarter is flagged, a flat one (at chance
or learned) is not, and a run with too few evals is unknown; the report states the criterion and lists the flags."""

import math

import pandas as pd

from analysis import plateau
from analysis.report_doc import Doc


def _rows(run, n, accs, losses=None, steps=(0, 250, 500, 750, 1000), task="cmp", freq=32.0, seed=0):
  rows = []
  for i, (s, a) in enumerate(zip(steps, accs)):
    base = {"experiment": "lm", "group": "eval", "run": run, "n_params_non_embedding": n, "seed": seed,
            "frequency_per_batch": freq, "step": s}
    rows.append({**base, "task": task, "split": "test", "metric": "accuracy", "value": a})
    rows.append({**base, "task": task, "split": "test", "metric": "loss", "value": (losses or [3.0] * 9)[i]})
    rows.append({**base, "task": "background", "split": None, "metric": "loss", "value": 4.0 - 0.01 * i})
  return rows


def _df():
  return pd.DataFrame(
      _rows("flat_chance", 1e4, [0.0, 0.01, 0.01, 0.01, 0.012], losses=[5.5, 5.0, 4.8, 4.7, 4.6])
      + _rows("learned", 1e5, [0.0, 0.5, 0.85, 0.9, 0.92], seed=1)
      + _rows("rising", 2e5, [0.0, 0.1, 0.3, 0.6, 0.75], seed=2)
      + _rows("short", 3e5, [0.0, 0.9], steps=(0, 1000), seed=3))


def test_flags_exactly_the_runs_still_moving():
  checks = {c.run: c for c in plateau.check(_df())}
  assert checks["flat_chance"].status == "plateaued"  # the loss still falls: not the criterion
  assert checks["learned"].status == "plateaued"  # 0.90 -> 0.92: 0.04 of the 0.5 range
  assert checks["rising"].status == "not plateaued"  # 0.60 -> 0.75: 0.3 of the range
  assert checks["short"].status == "unknown"  # no eval in the window's start
  r = checks["rising"]
  assert (r.step_from, r.step_to) == (750, 1000)
  assert math.isclose(r.delta_norm, 0.15 / 0.5)
  assert math.isclose(r.bg_to, 3.96)


def test_tolerance_is_what_decides():
  checks = {c.run: c for c in plateau.check(_df(), tolerance=0.01)}
  assert checks["learned"].status == "not plateaued"


def test_section_states_criterion_and_lists_flags():
  doc = Doc()
  plateau.section(doc, plateau.check(_df()))
  md = doc.markdown()
  assert "Criterion" in md and "last 25%" in md
  assert "2 of 4 runs plateaued" in md
  assert "200K f=32 seed 2 (not plateaued)" in md and "300K f=32 seed 3 (unknown)" in md
  assert "1 of the flagged runs were still improving" in md and "upper bound on the N* of a longer budget" in md
  doc = Doc()
  plateau.section(doc, [c for c in plateau.check(_df()) if c.run != "rising"])
  assert "still improving" not in doc.markdown()  # an unknown run alone says nothing about the budget
