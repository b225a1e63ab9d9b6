"""Which parameters a fine-tune trains, and the jittable loss over them.

Parameters are held as two trees: `trainable` (what the optimizer sees, and the only tree differentiated) and
`frozen` (passed through unchanged, never in the optimizer state):

  method   trainable            frozen             effective parameters (what the model runs with)
  full     the base tree        {}                 trainable
  lora     the adapter tree     the base tree      adapters.merge(frozen, trainable)
  dora     the adapter tree     the base tree      adapters.merge(frozen, trainable)
  frozen   {}                   the base tree      frozen

So `optax` state exists only for trainable leaves (tx.init(trainable)), with no masking needed. `Plan` bundles
the abstract trees, their logical names (for `sharding.param_shardings` under any preset), the exact trainable
count, and the pure functions a train step needs: `start` (base params -> the two trees, adapters initialised),
`effective` and `loss_sums`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from flax import nnx

from scaling.lm import adapters, losses, sharding
from scaling.lm import model as transformer
from scaling.lm import step as step_lib


def split(spec: adapters.AdapterSpec, base_params: dict, adapter_params: dict) -> tuple[dict, dict]:
  """(trainable, frozen) for the method (table in the module docstring)."""
  if spec.method == "full":
    return base_params, {}
  if spec.method == "frozen":
    return {}, base_params
  return adapter_params, base_params


def effective_params(spec: adapters.AdapterSpec, trainable: dict, frozen: dict) -> dict:
  """The parameter tree the model runs with (same structure and shardings as the base tree)."""
  if spec.method == "full":
    return trainable
  if spec.method == "frozen":
    return frozen
  return adapters.merge(frozen, trainable, spec)


def trainable_mask(spec: adapters.AdapterSpec, base_params: dict, adapter_params: dict) -> dict:
  """{"base": bool tree, "adapters": bool tree}: True where a leaf trains (for reporting and checks)."""
  trains_base = spec.method == "full"
  return {"base": jax.tree.map(lambda _: trains_base, base_params),
          "adapters": jax.tree.map(lambda _: spec.adapted, adapter_params)}


def count(tree: Any) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@dataclasses.dataclass
class Plan:
  """Everything about the parameter split that does not depend on the mesh (build with `plan`)."""

  spec: adapters.AdapterSpec
  model_cfg: transformer.TransformerConfig
  graphdef: Any
  abstract_base: dict
  base_names: dict
  abstract_adapters: dict
  adapter_names: dict
  seed: int = 0  # adapter init

  @property
  def abstract_trainable(self) -> dict:
    return split(self.spec, self.abstract_base, self.abstract_adapters)[0]

  @property
  def abstract_frozen(self) -> dict:
    return split(self.spec, self.abstract_base, self.abstract_adapters)[1]

  @property
  def n_trainable(self) -> int:
    """Exact count of trainable parameters, from the abstract tree."""
    return count(self.abstract_trainable)

  @property
  def n_base(self) -> int:
    return count(self.abstract_base)

  @property
  def abstract_split(self) -> tuple[tuple[dict, dict], tuple[dict, dict]]:
    """((trainable tree, its logical names), (frozen tree, its names)), abstract: for the memory plan."""
    (tr, fr), (tr_names, fr_names) = (split(self.spec, self.abstract_base, self.abstract_adapters),
                                      split(self.spec, self.base_names, self.adapter_names))
    return (tr, tr_names), (fr, fr_names)

  def shardings(self, rules: sharding.Rules, mesh) -> tuple[Any, Any]:
    """(trainable, frozen) NamedSharding trees under a preset's rules."""
    base_sh = sharding.param_shardings(self.abstract_base, self.base_names, rules, mesh)
    adapter_sh = sharding.param_shardings(self.abstract_adapters, self.adapter_names, rules, mesh)
    return split(self.spec, base_sh, adapter_sh)

  def start(self, base_params: dict) -> tuple[dict, dict]:
    """Pretrained base params -> (trainable, frozen), adapters freshly initialised. Jittable: use
    jax.jit(plan.start, out_shardings=plan.shardings(rules, mesh)) under the mesh."""
    return split(self.spec, base_params, adapters.init(self.spec, base_params, self.base_names, self.seed))

  def effective(self, trainable: dict, frozen: dict) -> dict:
    return effective_params(self.spec, trainable, frozen)

  def loss_sums(self, trainable: dict, frozen: dict, batch: dict, z_loss: float = 0.0):
    """(total, (ce_sum, weight_sum)) summed over weighted tokens, as scaling/lm/step.py's loss: differentiate
    with respect to `trainable` (argument 0) and divide by the total weight."""
    logits_BxLxV = nnx.merge(self.graphdef, self.effective(trainable, frozen))(batch["inputs"])
    return losses.weighted_sums(logits_BxLxV, batch, z_loss)

  def describe(self) -> str:
    """The --dry_run line for the trainable parameters."""
    s = self.spec
    what = (f"rank={s.rank} alpha={s.alpha:g} targets={','.join(s.targets)}"
            + (f" detach_norm={s.detach_norm}" if s.dora else "")) if s.adapted else ""
    share = self.n_trainable / max(self.n_base, 1)
    return (f"trainable   method={s.method} {what}{' ' if what else ''}params={self.n_trainable:,} "
            f"({share:.3%} of the {self.n_base:,} base parameters; optimizer state for these only)")


def plan(spec: adapters.AdapterSpec, model_cfg: transformer.TransformerConfig, seed: int = 0) -> Plan:
  """Validates `spec` against the model and builds the abstract trees (allocates nothing; works for 4B)."""
  spec.validate(model_cfg)
  graphdef, abs_base, base_names = step_lib.abstract_model(model_cfg)
  abs_adapters, adapter_names = adapters.abstract(spec, abs_base, base_names)
  return Plan(spec=spec, model_cfg=model_cfg, graphdef=graphdef, abstract_base=abs_base, base_names=base_names,
              abstract_adapters=abs_adapters, adapter_names=adapter_names, seed=seed)
