"""Orbax checkpoints of (train state, data-iterator state), with fallback past a corrupt latest step.

Each step directory holds three items:
  state        the train state pytree (params, optimizer state, step), sharded arrays
  data         the data iterator's state (JSON; identical on every process, see scaling/lm/data/pipeline.py)
  fingerprint  per-leaf sums computed on device at save time (JSON), checked after restore

Restore walks the steps newest first and tells three failures apart:
  foreign      the step's stored tree (keys, shapes, dtypes; read from its metadata) differs from the state this
               config builds: a checkpoint of another model or config. ForeignCheckpoint (exit 2), nothing moved.
  unreadable   the read failed for a reason outside the checkpoint: permissions, an I/O error, a full disk, a
               network filesystem timing out (scaling/core/failure.py). CheckpointUnreadable (exit 1), nothing
               moved: the step may be perfectly good once the cause is fixed.
  corrupt      anything else (truncated or garbled files, a fingerprint that does not match the values): the step
               is renamed to `checkpoints/corrupt-<step>-<n>` (kept for inspection, never deleted) with a warning,
               and the previous step is tried.
Orbax itself ignores uncommitted (killed mid-save) steps.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from scaling.core import failure
from scaling.core.errors import CheckpointUnreadable, CorruptCheckpoint, ForeignCheckpoint

log = logging.getLogger(__name__)


def _key_name(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """{"params/blocks/wq": (shape, dtype)} of every array leaf; namedtuple fields and dict keys read alike."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    dtype = getattr(leaf, "dtype", None)
    out["/".join(_key_name(k) for k in path)] = (tuple(getattr(leaf, "shape", ()) or ()),
                                                 str(np.dtype(dtype)) if dtype is not None else "?")
  return out


def spec_differences(stored: dict, wanted: dict) -> list[str]:
  """Human lines for every leaf that differs between two leaf_specs, parameters first, then by key."""
  out = []
  for key in sorted(set(stored) | set(wanted), key=lambda k: (not k.startswith("params"), k)):
    a, b = stored.get(key), wanted.get(key)
    if a == b:
      continue
    if a is None:
      out.append(f"{key} is missing there")
    elif b is None:
      out.append(f"{key} is there but not in this config")
    else:
      out.append(f"{key} is {a[1]}{list(a[0])} there but {b[1]}{list(b[0])} in this config")
  return out


@jax.jit
def _fingerprint(tree):
  # float64 is off by default in JAX; float32 sums of |x| are stable enough for equality within tolerance.
  return jax.tree.map(lambda x: jnp.sum(jnp.abs(x.astype(jnp.float32))), tree)


def fingerprint(tree: Any) -> list[float]:
  return [float(v) for v in jax.tree.leaves(jax.device_get(_fingerprint(tree)))]


def _matches(a: list[float], b: list[float], rtol: float = 1e-4) -> bool:
  return len(a) == len(b) and bool(np.allclose(a, b, rtol=rtol, atol=1e-6))


def saved_steps(directory: str) -> list[int]:
  """Committed steps in a checkpoint folder, read without creating anything (orbax commits a step by renaming
  its temporary folder to the step number)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


class Checkpointer:

  def __init__(self, directory: str, every: int, keep: int, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self.every = every
    self._options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=1,
                                                 enable_async_checkpointing=async_save, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def should_save(self, step: int, final: bool = False) -> bool:
    return final or (step % self.every == 0)

  def save(self, step: int, state: Any, data_state: dict) -> None:
    if step in self._manager.all_steps():
      return  # already saved (e.g. final step coinciding with the interval)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state),
        fingerprint=ocp.args.JsonSave({"leaves": fingerprint(state)})))

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def restore_step(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """(state, data_state) of one step; raises when unreadable or when the fingerprint does not match."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore(),
        fingerprint=ocp.args.JsonRestore()))
    # Orbax returns namedtuples (optax states) as plain tuples; rebuild the exact target structure.
    leaves = jax.tree.leaves(restored.state)
    state = jax.tree.unflatten(jax.tree.structure(abstract_state), leaves)
    if not _matches(fingerprint(state), restored.fingerprint["leaves"]):
      raise CorruptCheckpoint(f"step {step}: restored values do not match the fingerprint saved with them")
    return state, restored.data

  def check_compatible(self, step: int, abstract_state: Any) -> None:
    """Raises ForeignCheckpoint when step's stored tree differs from abstract_state (keys, shapes, dtypes).

    Reads only the step's metadata; a metadata file that cannot be parsed raises like a failed restore."""
    meta = ocp.StandardCheckpointHandler().metadata(epath.Path(self.directory) / str(step) / "state")
    tree = getattr(meta, "tree", meta)
    diffs = spec_differences(leaf_specs(tree), leaf_specs(abstract_state))
    if diffs:
      more = f" (and {len(diffs) - 1} more differences)" if len(diffs) > 1 else ""
      raise ForeignCheckpoint(f"{self.directory}/{step} holds a checkpoint of another model or config: {diffs[0]}"
                              f"{more} — use a new --workdir, or the config that wrote it (its config.json)")

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
    """(step, state, data_state) of the newest good step, or None when there is none.

    Raises ForeignCheckpoint or CheckpointUnreadable (touching nothing); quarantines corrupt steps (see the
    module docstring)."""
    for step in reversed(self.steps()):
      try:
        self.check_compatible(step, abstract_state)
        state, data_state = self.restore_step(step, abstract_state)
        return step, state, data_state
      except ForeignCheckpoint:
        raise
      except Exception as e:  # noqa: BLE001 - classified below: environment -> raise, anything else -> corrupt
        if failure.is_environmental(e):
          raise CheckpointUnreadable(f"checkpoint step {step} in {self.directory} could not be read: "
                                     f"{failure.describe(e)} (nothing was moved)") from None
        moved = self._quarantine(step)
        log.warning("checkpoint step %d is unreadable (%s); moved it to %s and falling back to the "
                    "previous step", step, failure.first_line(e), moved)
    return None

  def _quarantine(self, step: int) -> str:
    src = os.path.join(self.directory, str(step))
    n = 0
    while os.path.exists(dst := os.path.join(self.directory, f"corrupt-{step}-{n}")):
      n += 1
    if jax.process_index() == 0 and os.path.exists(src):
      os.rename(src, dst)
    # The manager caches its step list; rebuild it so the quarantined step is forgotten.
    self._manager.close()
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)
    return dst


def restore_subtree(directory: str, abstract: Any, key: str = "params", step: int | None = None) -> tuple[int, Any]:
  """(step, tree) from the newest committed step in `directory` (or from `step`): only `state[key]` (e.g. a
  pretrained run's parameters, without its optimizer state), read onto the shardings attached to `abstract`'s
  leaves, so any mesh can read any checkpoint. Reads nothing else and writes nothing.

  Raises ForeignCheckpoint (ConfigError) when there is no committed step or the stored subtree differs from
  `abstract` (keys, shapes, dtypes), CheckpointUnreadable when the read fails for an environmental reason."""
  steps = saved_steps(directory)
  if not steps:
    raise ForeignCheckpoint(f"{directory} holds no committed checkpoint — let the run save one (checkpoint.every) "
                            "or point at a run that finished")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise ForeignCheckpoint(f"{directory} no longer holds step {step} (it has {', '.join(map(str, steps))})")
  path = epath.Path(directory) / str(step) / "state"
  try:
    meta = ocp.StandardCheckpointHandler().metadata(path)
  except Exception as e:  # noqa: BLE001 - environmental -> unreadable; anything else -> not a checkpoint of ours
    if failure.is_environmental(e):
      raise CheckpointUnreadable(f"{path} could not be read: {failure.describe(e)}") from None
    raise ForeignCheckpoint(f"{path} is not a readable checkpoint ({failure.first_line(e)}) — point at a run dir "
                            "written by scaling.train") from None
  stored = getattr(meta, "tree", meta)
  if not isinstance(stored, dict) or key not in stored:
    raise ForeignCheckpoint(f"{path} holds no {key!r} tree — point at a run dir written by scaling.train")
  diffs = spec_differences(leaf_specs(stored[key]), leaf_specs(abstract))
  if diffs:
    raise ForeignCheckpoint(f"{path} holds another model's {key}: {diffs[0]} — use the config it was trained with")
  restore_args = jax.tree.map(lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding), abstract)
  try:
    out = ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(
        item={key: abstract}, restore_args={key: restore_args}, partial_restore=True))
  except Exception as e:  # noqa: BLE001 - classified as in restore_latest
    if failure.is_environmental(e):
      raise CheckpointUnreadable(f"{path} could not be read: {failure.describe(e)}") from None
    raise CorruptCheckpoint(f"{path} could not be restored: {failure.first_line(e)}") from None
  return step, jax.tree.unflatten(jax.tree.structure(abstract), jax.tree.leaves(out[key]))
