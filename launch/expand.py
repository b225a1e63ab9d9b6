"""Sweep config → list of runs: validation, axis expansion, stable run ids, command-line flags.

A sweep config (configs/sweeps/*.py, ml_collections) has:

  name        str, used for the default sweep dir and job names
  entrypoint  module run as `python -m <entrypoint> --config=<base> --workdir=<run dir> --config.<k>=<v> ...`
              (default scaling.train)
  base        experiment config `file.py[:arg]`, relative to the repository root
  overrides   flat dotted keys applied to every run: {"train.steps": 100}; a nested dict works too. (A plain
              ConfigDict rejects dotted keys: write `ConfigDict({...}, allow_dotted_keys=True)` or nest them.)
  axes        list of groups; a group is {key: [values]}; one key = a product axis, several keys = zipped
              (equal lengths); groups combine by Cartesian product, first group outermost
  seeds       optional product axis over the top-level `seed` key (innermost)
  derived     optional callable: run overrides dict -> extra overrides (explicit values win)
  backend     optional per-backend defaults {"local": {...}, "slurm": {...}, "tpu": {...}}
  companions  optional list of sweep configs (`file.py[:arg]`) that launch/sweep.py runs after this one, each as
              its own sweep in <sweep_dir>/<its name>/ (e.g. another entrypoint's runs), reported together

Run ids are `<slug>_<hash8>`: the slug names the axis values (readable), the hash is sha256 of the canonical
JSON of (entrypoint, base, all overrides), so the id changes exactly when the run's definition does and never
depends on dict order or on the backend.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import importlib.util
import itertools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from launch.configfile import SweepError, load

TOP_LEVEL_KEYS = ("name", "entrypoint", "base", "overrides", "axes", "seeds", "derived", "backend", "description",
                  "companions")
BACKENDS = ("local", "slurm", "tpu")
SCALARS = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class Sweep:
  name: str
  entrypoint: str
  base: str
  overrides: dict[str, Any]
  groups: list[list[tuple[str, list]]]  # [[(key, values), ...] per group]; zipped within a group
  seeds: list[int] | None
  derived: Callable[[dict], dict] | None
  backend: dict[str, dict]
  spec: str  # the sweep config's `file.py[:arg]`
  companions: tuple[str, ...] = ()  # sweep configs run after this one, each into <sweep_dir>/<its name>/


@dataclasses.dataclass(eq=False)
class Run:
  id: str
  overrides: dict[str, Any]  # every override of this run, sorted by key
  varying: dict[str, Any]  # the axis (and seed) values, in axis order
  config: Any = dataclasses.field(repr=False, default=None)  # base config with overrides applied

  def flags(self) -> list[str]:
    return [f"--config.{k}={format_value(v, k)}" for k, v in self.overrides.items()]


def flatten(m: Any, prefix: str = "") -> dict[str, Any]:
  """Nested mappings (dicts or ConfigDicts) -> {dotted.key: leaf}; lists and tuples are leaves."""
  items = m.items() if isinstance(m, Mapping) else _cd_items(m)
  out = {}
  for k, v in items:
    key = f"{prefix}{k}"
    if isinstance(v, Mapping) or _is_configdict(v):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _is_configdict(x) -> bool:
  return type(x).__name__ in ("ConfigDict", "FrozenConfigDict")


def _cd_items(cd) -> list:
  # ConfigDict.items() resolves FieldReferences; that is what we want.
  return list(cd.items())


def _mapping(x, what: str) -> dict:
  if x is None:
    return {}
  if not (isinstance(x, Mapping) or _is_configdict(x)):
    raise SweepError(f"{what} must be a mapping of config keys to values, got {type(x).__name__}")
  return flatten(x)


def parse(cfg: Any, spec: str) -> Sweep:
  """Checks the sweep config's own structure (not yet its keys against the base config)."""
  top = dict(cfg.items()) if _is_configdict(cfg) else dict(cfg)
  unknown = [k for k in top if k not in TOP_LEVEL_KEYS]
  if unknown:
    raise SweepError(f"{spec}: unknown sweep setting {unknown[0]!r}{_did_you_mean(unknown[0], TOP_LEVEL_KEYS)}; "
                     f"known: {', '.join(TOP_LEVEL_KEYS)}")
  name = top.get("name")
  if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
    raise SweepError(f"{spec}: name={name!r} must be a non-empty string of letters, digits, '.', '_', '-'")
  entrypoint = top.get("entrypoint") or "scaling.train"
  if not isinstance(entrypoint, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", entrypoint):
    raise SweepError(f"{spec}: entrypoint={entrypoint!r} must be a module name like 'scaling.train'")
  base = top.get("base")
  if not isinstance(base, str) or not base:
    raise SweepError(f"{spec}: base must name the experiment config, e.g. 'configs/lm.py'")
  overrides = _mapping(top.get("overrides"), f"{spec}: overrides")
  groups = []
  axes = top.get("axes") or []
  if isinstance(axes, Mapping) or _is_configdict(axes):
    axes = [axes]  # a single group written without the list
  for i, group in enumerate(axes):
    g = _mapping(group, f"{spec}: axes[{i}]")
    if not g:
      raise SweepError(f"{spec}: axes[{i}] is empty; give it at least one key with values")
    items = []
    for key, values in g.items():
      if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise SweepError(f"{spec}: axis {key!r} (axes[{i}]) must be a list of values, got {values!r}")
      if not values:
        raise SweepError(f"{spec}: axis {key!r} (axes[{i}]) is empty; give it at least one value")
      for v in values:
        _check_value(v, key, spec)
      items.append((key, list(values)))
    lengths = {len(v) for _, v in items}
    if len(lengths) > 1:
      desc = ", ".join(f"{k} ({len(v)})" for k, v in items)
      raise SweepError(f"{spec}: axes[{i}] zips keys of unequal lengths: {desc}; zipped keys need equal "
                       "lengths (put them in separate groups for a product)")
    groups.append(items)
  seeds = top.get("seeds")
  if seeds is not None:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
      seeds = [seeds]
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in seeds):
      raise SweepError(f"{spec}: seeds={seeds!r} must be a non-empty list of integers")
    seeds = list(seeds)
  seen: dict[str, str] = {}
  for i, items in enumerate(groups):
    for key, _ in items:
      if key in seen:
        raise SweepError(f"{spec}: key {key!r} appears in both {seen[key]} and axes[{i}]; keep one")
      seen[key] = f"axes[{i}]"
  if seeds is not None and "seed" in seen:
    raise SweepError(f"{spec}: 'seed' is both an axis ({seen['seed']}) and in seeds; keep one")
  for key, v in overrides.items():
    _check_value(v, key, spec)
    if key in seen or (key == "seed" and seeds is not None):
      raise SweepError(f"{spec}: key {key!r} is set both in overrides and {seen.get(key, 'seeds')}; keep one")
  derived = top.get("derived")
  if derived is not None and not callable(derived):
    raise SweepError(f"{spec}: derived must be a function (overrides dict -> dict), got {type(derived).__name__}")
  backend = {}
  for bname, section in (_mapping_shallow(top.get("backend"), f"{spec}: backend")).items():
    if bname not in BACKENDS:
      raise SweepError(f"{spec}: unknown backend {bname!r} in backend settings; known: {', '.join(BACKENDS)}")
    backend[bname] = _to_plain(section) if section is not None else {}
  companions = top.get("companions") or ()
  if isinstance(companions, str):
    companions = (companions,)
  if not isinstance(companions, (list, tuple)) or not all(isinstance(x, str) and x for x in companions):
    raise SweepError(f"{spec}: companions={companions!r} must be a list of sweep config specs (file.py[:arg]), "
                     "e.g. ['configs/sweeps/demo_toy.py']")
  return Sweep(name=name, entrypoint=entrypoint, base=base, overrides=overrides, groups=groups, seeds=seeds,
               derived=derived, backend=backend, spec=spec, companions=tuple(companions))


def _mapping_shallow(x, what: str) -> dict:
  if x is None:
    return {}
  if _is_configdict(x):
    return dict(x.items())
  if isinstance(x, Mapping):
    return dict(x)
  raise SweepError(f"{what} must be a mapping, got {type(x).__name__}")


def _to_plain(x):
  if _is_configdict(x):
    x = x.to_dict()
  if isinstance(x, Mapping):
    return {k: _to_plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_to_plain(v) for v in x]
  return x


def _check_value(v, key: str, spec: str) -> None:
  ok = isinstance(v, SCALARS) or (isinstance(v, (list, tuple)) and all(isinstance(e, SCALARS) for e in v))
  if not ok:
    raise SweepError(f"{spec}: value {v!r} for {key!r} is not a bool, number, string or tuple of them "
                     "(the only values a --config.<key>= flag can carry)")


def _did_you_mean(key: str, choices) -> str:
  close = difflib.get_close_matches(key, list(choices), n=3, cutoff=0.6)
  last = key.rsplit(".", 1)[-1]
  close += [c for c in choices if c.rsplit(".", 1)[-1] == last and c not in close][:3]
  return f" (did you mean: {', '.join(close)}?)" if close else ""


def config_keys(config) -> list[str]:
  return sorted(flatten(config))


def apply_overrides(base, overrides: dict[str, Any], where: Callable[[str], str], base_spec: str):
  """A copy of `base` with `overrides` set, type-checked by ConfigDict; errors name the key."""
  cfg = copy.deepcopy(base)
  if hasattr(cfg, "unlock"):
    cfg.unlock()
  for key, value in overrides.items():
    node = cfg
    parts = key.split(".")
    for depth, part in enumerate(parts):
      is_last = depth == len(parts) - 1
      if not _is_configdict(node) or part not in node or (not is_last and not _is_configdict(node[part])):
        raise SweepError(f"{where(key)}: unknown config key {key!r} in {base_spec}"
                         f"{_did_you_mean(key, config_keys(base))}")
      if not is_last:
        node = node[part]
    if _is_configdict(node[parts[-1]]):
      raise SweepError(f"{where(key)}: {key!r} is a config section, not a value; set its fields instead")
    try:
      node[parts[-1]] = tuple(value) if isinstance(value, list) else value
    except (TypeError, ValueError) as e:
      raise SweepError(f"{where(key)}: cannot set {key}={value!r} in {base_spec}: {str(e).splitlines()[0]}") \
          from None
  return cfg


def format_value(v: Any, key: str = "") -> str:
  """The text after `--config.<key>=`, as ml_collections' config_flags parses it back."""
  if isinstance(v, bool):
    return "true" if v else "false"
  if isinstance(v, float):
    return repr(v)
  if isinstance(v, (list, tuple)):
    return repr(tuple(v))
  if v is None:
    raise SweepError(f"{key}: None cannot be passed as a --config flag; leave the key out instead")
  return str(v)


def canonical(obj) -> str:
  return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def run_hash(entrypoint: str, base: str, overrides: dict) -> str:
  payload = canonical({"entrypoint": entrypoint, "base": base, "overrides": overrides})
  return hashlib.sha256(payload.encode()).hexdigest()[:8]


def short_names(keys: list[str]) -> dict[str, str]:
  """Shortest dotted suffix that tells the keys apart: model.size -> size, data.tasks.cmp.frequency -> frequency."""
  out = {}
  for key in keys:
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
      cand = ".".join(parts[-n:])
      if sum(1 for k in keys if k == cand or k.endswith("." + cand)) == 1:
        out[key] = cand
        break
    else:
      out[key] = key
  return out


def _slug_value(v) -> str:
  if isinstance(v, bool):
    return "true" if v else "false"
  if isinstance(v, (list, tuple)):
    return "x".join(_slug_value(e) for e in v)
  s = f"{v:g}" if isinstance(v, float) else str(v)
  return re.sub(r"[^A-Za-z0-9.+]+", "", s) or "x"


def run_id(entrypoint: str, base: str, overrides: dict, varying: dict) -> str:
  names = short_names(list(varying))
  slug = "_".join(f"{names[k]}-{_slug_value(v)}" for k, v in varying.items())[:80] or "run"
  return f"{slug}_{run_hash(entrypoint, base, overrides)}"


def expand(sweep: Sweep, base_config=None) -> list[Run]:
  """All runs of the sweep, validated against the base config (loaded from sweep.base when not given)."""
  if _find(sweep.entrypoint) is None:
    raise SweepError(f"{sweep.spec}: entrypoint {sweep.entrypoint!r} is not an importable module")
  if base_config is None:
    base_config = load(sweep.base)
  # The common overrides are checked once so a typo there is reported as such.
  apply_overrides(base_config, sweep.overrides, lambda k: f"{sweep.spec}: overrides", sweep.base)
  for i, items in enumerate(sweep.groups):
    apply_overrides(base_config, {k: v[0] for k, v in items}, lambda k, i=i: f"{sweep.spec}: axes[{i}]",
                    sweep.base)
  axes = [[dict(zip([k for k, _ in items], combo)) for combo in zip(*[v for _, v in items])]
          for items in sweep.groups]
  if sweep.seeds is not None:
    if "seed" not in base_config:
      raise SweepError(f"{sweep.spec}: seeds given but {sweep.base} has no top-level 'seed' key")
    axes.append([{"seed": s} for s in sweep.seeds])
  runs, ids = [], {}
  for combo in itertools.product(*axes):
    varying = {k: v for part in combo for k, v in part.items()}
    explicit = {**sweep.overrides, **varying}
    extra = {}
    if sweep.derived is not None:
      try:
        extra = flatten(sweep.derived(dict(explicit)) or {})
      except Exception as e:  # noqa: BLE001
        raise SweepError(f"{sweep.spec}: derived({_fmt_varying(varying)}) raised {type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0]}") from None
      for k, v in extra.items():
        _check_value(v, k, sweep.spec)
    overrides = dict(sorted({**extra, **explicit}.items()))
    label = f"{sweep.spec}: run {_fmt_varying(varying)}"
    cfg = apply_overrides(base_config, overrides, lambda _k, label=label: label, sweep.base)
    rid = run_id(sweep.entrypoint, sweep.base, overrides, varying)
    if rid in ids:
      raise SweepError(f"{sweep.spec}: runs {_fmt_varying(ids[rid])} and {_fmt_varying(varying)} have the same "
                       "overrides; remove the duplicate axis value")
    ids[rid] = varying
    runs.append(Run(id=rid, overrides=overrides, varying=varying, config=cfg))
  return runs


def _find(module: str):
  try:
    return importlib.util.find_spec(module)
  except (ImportError, ValueError):
    return None


def _fmt_varying(varying: dict) -> str:
  return ",".join(f"{k}={v}" for k, v in varying.items()) or "(single run)"
