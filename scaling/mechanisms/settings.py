"""Mechanism measurements during training (paper §4, Figs 7–9): their settings (`config.mechanisms`) and checks.

  interference.py   interference/<task>/{cos_g_gr, cos_gt_gr, cos_gnt_gr, norm_g, norm_gt, norm_gnt, norm_gr, k}
                                                                                                        (Fig 9)
  probes.py         probe/cmp/order_r2[_l<i>], probe/add/fourier_modes[_l<i>]                           (Fig 7)
  retention.py      retention/<task>/{loss_before, loss_after, gain, loss_end, decay}                   (Fig 8)
  callbacks.py      the training-loop callbacks that run them

`SETTINGS` is the one list of keys, defaults and meanings; configs/lm.py builds its `mechanisms` section from
it, and a config without the section (or with missing keys) gets these defaults.
"""

from __future__ import annotations

import math
from typing import Any

from scaling.core.errors import ConfigError
from scaling.lm.data import mixture

INJECTION_SCHEDULES = ("burst", "withhold")  # schedules with injection steps (scaling/core/schedules.py)

SETTINGS: dict[str, tuple[Any, str]] = {
    "interference_every": (0, "measure interference every N steps (0: not periodically)"),
    "interference_at_injections": (False, "also at every injection step of a burst/withhold task"),
    "interference_top_k": (64, "first-layer MLP neurons compared"),
    "interference_rank_by": ("task", "rank neurons by |g_r| ('task') or |g| ('batch')"),
    "interference_task_instances": (0, "train instances in g_r (0: all of the task's train split)"),
    "interference_chunk": (1024, "instance rows per chunk of the g_r pass (memory)"),
    "interference_split": ("label", "g_t from the task's LABEL targets ('label') or its TOK2/LABEL/EOD ('instance')"),
    "probe_every": (0, "representation probes every N steps (0: off; = train.eval_every: at the evals)"),
    "probe_contexts": (10, "probe rows per symbol and position"),
    "probe_pcs": (50, "principal components of the T_CMP order probe"),
    "probe_fourier_rule": ("absolute", "T_ADD mode present: permutation null + variance floor ('absolute') or "
                                       "share above threshold x uniform ('relative')"),
    "probe_fourier_min_variance": (0.01, "absolute rule: a mode holds at least this share of the total variance"),
    "probe_fourier_alpha": (0.01, "absolute rule: level of the permutation null over all frequencies"),
    "probe_fourier_null_draws": (1000, "absolute rule: random relabellings in the null"),
    "probe_fourier_threshold": (3.0, "relative rule: mode present above this x the uniform power share"),
    "retention": (True, "per-injection gain/decay of burst/withhold tasks with period >= 2"),
    "retention_eval_limit": (1000, "test instances in the retention loss (0: all)"),
}
DEFAULTS: dict[str, Any] = {k: v for k, (v, _) in SETTINGS.items()}
_NON_NEGATIVE = ("interference_every", "interference_task_instances", "probe_every", "retention_eval_limit")
_POSITIVE = ("interference_top_k", "interference_chunk", "probe_contexts", "probe_pcs", "probe_fourier_null_draws")
_CHOICES = {"interference_rank_by": ("task", "batch"), "interference_split": ("label", "instance"),
            "probe_fourier_rule": ("absolute", "relative")}
_FRACTIONS = {"probe_fourier_min_variance": (0.0, True), "probe_fourier_alpha": (0.0, False)}  # (low, inclusive)
_BOOLS = ("interference_at_injections", "retention")


def settings(config) -> dict[str, Any]:
  """config.mechanisms over DEFAULTS."""
  m = config.get("mechanisms", None) if hasattr(config, "get") else None
  given = (m.to_dict() if hasattr(m, "to_dict") else dict(m)) if m is not None else {}
  return {**DEFAULTS, **given}


def validate_config(config) -> None:
  """Raises ConfigError with one line on the first problem in `config.mechanisms`."""
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
  if (s["interference_every"] or s["interference_at_injections"]) and not mixture.Mixture.from_config(config).active:
    key = "interference_every" if s["interference_every"] else "interference_at_injections"
    raise ConfigError(f"mechanisms.{key} measures interference with an injected task but none is active; set "
                      "data.tasks.<task>.frequency > 0 or turn interference off")
