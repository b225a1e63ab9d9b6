"""Mechanism measurements during training (paper §4, Figs 7–9): the trainer's one hook.

  scaling/interference.py   interference/<task>/{cos_g_gr, cos_gt_gr, cos_gnt_gr, norm_g, norm_gt, norm_gnt,
                            norm_gr, k}                                                           (Fig 9)
  scaling/probes.py         probe/cmp/order_r2[_l<i>], probe/add/fourier_modes[_l<i>]             (Fig 7)
  scaling/retention.py      retention/<task>/{loss_before, loss_after, gain, loss_end, decay}     (Fig 8)

Config (`config.mechanisms`, configs/lm.py; a config without the section has everything off but retention):

  interference_every          0      measure every N steps (0: not periodically)
  interference_at_injections  False  also measure at every injection step of a burst/withhold task
  interference_top_k          64     first-layer MLP neurons compared
  interference_rank_by        "task" rank neurons by |g_r| ("task") or |g| ("batch")
  interference_task_instances 0      train instances in g_r (0: all 5000)
  interference_chunk          1024   instance rows per g_r chunk (memory)
  probe_every                 0      probe every N steps (0: off; train.eval_every: at the eval steps)
  probe_contexts              10     probe rows per symbol and position
  probe_pcs                   50     principal components of the T_CMP order probe
  probe_fourier_threshold     3.0    T_ADD mode present above this × the uniform power share
  retention                   True   per-injection gain/decay of burst/withhold tasks (period >= 2)
  retention_eval_limit        1000   test instances in the retention loss (0: all)

When is "step s"? A record at step s describes the model after s updates, like the eval metrics in it. The hook
runs after update s, on the post-update params. Interference at step s uses batch s, the batch of the *next* update
(rebuilt here: batches are a pure function of (config, index)), so it is the gradient that update s + 1 applies,
measured at its own parameters, "at the step" as in the paper, without keeping a copy of the pre-update params that
the donated train step destroys. An injection in batch i is therefore measured in the record at step i. Nothing is
measured at step 0 (the hook runs after updates only).

Cost: nothing when all is off (`create` returns None); otherwise a few integer tests per step and work, plus one
host sync, only at the steps above. Values are deterministic (no timings), so resumed runs write the same records.
"""

from __future__ import annotations

import math
from typing import Any

from scaling.core import schedules

INJECTION_SCHEDULES = ("burst", "withhold")  # schedules with injection steps (scaling/data/schedules.py)

DEFAULTS: dict[str, Any] = {
    "interference_every": 0,
    "interference_at_injections": False,
    "interference_top_k": 64,
    "interference_rank_by": "task",
    "interference_task_instances": 0,
    "interference_chunk": 1024,
    "interference_split": "label",
    "probe_every": 0,
    "probe_contexts": 10,
    "probe_pcs": 50,
    "probe_fourier_rule": "absolute",
    "probe_fourier_min_variance": 0.01,
    "probe_fourier_alpha": 0.01,
    "probe_fourier_null_draws": 1000,
    "probe_fourier_threshold": 3.0,
    "retention": True,
    "retention_eval_limit": 1000,
}
_NON_NEGATIVE = ("interference_every", "interference_task_instances", "probe_every", "retention_eval_limit")
_POSITIVE = ("interference_top_k", "interference_chunk", "probe_contexts", "probe_pcs", "probe_fourier_null_draws")
_CHOICES = {"interference_rank_by": ("task", "batch"), "interference_split": ("label", "instance"),
            "probe_fourier_rule": ("absolute", "relative")}
_FRACTIONS = {"probe_fourier_min_variance": (0.0, True), "probe_fourier_alpha": (0.0, False)}  # (low, inclusive)
_BOOLS = ("interference_at_injections", "retention")


def settings(config) -> dict[str, Any]:
  """config.mechanisms over DEFAULTS (configs written before the section existed get the defaults)."""
  m = config.get("mechanisms", None) if hasattr(config, "get") else None
  given = (m.to_dict() if hasattr(m, "to_dict") else dict(m)) if m is not None else {}
  return {**DEFAULTS, **given}


def validate_config(config) -> None:
  """Raises configlib.ConfigError with one line on the first problem in `config.mechanisms`."""
  from scaling.lm.config import ConfigError  # noqa: PLC0415 - configlib imports this module
  m = config.get("mechanisms", None)
  given = set(m.keys()) if m is not None else set()
  unknown = sorted(given - set(DEFAULTS))
  if unknown:
    raise ConfigError(f"mechanisms.{unknown[0]} is not a setting; known: {', '.join(DEFAULTS)}")
  s = settings(config)
  for k in _NON_NEGATIVE + _POSITIVE:
    v, low = s[k], 0 if k in _NON_NEGATIVE else 1
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
      raise ConfigError(f"mechanisms.{k}={v!r} must be an integer >= {low}")
  for k in _BOOLS:
    if not isinstance(s[k], bool):
      raise ConfigError(f"mechanisms.{k}={s[k]!r} must be True or False")
  for k, choices in _CHOICES.items():
    if s[k] not in choices:
      raise ConfigError(f"mechanisms.{k}={s[k]!r} must be " + " or ".join(repr(c) for c in choices))
  t = s["probe_fourier_threshold"]
  if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
    raise ConfigError(f"mechanisms.probe_fourier_threshold={t!r} must be a positive number (× the uniform share)")
  for k, (low, inclusive) in _FRACTIONS.items():
    v = s[k]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low <= v < 1 if inclusive else low < v < 1):
      raise ConfigError(f"mechanisms.{k}={v!r} must be a number in {'[' if inclusive else '('}{low:g}, 1)")
  if s["probe_fourier_null_draws"] * s["probe_fourier_alpha"] < 1:
    raise ConfigError(f"mechanisms.probe_fourier_null_draws={s['probe_fourier_null_draws']} is too few for "
                      f"probe_fourier_alpha={s['probe_fourier_alpha']}; use at least "
                      f"{math.ceil(1 / s['probe_fourier_alpha'])}")
  if s["interference_every"] or s["interference_at_injections"]:
    from scaling.lm.data import mixture  # noqa: PLC0415
    if not mixture.Mixture.from_config(config).active:
      key = "interference_every" if s["interference_every"] else "interference_at_injections"
      raise ConfigError(f"mechanisms.{key} measures interference with an injected task but none is active; set "
                        "data.tasks.<task>.frequency > 0 or turn interference off")


class Mechanisms:
  """The training hook: `measure(state, step)` after each update returns the record entries due at `step`."""

  def __init__(self, config, setup, run=None, start: int = 0):
    import jax  # noqa: PLC0415

    from scaling.lm.data import mixture, pipeline, sources  # noqa: PLC0415
    from scaling.mechanisms import interference, probes, retention  # noqa: PLC0415
    s = settings(config)
    self.setup = setup
    self.mix = mixture.Mixture.from_config(config)
    self.every, self.probe_every = s["interference_every"], s["probe_every"]
    self.injection_tasks = [x for x in self.mix.schedules if x.schedule in INJECTION_SCHEDULES]
    self.at_injections = s["interference_at_injections"] and bool(self.injection_tasks)
    self.interference = None
    if self.every or self.at_injections:
      names = self.mix.active_names
      gr_rows = [interference.task_rows(self.mix.task(n), s["interference_task_instances"]) for n in names]
      self.interference = interference.Interference(setup, self.mix.active, names, gr_rows,
                                                    s["interference_top_k"], s["interference_rank_by"],
                                                    s["interference_chunk"])
      self._source = sources.make_source(config.data, config.seed)
      self._rows = pipeline.local_rows(config.train.batch_size, jax.process_index(), jax.process_count())
    self.probes = probes.from_config(setup) if self.probe_every else None
    self.retention = None
    if s["retention"] and retention.tracked(self.mix):
      self.retention = retention.Retention(setup, self.mix, s["retention_eval_limit"])
      if start > 0 and run is not None:
        self.retention.restore(r for r in run.read_metrics(strict=False) if r["step"] <= start)

  @classmethod
  def create(cls, config, setup, run=None, start: int = 0) -> Mechanisms | None:
    """The hook for `config`, or None when it would never measure anything (the trainer then skips it)."""
    m = cls(config, setup, run, start)
    return m if any(x is not None for x in (m.interference, m.probes, m.retention)) else None

  def batch(self, index: int):
    """Global batch `index` as the trainer places it (scaling/data/pipeline.py builds the same rows)."""
    return self.setup.place_batch(self.mix.batch(self._source, index, self._rows))

  def interference_due(self, step: int) -> bool:
    if self.interference is None:
      return False
    if self.every and step % self.every == 0:
      return True
    return self.at_injections and any(schedules.deterministic_count(x, step) > 0 for x in self.injection_tasks)

  def measure(self, state, step: int) -> dict[str, Any]:
    """Record entries due at `step` (after `step` updates; `state` is the post-update train state)."""
    out: dict[str, Any] = {}
    params = state["params"]
    if self.interference_due(step):
      out.update(self.interference.measure(params, self.batch(step)))
    if self.probes is not None and step % self.probe_every == 0:
      out.update(self.probes.measure(params))
    if self.retention is not None and self.retention.due(step):
      out.update(self.retention.measure(params, step))
    return out
