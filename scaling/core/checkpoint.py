"""Orbax checkpoints of (train state, data-iterator state), with fallback past a corrupt latest step.

Each step directory holds three items:
  state        the train state pytree (params, optimizer state, step), sharded arrays
  data         the data iterator's state (JSON; identical on every process, see scaling/lm/data/pipeline.py)
  fingerprint  per-leaf sums computed on device at save time (JSON), checked after restore

Restore walks the steps newest first. A step that fails to read or whose fingerprint does not match is renamed to
`checkpoints/corrupt-<step>-<n>` (kept for inspection, never deleted) with a warning, and the previous step is
tried. Orbax itself ignores uncommitted (killed mid-save) steps.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from scaling.core.errors import CorruptCheckpoint

log = logging.getLogger(__name__)




@jax.jit
def _fingerprint(tree):
  # float64 is off by default in JAX; float32 sums of |x| are stable enough for equality within tolerance.
  return jax.tree.map(lambda x: jnp.sum(jnp.abs(x.astype(jnp.float32))), tree)


def fingerprint(tree: Any) -> list[float]:
  return [float(v) for v in jax.tree.leaves(jax.device_get(_fingerprint(tree)))]


def _matches(a: list[float], b: list[float], rtol: float = 1e-4) -> bool:
  return len(a) == len(b) and bool(np.allclose(a, b, rtol=rtol, atol=1e-6))


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

  def wait(self) -> None:
    self._manager.wait_until_finished()

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

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
    """(step, state, data_state) of the newest readable step, or None when there is none."""
    for step in reversed(self.steps()):
      try:
        state, data_state = self.restore_step(step, abstract_state)
        return step, state, data_state
      except Exception as e:  # noqa: BLE001 - any read failure means this step is unusable
        moved = self._quarantine(step)
        msg = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        log.warning("checkpoint step %d is unreadable (%s); moved it to %s and falling back to the "
                    "previous step", step, msg, moved)
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
