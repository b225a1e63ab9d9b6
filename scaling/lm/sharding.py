"""Meshes, logical-axis rules, and sharded state placement.

The mesh always has three named axes, `data`, `fsdp`, `tensor` (sizes from `config.mesh`; one may be -1 to take
the remaining devices). Model code names its axes logically (see `scaling/lm/model.py`); a *rule set*
maps logical names to mesh axes. Rules are data (T5X style); three presets cover the usual layouts:

  dp        pure data parallel: batch over (data, fsdp), every parameter replicated
  fsdp      + parameters sharded over `fsdp` along their d_model ('embed') dimension (ZeRO-3 style)
  fsdp_tp   + heads / MLP width / vocabulary over `tensor` (Megatron-style tensor parallel)

The resolver never emits an invalid sharding: a mesh axis that does not divide a dimension (or is already used by
another dimension of the same array) is dropped for that dimension, and the array stays replicated there.
`check_sufficiently_sharded` then fails loudly when an FSDP preset leaves too much of the model replicated.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling.core.errors import ShardingError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

Rules = dict[str, Any]  # logical name -> mesh axis name, tuple of names, or None

_ACTIVATIONS: Rules = {"act_batch": BATCH_AXES, "act_len": None, "act_embed": None, "act_heads": None,
                       "act_mlp": None, "act_vocab": None}
PRESETS: dict[str, Rules] = {
    "dp": {**_ACTIVATIONS},
    "fsdp": {**_ACTIVATIONS, "embed": "fsdp"},
    "fsdp_tp": {**_ACTIVATIONS, "embed": "fsdp", "heads": "tensor", "mlp": "tensor", "vocab": "tensor",
                "act_heads": "tensor", "act_mlp": "tensor", "act_vocab": "tensor"},
}




# ---------------------------------------------------------------------------------------------------------------
# Meshes
# ---------------------------------------------------------------------------------------------------------------
def resolve_mesh_shape(mesh_cfg: Any, n_devices: int) -> tuple[int, int, int]:
  """{'data': -1, 'fsdp': 2, 'tensor': 1} on 8 devices -> (4, 2, 1)."""
  sizes = []
  for name in MESH_AXES:
    v = mesh_cfg.get(name, 1) if hasattr(mesh_cfg, "get") else getattr(mesh_cfg, name)
    if not isinstance(v, (int, np.integer)) or (v < 1 and v != -1):
      raise ShardingError(f"mesh.{name}={v!r} must be a positive integer or -1 (fill the remaining devices)")
    sizes.append(int(v))
  if sizes.count(-1) > 1:
    raise ShardingError(f"mesh {dict(zip(MESH_AXES, sizes))}: at most one axis may be -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if n_devices % known:
      raise ShardingError(f"mesh {dict(zip(MESH_AXES, sizes))}: fixed axes ({known}) do not divide the "
                          f"{n_devices} devices; change the mesh sizes")
    sizes[sizes.index(-1)] = n_devices // known
  if math.prod(sizes) != n_devices:
    raise ShardingError(f"mesh {dict(zip(MESH_AXES, sizes))} has {math.prod(sizes)} devices but "
                        f"{n_devices} are available; set mesh sizes whose product is {n_devices} "
                        "(or one axis to -1)")
  return tuple(sizes)  # type: ignore[return-value]


def make_mesh(mesh_cfg: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(devices) if devices is not None else jax.devices()
  shape = resolve_mesh_shape(mesh_cfg, len(devices))
  # Logical-axis sharding uses with_sharding_constraint, which needs Auto axes (jax now defaults to Explicit).
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def get_rules(preset_or_rules: str | Rules) -> Rules:
  if isinstance(preset_or_rules, str):
    if preset_or_rules not in PRESETS:
      raise ShardingError(f"unknown sharding preset {preset_or_rules!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[preset_or_rules])
  return dict(preset_or_rules)


# ---------------------------------------------------------------------------------------------------------------
# Logical -> physical
# ---------------------------------------------------------------------------------------------------------------
def logical_to_spec(names: Sequence[str | None] | None, shape: Sequence[int], rules: Rules, mesh: Mesh) -> P:
  """Maps logical dimension names to a PartitionSpec valid for `shape` on `mesh`."""
  if not names:
    return P()
  if len(names) != len(shape):
    raise ShardingError(f"logical axes {tuple(names)} do not match array rank {len(shape)}")
  used: set[str] = set()
  out = []
  for name, dim in zip(names, shape):
    target = rules.get(name) if name is not None else None
    axes = (target,) if isinstance(target, str) else tuple(target or ())
    axes = tuple(a for a in axes if a not in used and mesh.shape.get(a, 1) > 1)
    # Drop trailing axes until their product divides the dimension.
    while axes and dim % math.prod(mesh.shape[a] for a in axes):
      axes = axes[:-1]
    used.update(axes)
    out.append(axes[0] if len(axes) == 1 else (axes or None))
  return P(*out)


_CONTEXT: contextvars.ContextVar[tuple[Rules, Mesh] | None] = contextvars.ContextVar("scaling_rules",
                                                                                       default=None)


@contextlib.contextmanager
def use_rules(rules: Rules, mesh: Mesh) -> Iterator[None]:
  """Activates rules + mesh for `constrain` (model code) while tracing."""
  token = _CONTEXT.set((rules, mesh))
  try:
    yield
  finally:
    _CONTEXT.reset(token)


def constrain(x, names: Sequence[str | None]):
  """Sharding constraint on an activation by logical names; a no-op outside `use_rules`."""
  ctx = _CONTEXT.get()
  if ctx is None:
    return x
  rules, mesh = ctx
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(names, x.shape, rules, mesh)))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Leading (batch) dimension over the data-parallel axes, the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def logical_names_tree(abstract_state) -> Any:
  """nnx.State of Variables -> pure dict (same layout as `State.to_pure_dict()`) of logical-name tuples."""
  out: dict = {}
  for path, var in nnx.to_flat_state(abstract_state):
    node = out
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = var.get_metadata().get("out_sharding")
  return out


def param_shardings(abstract_params: Any, names_tree: Any, rules: Rules, mesh: Mesh) -> Any:
  """Per-parameter NamedShardings from logical names (trees with the same structure)."""
  return jax.tree.map(lambda a, n: NamedSharding(mesh, logical_to_spec(n, a.shape, rules, mesh)),
                      abstract_params, names_tree, is_leaf=lambda x: x is None or isinstance(x, tuple))


def replicated_fraction(abstract_params: Any, shardings: Any, axis: str = "fsdp") -> tuple[float, list]:
  """Fraction of parameter bytes not sharded over `axis`, and the largest such parameters."""
  total, rep, offenders = 0, 0, []
  paths = jax.tree_util.tree_leaves_with_path(abstract_params)
  for (path, a), s in zip(paths, jax.tree.leaves(shardings)):
    nbytes = int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize
    total += nbytes
    flat_axes = {x for d in s.spec if d for x in ((d,) if isinstance(d, str) else d)}
    if axis not in flat_axes:
      rep += nbytes
      offenders.append((nbytes, jax.tree_util.keystr(path)))
  offenders.sort(reverse=True)
  return (rep / total if total else 0.0), offenders


def check_sufficiently_sharded(abstract_params: Any, shardings: Any, mesh: Mesh, preset: str,
                               max_replicated: float = 0.05) -> float:
  """Fails when an FSDP preset leaves more than `max_replicated` of parameter bytes unsharded over fsdp."""
  if not preset.startswith("fsdp") or mesh.shape["fsdp"] == 1:
    return 0.0
  frac, offenders = replicated_fraction(abstract_params, shardings)
  if frac > max_replicated:
    worst = ", ".join(f"{p} ({n / 2**20:.1f} MiB)" for n, p in offenders[:3])
    raise ShardingError(
        f"preset {preset!r} leaves {frac:.0%} of parameter bytes replicated over fsdp={mesh.shape['fsdp']} "
        f"(limit {max_replicated:.0%}; largest: {worst}); choose an fsdp size that divides d_model "
        "or raise sharding.max_replicated")
  return frac
