"""A fine-tune's checkpoints without its frozen base: the base is the pretrained run's, read back from there.

LoRA, DoRA and `frozen` fine-tunes carry the whole pretrained parameter tree as `state["frozen"]`, unchanged from
step 0. `WithoutFrozen` wraps the run's Checkpointer so that each checkpoint holds everything else (trainable
tree, optimizer state, step) plus, in its JSON item, which checkpoint step of --init_from the base was read from;
a restore reads the base back from that step (scaling/core/checkpoint.py `restore_subtree`) onto this run's
shardings. A 4B LoRA fine-tune's checkpoint is then megabytes, not the base's 16 GB per kept step, and a resumed
fine-tune is still bit-identical (the base is the same bytes). The price is that --init_from's checkpoint step must
still exist on resume: `finetune.save_frozen=True` keeps the base in the fine-tune's own checkpoints instead
(self-contained run dirs, e.g. to delete the pretraining run).
"""

from __future__ import annotations

from typing import Any

from scaling.core import checkpoint as ckpt_lib
from scaling.core.errors import ConfigError

FROZEN = "frozen"
SOURCE_KEY = "frozen_from"  # in the checkpoint's JSON item: {"dir": --init_from's checkpoint dir, "step": int}


class BaseSource:
  """Where the frozen base comes from: --init_from's checkpoint dir, and the step read (set by the fresh state or
  by a restore)."""

  def __init__(self, directory: str):
    self.directory = directory
    self.step: int | None = None


def _without_frozen(tree: dict) -> dict:
  return {k: v for k, v in tree.items() if k != FROZEN}


class WithoutFrozen:
  """The Checkpointer interface the loop and trainer use (every, steps, should_save, save, restore_latest, close)."""

  def __init__(self, inner: ckpt_lib.Checkpointer, source: BaseSource, frozen_abstract: Any):
    self.inner, self.source, self.frozen_abstract = inner, source, frozen_abstract
    self.every, self.directory = inner.every, inner.directory

  def steps(self) -> list[int]:
    return self.inner.steps()

  def should_save(self, step: int, final: bool = False) -> bool:
    return self.inner.should_save(step, final)

  def close(self) -> None:
    self.inner.close()

  def save(self, step: int, state: dict, data_state: dict) -> None:
    if self.source.step is None:
      raise RuntimeError("a fine-tune checkpoint was saved before its frozen base was read")
    self.inner.save(step, _without_frozen(state),
                    {**data_state, SOURCE_KEY: {"dir": self.source.directory, "step": self.source.step}})

  def restore_latest(self, abstract_state: dict) -> tuple[int, dict, dict] | None:
    restored = self.inner.restore_latest(_without_frozen(abstract_state))
    if restored is None:
      return None
    step, state, data = restored
    data = dict(data)
    src = data.pop(SOURCE_KEY, None)
    if src is None:
      raise ckpt_lib.ForeignCheckpoint(
          f"{self.directory}/{step} does not say where its frozen base came from (written with "
          "finetune.save_frozen=True?) — resume with the config that wrote it (its config.json)")
    self.source.step = int(src["step"])
    try:
      _, frozen = ckpt_lib.restore_subtree(self.source.directory, self.frozen_abstract, step=self.source.step)
    except ckpt_lib.ForeignCheckpoint as e:
      raise ConfigError(f"the fine-tune's frozen base was step {self.source.step} of {self.source.directory}, "
                        f"which cannot be read back ({e}); restore that checkpoint, or start a new --workdir "
                        "(finetune.save_frozen=True keeps the base in the fine-tune's own checkpoints)") from None
    return step, {**state, FROZEN: frozen}, data
