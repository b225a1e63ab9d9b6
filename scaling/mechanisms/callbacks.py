"""The mechanism measurements as training-loop callbacks (scaling/core/loop.py), built from `config.mechanisms`.

When is "step s"? A record at step s describes the model after s updates, like the eval metrics in it: the
callbacks run after update s, on the post-update params. Interference at step s uses batch s, the batch of the
*next* update (rebuilt here: batches are a pure function of (config, index)), so it is the gradient that update
s + 1 applies, measured at its own parameters, "at the step" as in the paper, without keeping a copy of the
pre-update params that the donated train step destroys. An injection in batch i is therefore measured in the record
at step i. Nothing is measured at step 0.

Cost: no callback at all when everything is off; otherwise work and one host sync only at the steps where one is
due. Values are deterministic (no timings), so resumed runs write the same records.
"""

from __future__ import annotations

import jax

from scaling.core import schedules
from scaling.core.loop import Callback
from scaling.lm.data import mixture, pipeline, sources
from scaling.mechanisms import interference, probes, retention
from scaling.mechanisms.settings import INJECTION_SCHEDULES, settings


class InterferenceCallback(Callback):
  """interference/<task>/* every `interference_every` steps and/or at the injection steps of burst/withhold
  tasks (`interference_at_injections`)."""

  at_end = False

  def __init__(self, config, setup, s: dict):
    self.setup = setup
    self.mix = mixture.Mixture.from_config(config)
    self.every = s["interference_every"]
    self.injection_tasks = ([x for x in self.mix.schedules if x.schedule in INJECTION_SCHEDULES]
                            if s["interference_at_injections"] else [])
    self.interference = interference.from_settings(setup, self.mix, s)
    self.source = sources.make_source(config.data, config.seed)
    self.rows = pipeline.local_rows(config.train.batch_size, jax.process_index(), jax.process_count())

  def due(self, step: int, total: int = 0) -> bool:
    if step == 0:
      return False
    if self.every and step % self.every == 0:
      return True
    return any(schedules.deterministic_count(x, step) > 0 for x in self.injection_tasks)

  def batch(self, index: int):
    """Global batch `index` as the trainer places it (scaling/lm/data/pipeline.py builds the same rows)."""
    return self.setup.place_batch(self.mix.batch(self.source, index, self.rows))

  def __call__(self, loop, step: int):
    return self.interference.measure(loop.state["params"], self.batch(step))


class ProbeCallback(Callback):
  """probe/* every `probe_every` steps."""

  at_end = False

  def __init__(self, setup, s: dict):
    self.every = int(s["probe_every"])
    self.probes = probes.from_config(setup, s)

  def __call__(self, loop, step: int):
    return self.probes.measure(loop.state["params"])


def build(config, setup) -> list[Callback]:
  """The mechanism callbacks `config.mechanisms` asks for (an empty list when everything is off)."""
  s = settings(config)
  mix = mixture.Mixture.from_config(config)
  has_injections = any(x.schedule in INJECTION_SCHEDULES for x in mix.schedules)
  out: list[Callback] = []
  if s["interference_every"] or (s["interference_at_injections"] and has_injections):
    out.append(InterferenceCallback(config, setup, s))
  if s["probe_every"]:
    out.append(ProbeCallback(setup, s))
  if s["retention"] and retention.tracked(mix):
    out.append(retention.Retention(setup, mix, s["retention_eval_limit"]))
  return out
