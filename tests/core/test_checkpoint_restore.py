"""Restore tells corrupt (quarantine, fall back) from unreadable (raise, touch nothing) from foreign (raise, touch
nothing), on a small train-state-shaped pytree."""

import errno
import glob
import os

import jax
import jax.numpy as jnp
import optax
import pytest

from scaling.core import checkpoint
from scaling.core.errors import CheckpointUnreadable, ForeignCheckpoint

TX = optax.adam(1e-3)


def _state(rows: int = 4, extra: bool = False):
  params = {"w": jnp.arange(rows * 3, dtype=jnp.float32).reshape(rows, 3), "b": jnp.ones((3,))}
  if extra:
    params["c"] = jnp.zeros((2,))
  return {"params": params, "opt_state": TX.init(params), "step": jnp.int32(7)}


@pytest.fixture
def saved(tmp_path):
  d = str(tmp_path / "checkpoints")
  ck = checkpoint.Checkpointer(d, every=1, keep=3, async_save=False)
  for step in (1, 2):
    ck.save(step, _state(), {"i": step})
  ck.close()
  return d


def _abstract(**kw):
  return jax.eval_shape(lambda: _state(**kw))


def test_good_checkpoint_restores_the_newest_step(saved):
  ck = checkpoint.Checkpointer(saved, every=1, keep=3, async_save=False)
  step, state, data = ck.restore_latest(_abstract())
  assert (step, data) == (2, {"i": 2}) and int(state["step"]) == 7
  assert not hasattr(ck, "wait")  # dead code removed: close() is the one way to finish pending saves


@pytest.mark.parametrize("error", [
    PermissionError(errno.EACCES, "Permission denied", "x"),
    OSError(errno.EIO, "Input/output error", "x"),
    ValueError("FAILED_PRECONDITION: Error reading local file \"/ckpt/d/1\": PERMISSION_DENIED [os_error_code='13']"),
    ValueError("Error opening \"/nfs/ckpt\": UNAVAILABLE: stale handle"),
])
def test_defect_permission_or_transient_error_renames_every_good_checkpoint(saved, monkeypatch, error):
  ck = checkpoint.Checkpointer(saved, every=1, keep=3, async_save=False)

  def fail(*_a, **_k):
    raise error

  monkeypatch.setattr(checkpoint.Checkpointer, "restore_step", fail)
  with pytest.raises(CheckpointUnreadable, match="could not be read.*nothing was moved"):
    ck.restore_latest(_abstract())
  assert sorted(os.listdir(saved)) == ["1", "2"]


@pytest.mark.parametrize("kw,needle", [({"rows": 5}, "float32[4, 3] there but float32[5, 3]"),
                                       ({"extra": True}, "params/c is missing there")])
def test_defect_foreign_checkpoint_is_quarantined_and_retrained(saved, kw, needle):
  ck = checkpoint.Checkpointer(saved, every=1, keep=3, async_save=False)
  with pytest.raises(ForeignCheckpoint, match="holds a checkpoint of another model or config") as e:
    ck.restore_latest(_abstract(**kw))
  assert needle in str(e.value) and str(e.value).index("params/") < 140  # the params difference comes first
  assert sorted(os.listdir(saved)) == ["1", "2"]


def test_corrupt_newest_step_is_quarantined_and_the_previous_restored(saved, caplog):
  files = [p for p in glob.glob(os.path.join(saved, "2", "state", "**"), recursive=True) if os.path.isfile(p)]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.truncate(os.path.getsize(biggest) // 2)
  ck = checkpoint.Checkpointer(saved, every=1, keep=3, async_save=False)
  step, _, data = ck.restore_latest(_abstract())
  assert (step, data) == (1, {"i": 1})
  assert sorted(os.listdir(saved)) == ["1", "corrupt-2-0"]
  assert any("moved it to" in r.getMessage() for r in caplog.records)
