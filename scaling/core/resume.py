"""What may change between a run and the command resuming it, and how a change of `train.steps` is kept honest.

`check_config_change(old, new, resumable=..., step=..., extend=...)` compares the config stored in config.json
with the one resuming it:
  - a key outside `resumable` (prefixes of settings that only measure or only place the computation) differs:
    ConfigError, the run must use a new --workdir or its original config;
  - `train.steps` differs: the steps already trained (0 .. step-1) used the learning-rate schedule of the old
    length. The change is allowed when that schedule is identical on those steps under the new length (a
    `constant` schedule; a `wsd` schedule whose decay had not started), and otherwise refused unless `--extend`
    is given. Either way the change is returned as a `history_entry` for `RunDir.write_config`, so config.json
    keeps both lengths and the step where one became the other;
  - shortening a run below the step it already reached is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from scaling.core import optim
from scaling.core.errors import ConfigError

STEPS_KEY = "train.steps"


def flat_items(d: dict) -> dict[str, Any]:
  """{"a": {"b": 1}} -> {"a.b": 1} (dict leaves only; lists and tuples are values)."""
  out, stack = {}, [("", d)]
  while stack:
    prefix, node = stack.pop()
    for k, v in node.items():
      if isinstance(v, dict):
        stack.append((f"{prefix}{k}.", v))
      else:
        out[f"{prefix}{k}"] = v
  return out


@dataclasses.dataclass(frozen=True)
class ConfigChange:
  """The keys that differ (all allowed), and the config.json history entry to record (None: nothing to record)."""

  changed: list[str]
  history_entry: dict | None = None

  def describe(self) -> str:
    return ", ".join(self.changed)


class _Train:
  """The attributes optim.lr_schedule reads, from a plain dict."""

  def __init__(self, d: dict):
    self.__dict__.update(d)


def schedule_agrees(old_train: dict, new_train: dict, steps_done: int) -> bool:
  """Is the learning rate of steps 0 .. steps_done-1 the same under both train settings?"""
  if steps_done <= 0:
    return True
  t = np.arange(steps_done)
  a = np.asarray(optim.lr_schedule(_Train(old_train))(t))
  b = np.asarray(optim.lr_schedule(_Train(new_train))(t))
  return bool(np.array_equal(a, b))


def check_config_change(old: dict, new: dict, *, resumable: Sequence[str], step: int | None,
                        extend: bool = False) -> ConfigChange:
  """Raises ConfigError (one line) for a change that would alter what the run computed; see the module docstring.

  step: the restored checkpoint's step (None: unknown, every step of the old run counts as trained)."""
  a, b = flat_items(old), flat_items(new)
  changed = sorted(k for k in set(a) | set(b) if a.get(k, "<missing>") != b.get(k, "<missing>"))
  blocking = [k for k in changed if k != STEPS_KEY and not k.startswith(tuple(resumable))]
  if blocking:
    diff = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in blocking[:4])
    more = f" (+{len(blocking) - 4} more)" if len(blocking) > 4 else ""
    raise ConfigError(f"the run dir holds a run with a different config ({diff}{more}) — use a new --workdir or "
                      "the original config")
  if STEPS_KEY not in changed:
    return ConfigChange(changed)
  old_steps, new_steps = a[STEPS_KEY], b[STEPS_KEY]
  done = old_steps if step is None else step
  if new_steps < done:
    raise ConfigError(f"train.steps {old_steps} -> {new_steps}: the run already reached step {done} — use a new "
                      "--workdir for a shorter run")
  agrees = schedule_agrees(old["train"], new["train"], done)
  schedule = b.get("train.schedule")
  if not agrees and not extend:
    raise ConfigError(f"train.steps {old_steps} -> {new_steps}: the {schedule} learning-rate schedule depends on "
                      f"train.steps, so steps 1..{done} were trained on the {old_steps}-step schedule (a constant "
                      "schedule would not be) — use a new --workdir, or pass --extend to continue on the "
                      f"{new_steps}-step schedule (recorded in config.json history)")
  how = "--extend" if extend else f"{schedule} schedule unchanged on steps 1..{done}"
  return ConfigChange(changed, {"step": done, "changes": {STEPS_KEY: [old_steps, new_steps]}, "how": how,
                                "schedule_unchanged_on_trained_steps": agrees})
