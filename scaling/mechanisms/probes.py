"""Representation probes for the injected tasks (paper §4, Fig 7), on any run or checkpoint.

Both probes read the residual stream at the task-token positions: the model is fed rows TOK1 TOK2 (positions 0
and 1 of an instance, exactly where training puts them) for `probe_contexts` rounds of 100 rows (i, π_r(i)) with
π_r a seeded permutation of the symbols, so every symbol occurs the same number of times at each position, in
varied contexts. Residual streams are indexed by layer: l0 = the token embeddings, l<i> = the output of block i−1
(after i blocks); "the first layer's residual stream" is l1. Unsuffixed T_CMP keys are l1.

  probe/cmp/order_r2[_l<i>]   T_CMP order probe, held out by symbol (**the score Fig 7 plots**): PCA of the
                              residual vectors at both positions (top `probe_pcs` = 50 components); each symbol's
                              mean PC scores; ridge regression (with intercept, penalty by generalised cross-
                              validation) to the symbol's rank in the hidden order, fit on 4 of 5 seeded folds of
                              the 100 symbols and scored on the fifth; R² = 1 − SSE/SST over all out-of-fold
                              predictions. A linear order feature generalises to unseen symbols (R² → 1); symbol
                              identity memorised through 50 dimensions does not (no order information: R² ≈ 0).
  probe/cmp/order_r2_paper[_l<i>]  The paper's definition: the same top-50 PCs, least squares from the PC scores of
                              every occurrence to its symbol's rank, in-sample R². Nothing is held out, so its
                              chance level is not 0: K components fit ≈ K/(n_distinct − 1) of the rank's variance
                              for any representation (≈ 0.5 when the 100 symbols' occurrences barely depend on
                              context, as in the first layers). Logged for comparison with the paper's numbers;
                              Fig 7 uses order_r2 because its zero means "no order feature" at every size.
  probe/add/fourier_modes[_l<i>]  T_ADD Fourier count (scaling/mechanisms/fourier.py): each symbol's mean residual
                              vector, rows in the order of the hidden bijection φ, DFT over Z_100, the variance at
                              each frequency k = 1 … 50 (k and 100−k folded). Rule `probe_fourier_rule`:
                              "absolute" (default) counts k when it beats a permutation null over symbol
                              relabellings (family-wise level `probe_fourier_alpha` = 0.01, 1000 relabellings)
                              and holds ≥ `probe_fourier_min_variance` = 1% of the total variance of the residual
                              vectors (context included); "relative" is the earlier rule (share of the periodic
                              power > `probe_fourier_threshold` × 1/50), blind to scale. Per layer, and
                              unsuffixed: the number of distinct modes present in at least one layer.
  probe/add/fourier_var[_l<i>]  The fraction of the total variance held by the modes counted in that layer;
                              unsuffixed: the largest over layers.

Command line (prints one JSON line):

  python -m scaling.mechanisms.probes --workdir runs/lm-1M [--step 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from ml_collections import config_dict

from scaling.core import checkpoint as ckpt_lib
from scaling.core import hashrng, rundir
from scaling.core.errors import ConfigError, ProbeError, TaskError
from scaling.lm import sharding
from scaling.lm import step as step_lib
from scaling.lm.data import mixture, sources
from scaling.lm.data import tasks as tasks_lib
from scaling.mechanisms import fourier
from scaling.mechanisms.interference import layer_slice, put_global
from scaling.mechanisms.settings import settings

PROBED_TASKS = ("cmp", "add")
N_FOLDS = 5


# ---------------------------------------------------------------------------------------------------------------
# Scores (host, float64)
# ---------------------------------------------------------------------------------------------------------------
def ridge_gcv(z_NxK: np.ndarray, y_N: np.ndarray):
  """Ridge regression (with intercept) whose penalty minimises generalised cross-validation; returns predict()."""
  mu_z, mu_y = z_NxK.mean(0), y_N.mean()
  u, s, vt = np.linalg.svd(z_NxK - mu_z, full_matrices=False)
  uy = u.T @ (y_N - mu_y)
  n, best = len(y_N), (np.inf, None)
  top = s[0] ** 2 if len(s) and s[0] > 0 else 1.0
  for lam in np.concatenate([[0.0], top * np.logspace(-6, 3, 28)]):
    f = s ** 2 / (s ** 2 + lam) if lam else (s > 1e-10 * top ** 0.5).astype(np.float64)
    dof = n - f.sum() - 1.0  # the intercept costs one degree of freedom
    if dof <= 0:
      continue
    rss = np.sum((y_N - mu_y) ** 2) - np.sum((2 * f - f ** 2) * uy ** 2)
    gcv = n * max(rss, 0.0) / dof ** 2
    if gcv < best[0]:
      coef = vt.T @ (np.divide(f, s, out=np.zeros_like(s), where=s > 0) * uy)
      best = (gcv, coef)
  coef = best[1] if best[1] is not None else np.zeros(z_NxK.shape[1])
  return lambda z: (z - mu_z) @ coef + mu_y


def pca_scores(x_PxD: np.ndarray, n_pcs: int = 50) -> np.ndarray:
  """(P, K) projections of the centred vectors on their top K = min(n_pcs, D, P − 1) principal components.

  Only the top K eigenpairs of the smaller Gram matrix (D×D or P×P) are computed: the same scores as an SVD (up
  to signs, which no regression sees) at a fraction of its cost for wide models."""
  x = np.asarray(x_PxD, np.float64)
  x = x - x.mean(0)
  p, d = x.shape
  k = max(1, min(int(n_pcs), d, p - 1))
  if d <= p:
    _, v_DxK = scipy.linalg.eigh(x.T @ x, subset_by_index=[d - k, d - 1])
    return x @ v_DxK[:, ::-1]
  lam, u_PxK = scipy.linalg.eigh(x @ x.T, subset_by_index=[p - k, p - 1])
  return u_PxK[:, ::-1] * np.sqrt(np.clip(lam[::-1], 0.0, None))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
  sst = np.sum((y - y.mean()) ** 2)
  return float(1.0 - np.sum((y - pred) ** 2) / sst) if sst > 0 else 0.0


def heldout_order_r2(z_PxK: np.ndarray, symbol_P: np.ndarray, rank_S: np.ndarray,
                     fold_S: np.ndarray | None = None) -> float:
  """`order_r2` on given PC scores: per-symbol means, ridge fit on the other folds' symbols, pooled R²."""
  n = len(rank_S)
  counts = np.bincount(symbol_P, minlength=n)
  seen = np.flatnonzero(counts)
  z_SxK = np.zeros((n, z_PxK.shape[1]))
  np.add.at(z_SxK, symbol_P, z_PxK)
  z_SxK = z_SxK[seen] / counts[seen, None]
  y = np.asarray(rank_S, np.float64)[seen]
  fold = (np.arange(n) % N_FOLDS if fold_S is None else np.asarray(fold_S))[seen]
  pred = np.empty_like(y)
  for f in np.unique(fold):
    test = fold == f
    pred[test] = ridge_gcv(z_SxK[~test], y[~test])(z_SxK[test])
  return _r2(y, pred)


def in_sample_order_r2(z_PxK: np.ndarray, symbol_P: np.ndarray, rank_S: np.ndarray) -> float:
  """`order_r2_paper` on given PC scores: least squares (with intercept) over the occurrences, in-sample R²."""
  y = np.asarray(rank_S, np.float64)[symbol_P]
  a = np.concatenate([np.ones((len(y), 1)), z_PxK], axis=1)
  coef = np.linalg.lstsq(a, y, rcond=None)[0]
  return _r2(y, a @ coef)


def order_r2(x_PxD: np.ndarray, symbol_P: np.ndarray, rank_S: np.ndarray, n_pcs: int = 50,
             fold_S: np.ndarray | None = None) -> float:
  """Held-out-symbol R² of a linear map from the top PCs of the residual vectors to the hidden rank.

  x: residual vectors at task-token positions (P occurrences) of symbols `symbol_P`. PCA over the occurrences;
  each symbol is then represented by the mean of its projected occurrences, and symbols are split into folds
  (`fold_S`, default 5 folds by index); each fold's ranks are predicted by a ridge regression fit on the other
  folds' symbols, its penalty chosen by generalised cross-validation (plain least squares with 50 components
  on 80 symbols overfits: for features without order information its held-out R² is about −p/(n − p) ≈ −1.8;
  with the penalty chance level is ≈ 0). R² = 1 − SSE/SST over the out-of-fold predictions of all symbols."""
  return heldout_order_r2(pca_scores(x_PxD, n_pcs), symbol_P, rank_S, fold_S)


def order_r2_paper(x_PxD: np.ndarray, symbol_P: np.ndarray, rank_S: np.ndarray, n_pcs: int = 50) -> float:
  """The paper's order probe: in-sample R² of least squares from the top PCs to the rank, one row per occurrence.

  Nothing is held out, so the score of a representation without order information is the share of the rank's
  variance that K generic directions fit by chance: ≈ K / (n_distinct − 1) where n_distinct is the number of
  distinct vectors (≈ 50/99 for 100 symbols whose occurrences barely vary with context, as at l0/l1), not 0."""
  return in_sample_order_r2(pca_scores(x_PxD, n_pcs), symbol_P, rank_S)


# ---------------------------------------------------------------------------------------------------------------
# Residual streams (device)
# ---------------------------------------------------------------------------------------------------------------
def probe_rows(task, contexts: int) -> np.ndarray:
  """(contexts·n, 2) symbol indices (i, π_r(i)): every symbol `contexts` times at each position."""
  n = task.n_symbols
  rounds = [np.stack([np.arange(n), hashrng.permutation(hashrng.key(task.key, "probe", r), n)], 1)
            for r in range(contexts)]
  return np.concatenate(rounds).astype(np.int64)


def residual_streams(graphdef, params, tokens_BxL):
  """(n_layers + 1, B, L, D) float32: the embeddings, then the residual stream after each block."""
  model = nnx.merge(graphdef, params)
  x_BxLxD = model.embed_tokens(tokens_BxL)
  out = [x_BxLxD]
  for layer in range(params["blocks"]["mlp"]["w_gate"].shape[0]):
    x_BxLxD = nnx.merge(graphdef, layer_slice(params, layer, layer + 1)).run_blocks(x_BxLxD)
    out.append(x_BxLxD)
  return jnp.stack(out).astype(jnp.float32)


class Probes:
  """Probe metrics of a TrainSetup's params for tasks {name: PairTask} (names without a probe are ignored)."""

  def __init__(self, setup, tasks: dict[str, Any], contexts: int = 10, n_pcs: int = 50, threshold: float = 3.0,
               fourier_rule: str = "absolute", min_variance: float = 0.01, alpha: float = 0.01,
               null_draws: int = 1000):
    """contexts, n_pcs, threshold, fourier_rule, min_variance, alpha, null_draws: the `probe_*` settings."""
    if fourier_rule not in fourier.RULES:
      raise ProbeError(f"probe_fourier_rule={fourier_rule!r} is not one of {', '.join(fourier.RULES)}")
    self.setup = setup
    self.tasks = {n: t for n, t in sorted(tasks.items()) if n in PROBED_TASKS}
    self.n_pcs, self.threshold = int(n_pcs), float(threshold)
    self.fourier_rule, self.min_variance, self.alpha = fourier_rule, float(min_variance), float(alpha)
    self.null_draws = int(null_draws)
    self.rows = {n: probe_rows(t, int(contexts)) for n, t in self.tasks.items()}
    tokens = np.concatenate([t.symbols[self.rows[n]] for n, t in self.tasks.items()]) if self.tasks else \
        np.zeros((0, 2), np.int32)
    mesh = setup.mesh
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    self._n = len(tokens)
    padded = -(-max(self._n, 1) // dp) * dp
    self.tokens = np.concatenate([tokens, np.zeros((padded - self._n, 2), tokens.dtype)]).astype(np.int32)
    tok_sh = NamedSharding(mesh, P(sharding.BATCH_AXES))
    self._tok_sh = tok_sh

    def fn(params, tokens):
      with sharding.use_rules(setup.rules, mesh):
        return residual_streams(setup.graphdef, params, tokens)

    self._fn = jax.jit(fn, in_shardings=(setup.state_shardings["params"], tok_sh),
                       out_shardings=sharding.replicated(mesh))

  def streams(self, params) -> dict[str, np.ndarray]:
    """Per task (n_layers + 1, rows, 2, D) residual vectors of its probe rows (host)."""
    if not self.tasks:
      return {}
    x = np.asarray(jax.device_get(self._fn(params, put_global(self.tokens, self._tok_sh))))[:, :self._n]
    out, start = {}, 0
    for name in self.tasks:
      n = len(self.rows[name])
      out[name] = x[:, start:start + n]
      start += n
    return out

  def measure(self, params) -> dict[str, float | int]:
    """probe/<task>/<metric> for every probed task (one host sync)."""
    rec: dict[str, float | int] = {}
    for name, x in self.streams(params).items():
      if name == "cmp":
        rec.update(self._measure_cmp(x))
      elif name == "add":
        rec.update(self._measure_add(x))
    return rec

  def _measure_cmp(self, x_LxRxPxD: np.ndarray) -> dict[str, float]:
    task, sym = self.tasks["cmp"], self.rows["cmp"].reshape(-1)
    folds = hashrng.permutation(hashrng.key(task.key, "probe_folds"), task.n_symbols) % N_FOLDS
    rec = {}
    for layer in range(x_LxRxPxD.shape[0]):
      z = pca_scores(x_LxRxPxD[layer].reshape(-1, x_LxRxPxD.shape[-1]), self.n_pcs)  # one PCA, both scores
      rec[f"probe/cmp/order_r2_l{layer}"] = heldout_order_r2(z, sym, task.rank, folds)
      rec[f"probe/cmp/order_r2_paper_l{layer}"] = in_sample_order_r2(z, sym, task.rank)
    first = min(1, x_LxRxPxD.shape[0] - 1)
    for key in ("order_r2", "order_r2_paper"):
      rec[f"probe/cmp/{key}"] = rec[f"probe/cmp/{key}_l{first}"]
    return rec

  def _measure_add(self, x_LxRxPxD: np.ndarray) -> dict[str, float | int]:
    task, sym_RxP = self.tasks["add"], self.rows["add"]
    rec: dict[str, float | int] = {}
    union: set[int] = set()
    var = []
    for layer in range(x_LxRxPxD.shape[0]):
      x_PxD = x_LxRxPxD[layer].reshape(-1, x_LxRxPxD.shape[-1])
      if self.fourier_rule == "absolute":
        modes, share_K = fourier.fourier_modes(x_PxD, sym_RxP.reshape(-1), task.phi, self.min_variance,
                                               self.alpha, self.null_draws)
      else:
        share_K = fourier.variance_shares(x_PxD, sym_RxP.reshape(-1), task.phi)
        modes = fourier.fourier_modes_relative(symbol_means(x_LxRxPxD[layer], sym_RxP, task.n_symbols), task.phi,
                                               self.threshold)
      rec[f"probe/add/fourier_modes_l{layer}"] = len(modes)
      var.append(float(sum(share_K[k - 1] for k in modes)))
      rec[f"probe/add/fourier_var_l{layer}"] = var[-1]
      union |= modes
    rec["probe/add/fourier_modes"] = len(union)
    rec["probe/add/fourier_var"] = max(var)
    return rec


def symbol_means(x_RxPxD: np.ndarray, sym_RxP: np.ndarray, n: int) -> np.ndarray:
  """(n, D) mean residual vector of each symbol over all its occurrences."""
  flat = x_RxPxD.reshape(-1, x_RxPxD.shape[-1]).astype(np.float64)
  sym = sym_RxP.reshape(-1)
  sums = np.zeros((n, flat.shape[1]))
  np.add.at(sums, sym, flat)
  return sums / np.maximum(np.bincount(sym, minlength=n), 1)[:, None]


def probe_tasks(config) -> dict[str, Any]:
  """The configured tasks that have a probe and fit the vocabulary (inactive ones serve as controls)."""
  out = {}
  for name in mixture.Mixture.from_config(config).names:
    if name in PROBED_TASKS:
      try:
        vocab = sources.vocabulary(config.data, int(config.seed))
        out[name] = tasks_lib.build(name, int(config.seed), vocab)
      except TaskError:
        continue  # e.g. a small test vocabulary without room for this (inactive) task's symbols
  return out


def from_config(setup, s: dict[str, Any] | None = None) -> Probes:
  """Probes for `setup` with the `probe_*` mechanism settings `s` over those of setup.config."""
  s = {**settings(setup.config), **(s or {})}
  return Probes(setup, probe_tasks(setup.config), s["probe_contexts"], s["probe_pcs"], s["probe_fourier_threshold"],
                s["probe_fourier_rule"], s["probe_fourier_min_variance"], s["probe_fourier_alpha"],
                s["probe_fourier_null_draws"])


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------


def probe_checkpoint(workdir: str, step: int | None = None) -> dict[str, Any]:
  """Restores `step` (default: the newest) of the run in `workdir` and returns {"step": …, probe metrics…}."""
  run = rundir.RunDir(workdir)
  try:
    meta = run.read_config()
  except rundir.RunDirError as e:
    raise ProbeError(f"--workdir {workdir}: {e}") from None
  if meta["experiment"] != "lm":
    raise ProbeError(f"--workdir {workdir} holds a {meta['experiment']!r} run; probes read transformer ('lm') runs")
  if not os.path.isdir(run.checkpoint_dir):
    raise ProbeError(f"--workdir {workdir} has no checkpoints/ folder; train the run (checkpoint.every) first")
  config = config_dict.ConfigDict(meta["config"])
  devices = jax.devices()
  try:
    setup = step_lib.build(config, devices)
  except (ConfigError, ValueError):
    # The run's mesh does not fit this machine: restore onto a plain data-parallel mesh of its devices.
    config.mesh = config_dict.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    config.sharding.preset = "dp"
    setup = step_lib.build(config, devices)
  ckpt = ckpt_lib.Checkpointer(run.checkpoint_dir, config.checkpoint.every, config.checkpoint.keep, False)
  steps = ckpt.steps()
  if not steps:
    raise ProbeError(f"--workdir {workdir} has no finished checkpoint yet")
  step = steps[-1] if step is None else int(step)
  if step not in steps:
    raise ProbeError(f"--step {step} has no checkpoint in {run.checkpoint_dir}; available: "
                     f"{', '.join(map(str, steps))}")
  state, _ = ckpt.restore_step(step, setup.abstract_state)  # fingerprint-checked restore
  ckpt.close()
  return {"step": step, **from_config(setup).measure(state["params"])}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m scaling.mechanisms.probes", description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a run directory written by scaling.train")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
  args = parser.parse_args(argv)
  try:
    result = probe_checkpoint(args.workdir, args.step)
  except ProbeError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(rundir.dumps(result))
  return 0


if __name__ == "__main__":
  sys.exit(main())
