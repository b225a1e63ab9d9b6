"""Representation probes for the injected tasks (paper §4, Fig 7), on any run or checkpoint.

Both probes read the residual stream at the task-token positions: the model is fed rows TOK1 TOK2 (positions 0
and 1 of an instance, exactly where training puts them) for `probe_contexts` rounds of 100 rows (i, π_r(i)) with
π_r a seeded permutation of the symbols, so every symbol occurs the same number of times at each position, in
varied contexts. Residual streams are indexed by layer: l0 = the token embeddings, l<i> = the output of block i−1
(after i blocks); "the first layer's residual stream" is l1.

  probe/cmp/order_r2[_l<i>]   T_CMP order probe: PCA of the residual vectors at both positions (top
                              `probe_pcs` = 50 components), then least-squares regression (with intercept) to the
                              token's rank in the hidden order. Held out by *symbol*: 5 folds of the 100 symbols
                              (seeded), each predicted by a regression fit on the other four; R² = 1 − SSE/SST over
                              all out-of-fold predictions. A linear order feature generalises to unseen symbols
                              (R² → 1); identity memorised through 50 dimensions does not (random init: R² ≤ ~0).
                              The unsuffixed key is l1.
  probe/add/fourier_modes[_l<i>]  T_ADD Fourier probe: each symbol's mean residual vector, rows ordered by the
                              hidden bijection φ (row n = symbol φ⁻¹(n)), centred, DFT over Z_100; the power of
                              frequency k (k and 100−k folded, k = 1 … 50) summed over the model dimension, as a
                              share of the total. A mode is present when its share exceeds
                              `probe_fourier_threshold` (3) × the uniform share 1/50, i.e. 6%. Per layer, and
                              unsuffixed: the number of distinct modes present in at least one layer.

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


def order_r2(x_PxD: np.ndarray, symbol_P: np.ndarray, rank_S: np.ndarray, n_pcs: int = 50,
             fold_S: np.ndarray | None = None) -> float:
  """Held-out-symbol R² of a linear map from the top PCs of the residual vectors to the hidden rank.

  x: residual vectors at task-token positions (P occurrences) of symbols `symbol_P`. PCA over the occurrences;
  each symbol is then represented by the mean of its projected occurrences, and symbols are split into folds
  (`fold_S`, default 5 folds by index); each fold's ranks are predicted by a ridge regression fit on the other
  folds' symbols, its penalty chosen by generalised cross-validation (plain least squares with 50 components
  on 80 symbols overfits: for features without order information its held-out R² is about −p/(n − p) ≈ −1.8;
  with the penalty chance level is ≈ 0). R² = 1 − SSE/SST over the out-of-fold predictions of all symbols."""
  x = np.asarray(x_PxD, np.float64)
  x = x - x.mean(0)
  k = max(1, min(int(n_pcs), x.shape[1], x.shape[0] - 1))
  _, _, vt_KxD = np.linalg.svd(x, full_matrices=False)
  n = len(rank_S)
  counts = np.bincount(symbol_P, minlength=n)
  seen = np.flatnonzero(counts)
  z_SxK = np.zeros((n, k))
  np.add.at(z_SxK, symbol_P, x @ vt_KxD[:k].T)
  z_SxK = z_SxK[seen] / counts[seen, None]
  y = np.asarray(rank_S, np.float64)[seen]
  fold = (np.arange(n) % N_FOLDS if fold_S is None else np.asarray(fold_S))[seen]
  pred = np.empty_like(y)
  for f in np.unique(fold):
    test = fold == f
    pred[test] = ridge_gcv(z_SxK[~test], y[~test])(z_SxK[test])
  return float(1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def fourier_shares(r_SxD: np.ndarray, phi_S: np.ndarray) -> np.ndarray:
  """Share of the non-constant power at frequencies k = 1 … n/2 (k and n−k folded) of symbol vectors over Z_n."""
  n = len(phi_S)
  m = np.empty_like(np.asarray(r_SxD, np.float64))
  m[phi_S] = r_SxD  # row φ(s) holds symbol s
  m -= m.mean(0)
  power_n = np.sum(np.abs(np.fft.fft(m, axis=0)) ** 2, axis=1)
  half = n // 2
  folded = np.array([power_n[k] + (power_n[n - k] if n - k != k else 0.0) for k in range(1, half + 1)])
  total = folded.sum()
  return folded / total if total > 0 else np.zeros_like(folded)


def fourier_modes(r_SxD: np.ndarray, phi_S: np.ndarray, threshold: float = 3.0) -> set[int]:
  """Frequencies k (1 … n/2) whose power share exceeds threshold × the uniform share."""
  shares = fourier_shares(r_SxD, phi_S)
  return {k + 1 for k in np.flatnonzero(shares > threshold / len(shares))}


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

  def __init__(self, setup, tasks: dict[str, Any], contexts: int = 10, n_pcs: int = 50, threshold: float = 3.0):
    self.setup = setup
    self.tasks = {n: t for n, t in sorted(tasks.items()) if n in PROBED_TASKS}
    self.n_pcs, self.threshold = int(n_pcs), float(threshold)
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
      task, sym_RxP = self.tasks[name], self.rows[name]
      n_layers = x.shape[0] - 1
      if name == "cmp":
        folds = hashrng.permutation(hashrng.key(task.key, "probe_folds"), task.n_symbols) % N_FOLDS
        for layer in range(n_layers + 1):
          rec[f"probe/cmp/order_r2_l{layer}"] = order_r2(x[layer].reshape(-1, x.shape[-1]), sym_RxP.reshape(-1),
                                                          task.rank, self.n_pcs, folds)
        rec["probe/cmp/order_r2"] = rec[f"probe/cmp/order_r2_l{min(1, n_layers)}"]
      elif name == "add":
        union: set[int] = set()
        for layer in range(n_layers + 1):
          r_SxD = symbol_means(x[layer], sym_RxP, task.n_symbols)
          modes = fourier_modes(r_SxD, task.phi, self.threshold)
          rec[f"probe/add/fourier_modes_l{layer}"] = len(modes)
          union |= modes
        rec["probe/add/fourier_modes"] = len(union)
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


def from_config(setup) -> Probes:
  s = settings(setup.config)
  return Probes(setup, probe_tasks(setup.config), s["probe_contexts"], s["probe_pcs"], s["probe_fourier_threshold"])


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
