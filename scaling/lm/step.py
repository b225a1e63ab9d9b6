"""The jitted pieces of training: sharded state creation, loss, train step, eval step.

`build(config, devices)` returns a `TrainSetup` holding everything the loop needs. The train state is a plain
pytree {"params", "opt_state", "step"} (params as a pure dict, so optax, orbax and analysis see ordinary
nested dicts); it is created already sharded by a jitted init whose out_shardings come from the logical rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling.core import optim
from scaling.lm import config as configlib
from scaling.lm import losses, sharding
from scaling.lm import model as transformer


@dataclasses.dataclass
class TrainSetup:
  config: Any
  model_cfg: transformer.TransformerConfig
  mesh: Mesh
  rules: sharding.Rules
  graphdef: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  abstract_state: Any
  state_shardings: Any
  batch_sharding: NamedSharding
  init: Callable[..., Any]  # () -> fresh state; a fine-tune's (base params) -> state
  train_step: Callable[[Any, Any], tuple[Any, dict]]
  # K steps in one call: (state, batches stacked on a leading K axis) -> (state, metrics each of shape [K]),
  # bit-identical to K calls of train_step. Batches come from `place_batches`.
  train_steps: Callable[[Any, Any], tuple[Any, dict]]
  batches_sharding: NamedSharding
  eval_step: Callable[[Any, Any], dict]
  replicated_fraction: float

  def place_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """This process's rows -> global arrays sharded over the data-parallel axes."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v) for k, v in local_batch.items()}

  def place_batches(self, local_batches: Sequence[dict[str, np.ndarray]]) -> dict[str, jax.Array]:
    """K of this process's batches -> global arrays [K, B, ...] for `train_steps` (batch axis sharded)."""
    stacked = {k: np.stack([b[k] for b in local_batches]) for k in local_batches[0]}
    return {k: jax.make_array_from_process_local_data(self.batches_sharding, v) for k, v in stacked.items()}


def abstract_model(model_cfg: transformer.TransformerConfig, seed: int = 0):
  """(graphdef, abstract params pure dict, logical names) without allocating anything (works for 4B)."""
  abs_model = nnx.eval_shape(lambda: transformer.Transformer(model_cfg, nnx.Rngs(params=seed)))
  graphdef, abs_state = nnx.split(abs_model, nnx.Param)
  return graphdef, abs_state.to_pure_dict(), sharding.logical_names_tree(abs_state)


def make_loss_sums(graphdef, z_loss: float):
  """loss_sums(params, batch) -> (objective sum, (CE sum, weight sum)) over the weighted tokens."""

  def loss_sums(params, batch):
    return losses.weighted_sums(nnx.merge(graphdef, params)(batch["inputs"]), batch, z_loss)

  return loss_sums


def make_train_step(grad_fn, tx, schedule, accum: int, rules, mesh, frozen_key: str | None = None):
  """train_step(state, batch) -> (state, {"loss", "grad_norm", "lr"}): one optimizer update on the batch,
  its gradient summed over `accum` microbatches and divided by the batch's total loss weight.

  frozen_key: a state entry passed to grad_fn(params, batch, state[frozen_key]) and carried through unchanged
  (a fine-tune's frozen base); other state entries are carried through too."""

  def train_step(state, batch):
    with sharding.use_rules(rules, mesh):
      params = state["params"]
      extra = (state[frozen_key],) if frozen_key else ()
      if accum == 1:
        (_, (ce_sum, w_sum)), grads = grad_fn(params, batch, *extra)
      else:
        # Microbatch a takes rows a, a+A, a+2A, ...: every device holds an equal share of each microbatch.
        micro = jax.tree.map(lambda x: jnp.swapaxes(x.reshape(x.shape[0] // accum, accum, *x.shape[1:]), 0, 1),
                             batch)

        def body(carry, mb):
          g, ce, w = carry
          (_, (ce_i, w_i)), g_i = grad_fn(params, mb, *extra)
          return (jax.tree.map(jnp.add, g, g_i), ce + ce_i, w + w_i), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (grads, ce_sum, w_sum), _ = jax.lax.scan(body, (zeros, 0.0, 0.0), micro)
      denom = jnp.maximum(w_sum, 1.0)
      grads = jax.tree.map(lambda g: g / denom, grads)
      updates, opt_state = tx.update(grads, state["opt_state"], params)
      new_state = {**state, "params": optax.apply_updates(params, updates), "opt_state": opt_state,
                   "step": state["step"] + 1}
      metrics = {"loss": ce_sum / denom, "grad_norm": optim.global_norm(grads),
                 "lr": schedule(state["step"])}
      return new_state, metrics

  return train_step


def scan_steps(train_step):
  """train_steps(state, batches): `train_step` on each batch along the leading axis in turn (one lax.scan)."""
  return lambda state, batches: jax.lax.scan(train_step, state, batches)


def make_eval_step(graphdef, rules, mesh):
  def eval_step(params, batch):
    """Per-row sums: loss (nats), weight, correct argmax predictions (all over weighted tokens)."""
    with sharding.use_rules(rules, mesh):
      logits_BxLxV = nnx.merge(graphdef, params)(batch["inputs"])
      w_BxL = batch["weights"].astype(jnp.float32)
      ce_BxL = losses.token_losses(logits_BxLxV, batch["targets"])
      correct_BxL = (jnp.argmax(logits_BxLxV, -1) == batch["targets"]).astype(jnp.float32)
      return {"loss_sum": jnp.sum(ce_BxL * w_BxL, -1), "weight_sum": jnp.sum(w_BxL, -1),
              "correct_sum": jnp.sum(correct_BxL * w_BxL, -1)}

  return eval_step


def state_layout(tx, abs_params, param_sh, rep):
  """(abstract state with shardings attached, state shardings) for {"params", "opt_state", "step"}: optimizer
  moments shard like their parameters, counters are replicated."""
  abs_opt = jax.eval_shape(tx.init, abs_params)
  opt_sh = optax.tree_map_params(tx, lambda _, s: s, abs_opt, param_sh, transform_non_params=lambda _: rep)
  abstract_state = {"params": abs_params, "opt_state": abs_opt, "step": jax.ShapeDtypeStruct((), jnp.int32)}
  state_sh = {"params": param_sh, "opt_state": opt_sh, "step": rep}
  abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                abstract_state, state_sh)
  return abstract_state, state_sh


@dataclasses.dataclass(frozen=True)
class _Placement:
  """What every setup shares: the mesh, the rules, the optimizer and where batches live."""
  mesh: Mesh
  rules: sharding.Rules
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  rep: NamedSharding
  batch_sh: NamedSharding
  batches_sh: NamedSharding


def _placement(config, devices) -> _Placement:
  mesh = sharding.make_mesh(config.mesh, devices)
  batch_sh = sharding.batch_sharding(mesh, ndim=1)  # prefix spec: leading dim sharded, the rest replicated
  return _Placement(mesh=mesh, rules=sharding.get_rules(config.sharding.preset), tx=optim.make_optimizer(config.train),
                    schedule=optim.lr_schedule(config.train), rep=sharding.replicated(mesh), batch_sh=batch_sh,
                    batches_sh=NamedSharding(mesh, P(None, *batch_sh.spec)))  # [K, B, ...]: the batch axis sharded


def _setup(config, model_cfg, graphdef, pl: _Placement, abstract_state, state_sh, init, init_in_sh, train_step,
           eval_step, eval_in_sh, frac: float) -> TrainSetup:
  """The TrainSetup with every function jitted under its shardings (the state donated to the update)."""
  rep, batch_sh, batches_sh = pl.rep, pl.batch_sh, pl.batches_sh
  return TrainSetup(
      config=config, model_cfg=model_cfg, mesh=pl.mesh, rules=pl.rules, graphdef=graphdef, tx=pl.tx,
      schedule=pl.schedule, abstract_state=abstract_state, state_shardings=state_sh, batch_sharding=batch_sh,
      init=jax.jit(init, in_shardings=init_in_sh, out_shardings=state_sh),
      train_step=jax.jit(train_step, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, rep),
                         donate_argnums=0),
      train_steps=jax.jit(scan_steps(train_step), in_shardings=(state_sh, batches_sh),
                          out_shardings=(state_sh, rep), donate_argnums=0),
      batches_sharding=batches_sh,
      eval_step=jax.jit(eval_step, in_shardings=(eval_in_sh, batch_sh), out_shardings=rep),
      replicated_fraction=frac,
  )


def build(config, devices: Sequence[jax.Device] | None = None) -> TrainSetup:
  t = config.train
  model_cfg = configlib.model_config(config)
  pl = _placement(config, devices)
  graphdef, abs_params, names = abstract_model(model_cfg, config.seed)
  param_sh = sharding.param_shardings(abs_params, names, pl.rules, pl.mesh)
  frac = sharding.check_sufficiently_sharded(abs_params, param_sh, pl.mesh, config.sharding.preset,
                                             config.sharding.max_replicated)
  abstract_state, state_sh = state_layout(pl.tx, abs_params, param_sh, pl.rep)

  def init():
    with sharding.use_rules(pl.rules, pl.mesh):
      model = transformer.Transformer(model_cfg, nnx.Rngs(params=config.seed))
      params = nnx.state(model, nnx.Param).to_pure_dict()
      return {"params": params, "opt_state": pl.tx.init(params), "step": jnp.zeros((), jnp.int32)}

  grad_fn = jax.value_and_grad(make_loss_sums(graphdef, t.z_loss), has_aux=True)
  train_step = make_train_step(grad_fn, pl.tx, pl.schedule, int(t.grad_accum), pl.rules, pl.mesh)
  return _setup(config, model_cfg, graphdef, pl, abstract_state, state_sh, init, (), train_step,
                make_eval_step(graphdef, pl.rules, pl.mesh), param_sh, frac)


def build_finetune(config, plan, devices: Sequence[jax.Device] | None = None) -> TrainSetup:
  """The setup of a fine-tune (scaling/lm/trainable.py `Plan`): state {"params": trainable, "frozen": frozen,
  "opt_state" (of the trainable tree only), "step"}; `init(base_params)` splits pretrained base params into that
  state (adapters freshly initialised); `eval_step((trainable, frozen), batch)` scores the effective model."""
  t = config.train
  pl = _placement(config, devices)
  base_sh = sharding.param_shardings(plan.abstract_base, plan.base_names, pl.rules, pl.mesh)
  frac = sharding.check_sufficiently_sharded(plan.abstract_base, base_sh, pl.mesh, config.sharding.preset,
                                             config.sharding.max_replicated)
  train_sh, frozen_sh = plan.shardings(pl.rules, pl.mesh)
  abstract_state, state_sh = state_layout(pl.tx, plan.abstract_trainable, train_sh, pl.rep)
  abstract_state["frozen"] = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                          plan.abstract_frozen, frozen_sh)
  state_sh["frozen"] = frozen_sh

  def init(base_params):
    with sharding.use_rules(pl.rules, pl.mesh):
      trainable, frozen = plan.start(base_params)
      return {"params": trainable, "frozen": frozen, "opt_state": pl.tx.init(trainable),
              "step": jnp.zeros((), jnp.int32)}

  loss = lambda trainable, batch, frozen: plan.loss_sums(trainable, frozen, batch, t.z_loss)
  train_step = make_train_step(jax.value_and_grad(loss, has_aux=True), pl.tx, pl.schedule, int(t.grad_accum),
                               pl.rules, pl.mesh, frozen_key="frozen")
  base_eval = make_eval_step(plan.graphdef, pl.rules, pl.mesh)
  eval_step = lambda pair, batch: base_eval(plan.effective(*pair), batch)
  return _setup(config, plan.model_cfg, plan.graphdef, pl, abstract_state, state_sh, init, (base_sh,), train_step,
                eval_step, (train_sh, frozen_sh), frac)
