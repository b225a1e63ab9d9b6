"""Coverage and bias of the per-task fits' 95% intervals on synthetic curves with known parameters.

  python benchmarks/fit_coverage.py                    # the full grid, 200 draws per cell (~15 min on 2 cores)
  python benchmarks/fit_coverage.py --draws 50         # a quicker look
  python benchmarks/fit_coverage.py --bootstrap_draws 100   # also the bootstrap percentile intervals, for contrast

Grid: α ∈ ALPHAS × σ ∈ SIGMAS × seeds per size ∈ SEEDS; each draw has its own truth (analysis.synthetic.
powerlaw_draw: E, amplitude, 5–8 sizes over 2–3 decades, N* inside the sizes). Per cell it prints the share of
draws whose 95% interval holds the true E, A, α and N* (profile likelihood, least squares on log L: what the
report uses), the share of fits flagged "E not identified", and the bias of α̂ and Ê (mean relative error ±
its Monte Carlo standard error, and the median). Then the frontier: the share of synthetic sweeps with a known
N*(f) ∝ f^-γ whose fitted γ interval holds γ. Figures only; nothing passes or fails here (the reduced grid with a
bound is tests/analysis/test_coverage.py).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analysis import synthetic  # noqa: E402

ALPHAS = (0.1, 0.3, 0.6, 1.0, 1.5)
SIGMAS = (0.002, 0.005, 0.05)
SEEDS = (2, 3, 5)
GAMMAS = (0.5, 1.0)


def _cell(job):
  alpha, sigma, n_seeds, draws, method = job
  out = []
  for i in range(draws):
    rng = np.random.default_rng([i, int(round(alpha * 1000)), int(round(sigma * 1e5)), n_seeds])
    N, L, truth, t = synthetic.powerlaw_draw(rng, alpha, sigma, n_seeds)
    out.append(synthetic.check_powerlaw(N, L, truth, t, method=method, seed=i))
  return job, out


def _frontier(job):
  gamma, n_freqs, draws = job
  res = []
  for i in range(draws):
    rng = np.random.default_rng([i, int(gamma * 100), n_freqs, 99])
    r = synthetic.check_frontier(*synthetic.frontier_draw(rng, gamma, n_freqs=n_freqs))
    res.append(r)
  return job, res


def _bias(vals):
  v = np.asarray(vals)
  return f"{100 * v.mean():+6.2f}% ±{100 * v.std(ddof=1) / math.sqrt(len(v)):4.2f} (med {100 * np.median(v):+5.2f}%)"


def _print_cells(results, method, alphas, sigmas, seeds):
  print(f"\nCoverage of 95% intervals ({method}), share of draws holding the truth: E / A / α / N*;"
        " 'unid': share flagged E not identified")
  print(f"{'alpha':>6} {'sigma':>6} | " + " | ".join(f"{s} seeds{'':>22}" for s in seeds))
  pooled = {k: [] for k in synthetic.PARAMS}
  for alpha in alphas:
    for sigma in sigmas:
      cells = []
      for s in seeds:
        rs = results.get((alpha, sigma, s))
        if not rs:
          cells.append(f"{'–':>30}")
          continue
        cov = {k: np.mean([r["covered"][k] for r in rs]) for k in synthetic.PARAMS}
        for k in synthetic.PARAMS:
          pooled[k] += [r["covered"][k] for r in rs]
        unid = np.mean([r["unidentified"] for r in rs])
        cells.append(" ".join(f"{cov[k]:.2f}" for k in synthetic.PARAMS) + f" unid {unid:.2f}")
      print(f"{alpha:>6g} {sigma:>6g} | " + " | ".join(f"{c:>30}" for c in cells))
  n = len(pooled["E"])
  print(f"pooled over {n} draws: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in pooled.items()))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--draws", type=int, default=200, help="draws per (α, σ, seeds) cell")
  p.add_argument("--bootstrap_draws", type=int, default=0, help="also bootstrap percentile intervals (draws/cell)")
  p.add_argument("--frontier_draws", type=int, default=200, help="synthetic sweeps per γ for the frontier")
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  p.add_argument("--alphas", type=float, nargs="+", default=ALPHAS, help="a subset of the grid's α")
  p.add_argument("--sigmas", type=float, nargs="+", default=SIGMAS, help="a subset of the grid's σ")
  p.add_argument("--seeds", type=int, nargs="+", default=SEEDS, help="a subset of the seeds per size")
  a = p.parse_args(argv)
  t0 = time.perf_counter()
  grid = [(al, s, k) for al in a.alphas for s in a.sigmas for k in a.seeds]
  jobs = [(*g, a.draws, "profile") for g in grid]
  if a.bootstrap_draws:
    jobs += [(*g, a.bootstrap_draws, "bootstrap") for g in grid]
  fjobs = [(g, 4, a.frontier_draws) for g in GAMMAS]
  with mp.get_context("fork").Pool(a.workers) as pool:
    done = pool.map(_cell, jobs, chunksize=1)
    fdone = pool.map(_frontier, fjobs, chunksize=1) if a.frontier_draws else []
  for method in ("profile", "bootstrap"):
    res = {job[:3]: rs for job, rs in done if job[4] == method}
    if res:
      _print_cells(res, method, a.alphas, a.sigmas, a.seeds)
  res = {job[:3]: rs for job, rs in done if job[4] == "profile"}
  print("\nBias of the point estimates (least squares on log L), pooled over seeds: mean relative error ± MC s.e."
        " (median); last column: E over the draws whose E is identified")
  for sigma in a.sigmas:
    for alpha in a.alphas:
      rs = [r for s in a.seeds for r in res.get((alpha, sigma, s), [])]
      ok = [r["rel_error"]["E"] for r in rs if not r["unidentified"]]
      print(f"sigma {sigma:<6g} alpha {alpha:<4g} n={len(rs):<4d}  alpha: {_bias([r['rel_error']['alpha'] for r in rs])}"
            f"   E: {_bias([r['rel_error']['E'] for r in rs])}   E identified (n={len(ok)}): "
            + (_bias(ok) if len(ok) > 1 else "–"))
  for (gamma, n_freqs, _), rs in fdone:
    ok = [r for r in rs if r is not None]
    g = np.array([r["gamma"] for r in ok])
    print(f"\nFrontier γ = {gamma:g} ({n_freqs} frequencies ×16 span, 6 sizes, 2 seeds, σ 0.02): fitted in {len(ok)}/"
          f"{len(rs)} sweeps; γ inside its 95% interval in {np.mean([r['covered'] for r in ok]):.3f}; mean γ̂ "
          f"{g.mean():.3f} (sd {g.std():.3f})")
  print(f"\n{time.perf_counter() - t0:.0f} s with {a.workers} workers")


if __name__ == "__main__":
  main()
