"""`python -m scaling.toy.theory_cli`: print the toy's exact theory (n_k(N), optimal loss, N_crit, δ_F*) for a spec."""

from __future__ import annotations

import argparse

import numpy as np

from scaling.toy import theory as tt


def main(argv=None):
  p = argparse.ArgumentParser(description="Print the toy's exact theory: n_k(N), optimal loss, N_crit.")
  p.add_argument("--K", type=int, default=32)
  p.add_argument("--r", type=int, default=32)
  p.add_argument("--beta", type=float, default=1.0)
  p.add_argument("--alpha", type=float, default=2.0)
  p.add_argument("--lam-norm", default="first", choices=tt.LAM_NORMS)
  p.add_argument("--mass", type=float, default=0.8)
  p.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512])
  a = p.parse_args(argv)
  spec = tt.ToySpec(K=a.K, r=a.r, beta=a.beta, alpha=a.alpha, lam_norm=a.lam_norm)
  w = np.asarray([n for n in a.widths if n <= spec.d])
  n = tt.n_features(spec, w)  # (W, K)
  loss = tt.optimal_task_loss(spec, w).normalised
  F = tt.frequent_set(spec, a.mass)
  crit = tt.critical_widths(spec, a.mass)[:, 0]
  print(f"{spec}  d={spec.d}  |F|={F.sum()} (mass {spec.pi[F].sum():.3f})  lambda1(M_F)={tt.mu_F(spec, a.mass)[0]:.4g}")
  print("task      pi  " + "".join(f"{'n@' + str(x):>8}" for x in w) + "  N_crit  dF*     dF_entry loss@" + str(w[-1]))
  for k in range(spec.K):
    nc = "F" if F[k] else f"{int(crit[k])}"
    ds = "" if F[k] else f"{tt.delta_F_star(spec, int(crit[k]), a.mass):.3g}"
    de = "" if F[k] else f"{tt.delta_F_entry(spec, int(crit[k]), a.mass):.3g}"
    print(f"{k + 1:>4}  {spec.pi[k]:.4f}  " + "".join(f"{x:>8d}" for x in n[:, k])
          + f"  {nc:>6}  {ds:<7} {de:<8} {loss[-1, k]:.3f}")


if __name__ == "__main__":
  main()
