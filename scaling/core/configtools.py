"""Small helpers shared by experiment configs and their validation: flattening, diffs, presets, number checks."""

from __future__ import annotations

import math
from typing import Any

from scaling.core.errors import ConfigError


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1} (only dicts are descended into)."""
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


def config_changes(old: dict, new: dict) -> list[str]:
  """Dotted keys whose values differ between two config dicts (missing on one side counts)."""
  a, b = flatten(old), flatten(new)
  return sorted(k for k in set(a) | set(b) if a.get(k, "<missing>") != b.get(k, "<missing>"))


def describe_changes(old: dict, new: dict, keys: list[str], limit: int = 4) -> str:
  a, b = flatten(old), flatten(new)
  return "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:limit])


def parse_arg(arg: str | None, known: dict[str, Any], example: str) -> dict[str, Any]:
  """A config file's `:arg` as comma-separated presets: `key=value` or a bare flag name.

  `known` maps each preset to its default; a bare name sets it to True (for boolean presets). Values keep the
  type of the default (int, float, str, bool). Raises ValueError naming the unknown key and the known ones.
  """
  out = dict(known)
  for item in filter(None, (x.strip() for x in (arg or "").split(","))):
    key, sep, value = item.partition("=")
    key = key.strip()
    if key not in known:
      raise ValueError(f"unknown preset {key!r} in {example!r}; known: {', '.join(known) or 'none'}")
    default = known[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f"preset {key!r} needs a value, e.g. {key}={default}")
      out[key] = True
      continue
    out[key] = _typed(value.strip(), default, key)
  return out


def _typed(value: str, default: Any, key: str) -> Any:
  if isinstance(default, bool):
    if value.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"preset {key}={value!r} must be true or false")
    return value.lower() in ("true", "1")
  try:
    if isinstance(default, int):
      return int(value)
    if isinstance(default, float):
      return float(value)
  except ValueError:
    raise ValueError(f"preset {key}={value!r} must be {'an integer' if isinstance(default, int) else 'a number'}"
                     ) from None
  return value


def is_number(x: Any) -> bool:
  """A finite int or float (not a bool)."""
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_int(x: Any, low: int | None = None) -> bool:
  return isinstance(x, int) and not isinstance(x, bool) and (low is None or x >= low)


def require(ok: bool, message: str) -> None:
  """Raises ConfigError(message) unless ok."""
  if not ok:
    raise ConfigError(message)
