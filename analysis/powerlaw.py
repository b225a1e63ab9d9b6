"""Scaling-law fits: the public API (`fit_powerlaw`, `fit_chinchilla`, `fit_logistic`, `choose_model`) and a CLI.

The laws, objective and bounds are in analysis/fitcore.py; intervals come from a profile likelihood
(analysis/profile.py, ci="profile": the one-variable laws) or a bootstrap that keeps the size structure
(analysis/bootstrap.py, bootstrap=R: every law). fits.json and the CLI record which (`ci_method`).

Reproducing Epoch's numbers (E≈1.82, A≈482, B≈2085, α≈0.348, β≈0.366 on their SVG-extracted data without
the 5 highest losses): the plain δ=1e-3 Huber minimum is E=1.817, A=478, B=2143, α=0.3473, β=0.3672, the
value their notebook's grid search prints; the published row comes from their Huber-likelihood refit (a scale
σ fitted too, BFGS stopped on precision loss), which moves A/B by ~1–3% and α/β by ~1e-3. Both agree within
the ±0.01 the tests ask for. See tests/analysis/test_powerlaw.py::test_chinchilla_cli_reproduces_epoch_refit.

CLI: python -m analysis.powerlaw --csv FILE --n COL [--d COL | --d_from_flops COL] --loss COL ...
prints one JSON object (E, A, alpha[, B, beta], n_points, loss, at_bound[, ci, ci_method]) on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import cli, fitcore, profile
from analysis.bootstrap import bootstrap
from analysis.fitcore import DEFAULT_DELTA, MIN_SIZES_FREE_E, N_STARTS, noise_std
from analysis.fitresult import FitResult, percentile_interval, predict
from scaling.core import cli as core_cli
from scaling.core.errors import FitError

__all__ = ["DEFAULT_DELTA", "MIN_SIZES_FREE_E", "N_STARTS", "FitError", "FitResult", "ModelChoice", "bootstrap",
           "choose_model", "fit_chinchilla", "fit_logistic", "fit_powerlaw", "noise_std", "percentile_interval",
           "predict"]
CI_CHOICES = (None, "profile", "bootstrap")


def _fit(method, N, L, D=None, *, fix_E=None, delta=DEFAULT_DELTA, seeds=None, n_starts=N_STARTS, ci=None,
         n_boot=0, level=0.95, seed=0, progress=True):
  if ci not in CI_CHOICES:
    raise FitError(f"ci={ci!r}; use None, 'profile' or 'bootstrap'")
  if not 0 < level < 1:
    raise FitError(f"level={level} must be in (0, 1), e.g. 0.95")
  out = fitcore.fit_point(method, N, L, D, fix_E=fix_E, delta=delta, seeds=seeds, n_starts=n_starts)
  if ci == "profile":
    # No residual dof (as many points as parameters): the point fit stands, without intervals.
    return profile.with_profile_ci(out, level) if out.dof > 0 else out
  if n_boot or ci == "bootstrap":
    return bootstrap(out, n_resamples=n_boot or 1000, level=level, seed=seed, progress=progress)
  return out


def fit_powerlaw(N, L, *, fix_E=None, delta=DEFAULT_DELTA, seeds=None, bootstrap=0, level=0.95, seed=0,
                 progress=True, n_starts=N_STARTS, ci=None) -> FitResult:
  """L(N) = E + A·N^-α. N, L: (n,) positive arrays (several rows per size = seeds). fix_E: known E (>= 0).

  A free E needs >= 5 distinct sizes. delta None: least squares. ci='profile': profile-likelihood intervals;
  bootstrap=R: bootstrap percentile intervals (see analysis.bootstrap).
  """
  return _fit("powerlaw", N, L, fix_E=fix_E, delta=delta, seeds=seeds, n_boot=bootstrap, level=level,
              seed=seed, progress=progress, n_starts=n_starts, ci=ci)


def fit_chinchilla(N, D, L, *, fix_E=None, delta=DEFAULT_DELTA, seeds=None, bootstrap=0, level=0.95, seed=0,
                   progress=True, n_starts=N_STARTS) -> FitResult:
  """L(N, D) = E + A/N^α + B/D^β. N, D, L: (n,) positive arrays. Intervals: bootstrap=R."""
  return _fit("chinchilla", N, L, D, fix_E=fix_E, delta=delta, seeds=seeds, n_boot=bootstrap, level=level,
              seed=seed, progress=progress, n_starts=n_starts)


def fit_logistic(N, L, *, delta=DEFAULT_DELTA, seeds=None, bootstrap=0, level=0.95, seed=0, progress=True,
                 n_starts=N_STARTS, ci=None) -> FitResult:
  """L(N) = L_lo + (L_hi − L_lo)·σ(−k·(log N − log N0)), k > 0: a drop from L_hi to L_lo around N0."""
  return _fit("logistic", N, L, delta=delta, seeds=seeds, n_boot=bootstrap, level=level, seed=seed,
              progress=progress, n_starts=n_starts, ci=ci)


# ---------------------------------------------------------------------------------------------------------
# Power law vs logistic step
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ModelChoice:
  """winner: 'powerlaw' or 'logistic'; errors: RMS log-loss error on held-out sizes; fits on all data."""

  winner: str
  errors: dict[str, float]
  n_folds: int
  fits: dict[str, FitResult] = dataclasses.field(repr=False)


def choose_model(N, L, *, fix_E=None, delta=DEFAULT_DELTA, n_starts=N_STARTS) -> ModelChoice:
  """Leave-one-size-out choice between the power law and the logistic step (ties go to the power law)."""
  L = fitcore.check_array("loss", L)
  N = fitcore.check_array("N", N, len(L))
  sizes = np.unique(N)
  need = max(4, MIN_SIZES_FREE_E if fix_E is None else 2) + 1
  if len(sizes) < need:
    raise FitError(f"leave-one-size-out needs >= {need} distinct sizes, got {len(sizes)}; add sizes"
                   + (" or fix E" if fix_E is None else ""))
  errs = {"powerlaw": [], "logistic": []}
  for s in sizes:
    held = N == s
    fits = {"powerlaw": fit_powerlaw(N[~held], L[~held], fix_E=fix_E, delta=delta, n_starts=n_starts),
            "logistic": fit_logistic(N[~held], L[~held], delta=delta, n_starts=n_starts)}
    for k, f in fits.items():
      errs[k].append(np.log(f.predict(N[held])) - np.log(L[held]))
  errors = {k: float(np.sqrt(np.mean(np.concatenate(v) ** 2))) for k, v in errs.items()}
  winner = "logistic" if errors["logistic"] < errors["powerlaw"] else "powerlaw"
  full = {"powerlaw": fit_powerlaw(N, L, fix_E=fix_E, delta=delta, n_starts=n_starts),
          "logistic": fit_logistic(N, L, delta=delta, n_starts=n_starts)}
  return ModelChoice(winner=winner, errors=errors, n_folds=len(sizes), fits=full)


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------
def _column(df, name, flag, path):
  if name not in df.columns:
    raise FitError(f"column {name!r} (from {flag}) is not in {path}; it has columns: "
                   f"{', '.join(map(str, df.columns))}; pass one of those to {flag}")
  x = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
  bad = ~np.isfinite(x)
  if bad.any():
    raise FitError(f"column {name!r} has {bad.sum()} NaN/non-numeric values (rows {np.flatnonzero(bad)[:5].tolist()}"
                   f"{', ...' if bad.sum() > 5 else ''}); drop or fill them first")
  if (x <= 0).any():
    raise FitError(f"column {name!r} has {(x <= 0).sum()} values <= 0; the fit is in log space, drop those rows")
  return x


def main(argv: Sequence[str] | None = None) -> int:
  p = cli.Parser(prog="python -m analysis.powerlaw", description=__doc__.split("\n\n")[0])
  p.add_argument("--csv", required=True, help="input CSV")
  p.add_argument("--n", required=True, help="column with model size N")
  p.add_argument("--loss", required=True, help="column with the loss")
  g = p.add_mutually_exclusive_group()
  g.add_argument("--d", help="column with data D (tokens): fits E + A/N^a + B/D^b")
  g.add_argument("--d_from_flops", metavar="COL", help="column with training FLOP; D = FLOP / (6 N)")
  p.add_argument("--model", choices=("powerlaw", "logistic"), default="powerlaw", help="one-variable form")
  p.add_argument("--exclude_top", type=int, default=0, metavar="K", help="drop the K highest-loss rows")
  p.add_argument("--fix_E", type=float, default=None, help="fix E to a known value instead of fitting it")
  p.add_argument("--delta", type=float, default=DEFAULT_DELTA, help="Huber delta on log-loss residuals")
  p.add_argument("--least_squares", action="store_true", help="least squares on log L instead of Huber")
  p.add_argument("--bootstrap", type=int, default=0, metavar="R", help="bootstrap resamples for CIs")
  p.add_argument("--profile", action="store_true", help="profile-likelihood CIs (one-variable laws)")
  p.add_argument("--seed_col", help="column with the run seed (bootstrap resamples seeds within each size)")
  p.add_argument("--ci", type=float, default=0.95, help="CI level")
  p.add_argument("--seed", type=int, default=0, help="bootstrap RNG seed")
  p.add_argument("--no_progress", action="store_true", help="no progress bar on stderr")
  a = p.parse_args(argv)
  if not (a.delta > 0 and math.isfinite(a.delta)):
    p.error(f"--delta {a.delta} must be a number > 0 (the Huber threshold on log-loss residuals)")

  def body() -> int:
    print(json.dumps(_run_cli(a), sort_keys=True))
    return 0

  return core_cli.guarded(body, bad_input=(FitError,), then="fit again")


def _run_cli(a):
  if not os.path.isfile(a.csv):
    raise FitError(f"--csv {a.csv}: no such file; pass the path of an existing CSV")
  try:
    df = pd.read_csv(a.csv)
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise FitError(f"--csv {a.csv}: not a readable CSV ({str(e).splitlines()[0]}); fix the file") from None
  if a.model == "logistic" and (a.d or a.d_from_flops or a.fix_E is not None):
    raise FitError("--model logistic takes neither --d/--d_from_flops nor --fix_E; drop them")
  if a.bootstrap < 0 or a.exclude_top < 0:
    raise FitError("--bootstrap and --exclude_top must be >= 0")
  if a.profile and (a.bootstrap or a.d or a.d_from_flops):
    raise FitError("--profile covers the one-variable laws and replaces --bootstrap; drop --bootstrap/--d")
  N = _column(df, a.n, "--n", a.csv)
  L = _column(df, a.loss, "--loss", a.csv)
  D = None
  if a.d:
    D = _column(df, a.d, "--d", a.csv)
  elif a.d_from_flops:
    D = _column(df, a.d_from_flops, "--d_from_flops", a.csv) / (6.0 * N)
  seeds = None
  if a.seed_col:
    if a.seed_col not in df.columns:
      raise FitError(f"column {a.seed_col!r} (from --seed_col) is not in {a.csv}; it has columns: "
                     f"{', '.join(map(str, df.columns))}")
    if df[a.seed_col].isna().any():
      raise FitError(f"column {a.seed_col!r} has {int(df[a.seed_col].isna().sum())} empty values; fill them")
    seeds = df[a.seed_col].to_numpy()
  keep = np.ones(len(L), bool)
  if a.exclude_top:
    if a.exclude_top >= len(L):
      raise FitError(f"--exclude_top {a.exclude_top} would drop all {len(L)} rows; pass a smaller K")
    keep[np.argsort(-L, kind="stable")[:a.exclude_top]] = False
  sel = lambda x: None if x is None else x[keep]
  kw = dict(delta=None if a.least_squares else a.delta, seeds=sel(seeds), bootstrap=a.bootstrap, level=a.ci,
            seed=a.seed, progress=not a.no_progress)
  one_var = dict(ci="profile" if a.profile else None)
  if a.model == "logistic":
    fit = fit_logistic(N[keep], L[keep], **kw, **one_var)
  elif D is None:
    fit = fit_powerlaw(N[keep], L[keep], fix_E=a.fix_E, **kw, **one_var)
  else:
    fit = fit_chinchilla(N[keep], D[keep], L[keep], fix_E=a.fix_E, **kw)
  out = fit.to_dict()
  out["n_excluded"] = int((~keep).sum())
  return out


if __name__ == "__main__":
  sys.exit(main())
